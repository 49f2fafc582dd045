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

/// Inputs of [`Recorder::finish`].
pub struct Finish<'a> {
    pub report: &'a crate::results::RunReport,
    pub thresholds: &'a crate::spec::model::Thresholds,
    /// A run id named by the spec as the baseline.
    pub baseline: Option<&'a str>,
    pub prometheus: Option<&'a crate::results::prometheus::Prometheus>,
    pub tolerance: &'a crate::config::RegressionTolerance,
}

/// What [`Recorder::reconcile`] found and completed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub from_spool: usize,
    pub from_git: usize,
    pub pushed: usize,
}

impl Recorder {
    pub fn new(
        pool: PgPool,
        state_dir: &std::path::Path,
        git: Option<ResultsGit>,
        grafana: Option<Grafana>,
    ) -> Recorder {
        Recorder {
            pool,
            spool: state_dir.join("spool"),
            git: git.map(Arc::new),
            grafana,
            flush_lock: Mutex::new(()),
        }
    }

    pub fn grafana(&self) -> Option<&Grafana> {
        self.grafana.as_ref()
    }

    fn spool_path(&self, run: &str) -> PathBuf {
        self.spool.join(format!("{run}.json"))
    }

    /// Writes the summary to the spool atomically (write, fsync, rename).
    pub fn spool(&self, s: &RunSummary) -> Result<(), RecorderError> {
        let io = |path: &PathBuf, source| RecorderError::Spool {
            path: path.display().to_string(),
            source,
        };
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

    /// A run started: its state and, when configured, a Grafana annotation.
    pub async fn started(
        &self,
        run_id: &str,
        test: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), RecorderError> {
        results::set_run_state(&self.pool, run_id, "running", serde_json::json!({})).await?;
        if let Some(g) = &self.grafana {
            if let Err(e) = g
                .annotate(
                    at,
                    test,
                    run_id,
                    "started",
                    &format!("perfsync run {run_id} of {test} started"),
                )
                .await
            {
                tracing::warn!(error = %e, "grafana annotation failed");
            }
        }
        Ok(())
    }

    /// A run ended: its figures collected (Prometheus when configured), judged against the
    /// spec, compared with the baseline, and recorded once everywhere.
    pub async fn finish(&self, f: Finish<'_>) -> Result<RunSummary, RecorderError> {
        let (metrics, notes) =
            crate::results::collect::collect(f.report, f.thresholds, f.prometheus).await;
        let baseline =
            results::baseline(&self.pool, &f.report.test, f.baseline, &f.report.run_id).await?;
        let summary = crate::results::build::summarize(crate::results::build::Inputs {
            report: f.report,
            thresholds: f.thresholds,
            metrics,
            notes,
            baseline: baseline.as_ref(),
            tolerance: f.tolerance,
        });
        self.record(&summary).await?;
        if let Err(e) = self.flush().await {
            // The result is in the database; the next flush (or the next start) pushes it.
            tracing::warn!(error = %e, run = %summary.run.id, "results write-back failed; will retry");
        }
        if let Some(g) = &self.grafana {
            let end = chrono::DateTime::parse_from_rfc3339(&summary.run.end)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|_| chrono::Utc::now());
            let text = format!(
                "perfsync run {} of {}: {}",
                summary.run.id,
                summary.run.test,
                summary.status.as_str()
            );
            if let Err(e) = g
                .annotate(
                    end,
                    &summary.run.test,
                    &summary.run.id,
                    summary.status.as_str(),
                    &text,
                )
                .await
            {
                tracing::warn!(error = %e, "grafana annotation failed");
            }
        }
        Ok(summary)
    }

    /// Pushes every result not yet on the remote in one commit. Returns how many it pushed.
    pub async fn flush(&self) -> Result<usize, RecorderError> {
        let Some(git) = self.git.clone() else {
            return Ok(0);
        };
        let _guard = self.flush_lock.lock().await;
        let batch = results::unpushed(&self.pool, 200).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut history: BTreeMap<String, Vec<RunSummary>> = BTreeMap::new();
        for s in &batch {
            if !history.contains_key(&s.run.test) {
                history.insert(
                    s.run.test.clone(),
                    results::recent(&self.pool, Some(&s.run.test), 30).await?,
                );
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
            let mut paths: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            for p in paths {
                let Ok(s) = std::fs::read(&p)
                    .map_err(|_| ())
                    .and_then(|b| serde_json::from_slice::<RunSummary>(&b).map_err(|_| ()))
                else {
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
