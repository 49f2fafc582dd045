//! The kubernetes executor (k6-operator TestRuns). So far: the `PerfTest` mirror CRD.

pub mod crd;
