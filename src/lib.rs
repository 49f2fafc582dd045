//! perfsync: GitOps for k6 load tests.
//!
//! The pipeline, one module a stage: [`source`] (git, directories) → [`spec`] (parse, validate,
//! render; pure) → plan → executor → results → record, with [`config`] and the CLI at the edges.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod executor;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod results;
pub mod server;
pub mod source;
pub mod spec;
pub mod sync;
