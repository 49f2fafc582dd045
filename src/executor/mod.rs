//! Executor stage: runs on this host (`local`) or on the k6-operator (`kubernetes`), and the
//! scheduling of queued runs.

pub mod kubernetes;
pub mod local;
pub mod run;
pub mod schedule;
pub mod scheduler;

use crate::results::RunSummary;
use crate::spec::Catalog;
use run::{Collected, RunDir, StartRun};
use tokio::sync::watch;

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
    #[error("run {run}: {source}")]
    Kubernetes {
        run: String,
        #[source]
        source: kubernetes::KubeError,
    },
}

/// The configured executor. Both kinds keep a folder per run under the state directory, so
/// adoption, log tails and recording work the same way.
pub enum Executor {
    Local(local::LocalExecutor),
    Kubernetes(Box<kubernetes::KubeExecutor>),
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::Local(_) => "local",
            Executor::Kubernetes(_) => "kubernetes",
        }
    }

    /// Starts a run; idempotent on the run id.
    pub async fn start(&self, req: &StartRun<'_>) -> Result<RunDir, ExecutorError> {
        match self {
            Executor::Local(l) => l.start(req),
            Executor::Kubernetes(k) => k.start(req).await,
        }
    }

    /// Runs an earlier process started and did not record.
    pub async fn leftovers(&self) -> Vec<RunDir> {
        match self {
            Executor::Local(l) => l.leftovers(),
            Executor::Kubernetes(k) => k.leftovers().await,
        }
    }

    /// Follows a run to its end (stopping it at its deadline or when `cancel` says why).
    pub async fn wait(&self, dir: &RunDir, cancel: watch::Receiver<Option<String>>) -> Collected {
        match self {
            Executor::Local(l) => l.wait(dir, cancel).await,
            Executor::Kubernetes(k) => k.wait(dir, cancel).await,
        }
    }

    /// After the run is recorded: never adopt it again, remove what it left.
    pub async fn recorded(&self, dir: &RunDir, summary: &RunSummary) {
        match self {
            Executor::Local(l) => l.mark_recorded(dir),
            Executor::Kubernetes(k) => k.recorded(dir, summary).await,
        }
    }

    /// Asks whichever process follows a run to stop it; false when this executor cannot.
    pub async fn request_abort(&self, run_id: &str, why: &str) -> bool {
        match self {
            Executor::Local(_) => false,
            Executor::Kubernetes(k) => k.request_abort(run_id, why).await,
        }
    }

    /// A run started (the PerfTest mirror shows it running).
    pub async fn started(&self, dir: &RunDir) {
        if let Executor::Kubernetes(k) = self {
            k.started(dir).await;
        }
    }

    /// The repository as it now stands at `commit` (mirrors and pruning follow it).
    pub async fn catalog_changed(&self, catalog: &Catalog, commit: Option<&str>) {
        if let Executor::Kubernetes(k) = self {
            k.catalog_changed(catalog, commit).await;
        }
    }

    pub fn log_tail(&self, run_id: &str, lines: usize) -> Vec<(u32, Vec<String>)> {
        let root = match self {
            Executor::Local(l) => &l.root,
            Executor::Kubernetes(k) => &k.root,
        };
        RunDir::log_tail(root, run_id, lines)
    }
}
