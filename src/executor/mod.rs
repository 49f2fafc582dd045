//! Executor stage: runs on this host (`local`) or on the k6-operator (`kubernetes`), and the
//! scheduling of queued runs.

pub mod kubernetes;
pub mod local;
pub mod schedule;
pub mod scheduler;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("run {run}: cannot start k6: {message}")]
    Spawn { run: String, message: String },
}
