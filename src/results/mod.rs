//! Results stage: the runners' reports → one merged, judged, compared run summary.

pub mod build;
pub mod collect;
pub mod compare;
pub mod judge;
pub mod mask;
pub mod merge;
pub mod prometheus;
pub mod regression;
pub mod report;
pub mod stats;
pub mod summary;

pub use report::{Ending, RunReport, RunnerReport};
pub use summary::{EndState, RunSummary};
