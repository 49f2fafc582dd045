//! Recording a finished run exactly once, in this order: a spool file (survives a database
//! outage and a crash), PostgreSQL (idempotent on the run id), the git write-back (batched;
//! idempotent on file content), Grafana. On start, [`Recorder::reconcile`] completes whatever
//! a crash left half-done, from the spool, the database or the results files.

use super::git_results::{ResultsGit, WriteBackError};
use super::grafana::Grafana;
use super::results;
use super::RecordError;
use crate::results::summary::RunSummary;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    WriteBack(#[from] WriteBackError),
    #[error("spool {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a blocking git task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct Recorder {
    pool: PgPool,
    spool: PathBuf,
    git: Option<Arc<ResultsGit>>,
    grafana: Option<Grafana>,
    /// One write-back at a time: batches never race each other for the branch.
    flush_lock: Mutex<()>,
}

/// What [`Recorder::reconcile`] found and completed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub from_spool: usize,
    pub from_git: usize,
    pub pushed: usize,
}

impl Recorder {
    pub fn new(pool: PgPool, state_dir: &std::path::Path, git: Option<ResultsGit>, grafana: Option<Grafana>) -> Recorder {
        Recorder { pool, spool: state_dir.join("spool"), git: git.map(Arc::new), grafana, flush_lock: Mutex::new(()) }
    }

    pub fn grafana(&self) -> Option<&Grafana> {
        self.grafana.as_ref()
    }

    fn spool_path(&self, run: &str) -> PathBuf {
        self.spool.join(format!("{run}.json"))
    }

    /// Writes the summary to the spool atomically (write, fsync, rename).
    pub fn spool(&self, s: &RunSummary) -> Result<(), RecorderError> {
        let io = |path: &PathBuf, source| RecorderError::Spool { path: path.display().to_string(), source };
        std::fs::create_dir_all(&self.spool).map_err(|e| io(&self.spool, e))?;
        let final_path = self.spool_path(&s.run.id);
        let tmp = self.spool.join(format!(".{}.tmp", s.run.id));
        let bytes = serde_json::to_vec(s).unwrap_or_default();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
            f.sync_all().map_err(|e| io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &final_path).map_err(|e| io(&final_path, e))?;
        Ok(())
    }

    /// Records one summary: spool, then the database (retried until it answers), then the
    /// spool entry goes. Returns whether this call wrote it (false: it was already recorded).
    pub async fn record(&self, s: &RunSummary) -> Result<bool, RecorderError> {
        self.spool(s)?;
        let mut delay = Duration::from_millis(100);
        let written = loop {
            match results::record_result(&self.pool, s, None).await {
                Ok(w) => break w,
                Err(e) => {
                    tracing::warn!(run = %s.run.id, error = %e, retry_in_ms = delay.as_millis() as u64, "database write failed; the result is spooled");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        let _ = std::fs::remove_file(self.spool_path(&s.run.id));
        Ok(written)
    }

    /// Pushes every result not yet on the remote in one commit. Returns how many it pushed.
    pub async fn flush(&self) -> Result<usize, RecorderError> {
        let Some(git) = self.git.clone() else { return Ok(0) };
        let _guard = self.flush_lock.lock().await;
        let batch = results::unpushed(&self.pool, 200).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut history: BTreeMap<String, Vec<RunSummary>> = BTreeMap::new();
        for s in &batch {
            if !history.contains_key(&s.run.test) {
                history.insert(s.run.test.clone(), results::recent(&self.pool, Some(&s.run.test), 30).await?);
            }
        }
        let ids: Vec<String> = batch.iter().map(|s| s.run.id.clone()).collect();
        let commit = tokio::task::spawn_blocking(move || git.write(&batch, &history)).await??;
        results::mark_pushed(&self.pool, &ids, &commit).await?;
        tracing::info!(commit = %commit, runs = ids.len(), "results pushed");
        Ok(ids.len())
    }

    /// Completes what a crash or an outage left half-done: spooled summaries go to the
    /// database, results files in git missing from the database are imported, and results
    /// missing from git are pushed.
    pub async fn reconcile(&self) -> Result<Reconciled, RecorderError> {
        let mut out = Reconciled::default();
        if let Ok(entries) = std::fs::read_dir(&self.spool) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
            paths.sort();
            for p in paths {
                let Ok(s) = std::fs::read(&p).map_err(|_| ()).and_then(|b| serde_json::from_slice::<RunSummary>(&b).map_err(|_| ())) else {
                    tracing::warn!(path = %p.display(), "unreadable spool entry left in place");
                    continue;
                };
                if results::record_result(&self.pool, &s, None).await? {
                    out.from_spool += 1;
                }
                let _ = std::fs::remove_file(&p);
            }
        }
        if let Some(git) = self.git.clone() {
            let files = tokio::task::spawn_blocking(move || git.read_results()).await??;
            let ids: Vec<String> = files.iter().map(|(_, s)| s.run.id.clone()).collect();
            let known = results::known_ids(&self.pool, &ids).await?;
            for (commit, s) in files.iter().filter(|(_, s)| !known.contains(&s.run.id)) {
                if results::record_result(&self.pool, s, Some(commit)).await? {
                    out.from_git += 1;
                }
            }
        }
        out.pushed = self.flush().await?;
        Ok(out)
    }
}

impl ResultsGit {
    /// Every results file at the branch head, with that head.
    pub fn read_results(&self) -> Result<Vec<(String, RunSummary)>, WriteBackError> {
        let head = match self.source.fetch() {
            Ok(h) => h.to_string(),
            Err(crate::source::SourceError::BranchMissing { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let tree = self.source.tree_at(&head, &[&self.results_dir])?;
        Ok(tree
            .iter()
            .filter(|(p, _)| p.ends_with(".json"))
            .filter_map(|(_, e)| match e {
                crate::source::Entry::File(b) => serde_json::from_slice::<RunSummary>(b).ok(),
                _ => None,
            })
            .map(|s| (head.clone(), s))
            .collect())
    }
}
