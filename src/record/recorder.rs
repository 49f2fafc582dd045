//! Recording a finished run exactly once, in this order: a spool file (survives a database
//! outage and a crash), PostgreSQL (idempotent on the run id), the git write-back (batched;
//! idempotent on file content; every file sealed with the daemon's MAC), Grafana. On start,
//! [`Recorder::reconcile`] completes whatever a crash left half-done, from the spool, the
//! database or the results files; from git only what perfsync provably wrote, for a run the
//! database holds as ended.

use super::git_results::{ResultsGit, WriteBackError};
use super::grafana::Grafana;
use super::regressions;
use super::results;
use super::seal::{ResultsKey, SealError};
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
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Results files listed per start: past this, the rest are warned about in one line.
const WARN_FILES: usize = 20;
/// How far back the commit that brought an ignored file is looked for.
const BLAME_DEPTH: usize = 1000;

type SecretSource = Box<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct Recorder {
    pool: PgPool,
    state_dir: PathBuf,
    spool: PathBuf,
    git: Option<Arc<ResultsGit>>,
    grafana: Option<Grafana>,
    /// One write-back at a time: batches never race each other for the branch.
    flush_lock: Mutex<()>,
    /// The results key, loaded (or made) on first use; see [`Recorder::results_key`].
    key: std::sync::Mutex<Option<Arc<ResultsKey>>>,
    /// Where the secret values this process knows come from (they grow as runs read
    /// Secrets): masked in every stored reason and note.
    secrets: std::sync::OnceLock<SecretSource>,
    /// Commit statuses and notifications owed when runs start and end (`record/outbox.rs`).
    deliveries: std::sync::OnceLock<Arc<super::outbox::Deliveries>>,
}

/// Inputs of [`Recorder::finish`].
pub struct Finish<'a> {
    pub report: &'a crate::results::RunReport,
    pub thresholds: &'a crate::spec::model::Thresholds,
    /// A run id named by the spec as the baseline.
    pub baseline: Option<&'a str>,
    pub prometheus: Option<&'a crate::results::prometheus::Prometheus>,
    pub tolerance: &'a crate::config::RegressionTolerance,
    /// What the run measured (its regression series); `None` for a run that never started.
    pub series: Option<crate::results::stats::SeriesInputs>,
    pub regression: &'a crate::config::RegressionPolicy,
    /// Custom Trends the spec names (`trackedTrends`), tracked next to the built-in metrics.
    pub trends: &'a [String],
}

/// How many earlier runs of a series the gate and the change points look at.
const HISTORY: i64 = 1000;

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
            state_dir: state_dir.to_path_buf(),
            spool: state_dir.join("spool"),
            git: git.map(Arc::new),
            grafana,
            flush_lock: Mutex::new(()),
            key: std::sync::Mutex::new(None),
            secrets: std::sync::OnceLock::new(),
            deliveries: std::sync::OnceLock::new(),
        }
    }

    /// Where statuses and notifications are enqueued (once; later calls are ignored).
    pub fn set_deliveries(&self, d: Arc<super::outbox::Deliveries>) {
        let _ = self.deliveries.set(d);
    }

    pub fn deliveries(&self) -> Option<Arc<super::outbox::Deliveries>> {
        self.deliveries.get().cloned()
    }

    /// The key results files are sealed with (`<stateDir>/results.key`, made on first use).
    /// `serve` calls it at start when write-back is on, so a key file other users can read,
    /// or a broken one, stops the daemon instead of every later write-back.
    pub fn results_key(&self) -> Result<Arc<ResultsKey>, RecorderError> {
        let mut slot = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let k = Arc::new(ResultsKey::load_or_create(&self.state_dir)?);
        *slot = Some(k.clone());
        Ok(k)
    }

    /// Checks at start what write-back needs: the results key (when write-back is on).
    pub fn check(&self) -> Result<(), RecorderError> {
        if self.git.is_some() {
            self.results_key()?;
        }
        Ok(())
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
        if let Some(d) = self.deliveries.get() {
            d.run_started(run_id).await;
        }
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
    /// Sets where the secret values masked in what is stored come from (once; later calls
    /// are ignored).
    pub fn mask_secrets(&self, secrets: impl Fn() -> Vec<String> + Send + Sync + 'static) {
        let _ = self.secrets.set(Box::new(secrets));
    }

    /// Free text of a summary (reason, notes, runner reasons) with secret values masked: a
    /// runner that printed one into an error does not put it into PostgreSQL or git.
    fn mask(&self, summary: &mut RunSummary) {
        let Some(source) = self.secrets.get() else {
            return;
        };
        let secrets = source();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let m = |s: &mut String| *s = crate::results::mask::mask(s, &refs);
        if let Some(r) = summary.reason.as_mut() {
            m(r);
        }
        summary.notes.iter_mut().for_each(m);
        for r in &mut summary.runners {
            if let Some(x) = r.reason.as_mut() {
                m(x);
            }
        }
    }

    pub async fn finish(&self, f: Finish<'_>) -> Result<RunSummary, RecorderError> {
        let (metrics, notes) = crate::results::collect::collect_tracking(
            f.report,
            f.thresholds,
            f.trends,
            f.prometheus,
        )
        .await;
        let baseline =
            results::baseline(&self.pool, &f.report.test, f.baseline, &f.report.run_id).await?;
        let mut summary = crate::results::build::summarize(crate::results::build::Inputs {
            report: f.report,
            thresholds: f.thresholds,
            metrics,
            notes,
            baseline: baseline.as_ref(),
            tolerance: f.tolerance,
        });
        let history = match &f.series {
            Some(inputs) => Some(self.gate(&mut summary, inputs, &f).await?),
            None => None,
        };
        self.mask(&mut summary);
        self.record(&summary).await?;
        if let Some((series, history)) = history {
            self.change_points(&summary, &series, history, f.regression, f.trends)
                .await;
        }
        if let Some(d) = self.deliveries.get() {
            d.run_ended(&summary).await;
        }
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

    /// The statistical gate: the run's tracked metrics against the last accepted runs of its
    /// series. Returns the series and its history, for the change points once recorded.
    async fn gate(
        &self,
        summary: &mut RunSummary,
        inputs: &crate::results::stats::SeriesInputs,
        f: &Finish<'_>,
    ) -> Result<(String, Vec<RunSummary>), RecorderError> {
        use crate::results::regression;
        let series = crate::results::stats::series_key(inputs)
            .as_str()
            .to_string();
        let (test, run) = (summary.run.test.clone(), summary.run.id.clone());
        let history = regressions::history(&self.pool, &test, &series, &run, HISTORY).await?;
        let acks = regressions::acknowledged(&self.pool, &test).await?;
        let acked = |id: &str| acks.contains(id);
        let base = regression::baseline(&history, &series, &acked);
        let new_series =
            history.is_empty() && regressions::test_has_results(&self.pool, &test, &run).await?;
        match regression::judge(
            summary,
            &series,
            new_series,
            &base,
            f.tolerance,
            &f.regression.gate,
            f.trends,
        ) {
            Ok(report) => {
                if report.regressed
                    && f.regression.action == crate::config::RegressionAction::Fail
                    && summary.status == crate::results::summary::EndState::Succeeded
                {
                    summary.status = crate::results::summary::EndState::Failed;
                    summary.reason = Some(format!(
                        "regressed against the last {} accepted runs of its series: {} (policy.regression.action: fail)",
                        base.len(),
                        report.regressed_metrics().join(", ")
                    ));
                }
                summary.regression = Some(report);
            }
            Err(e) => summary
                .notes
                .push(format!("the regression gate did not run: {e}")),
        }
        Ok((series, history))
    }

    /// Recomputes the change points of the run's series (best effort: the result is already
    /// recorded).
    async fn change_points(
        &self,
        summary: &RunSummary,
        series: &str,
        mut history: Vec<RunSummary>,
        policy: &crate::config::RegressionPolicy,
        trends: &[String],
    ) {
        use crate::results::summary::EndState;
        history.push(summary.clone());
        let runs: Vec<&RunSummary> = history
            .iter()
            // Runs that measured: a run failed by its thresholds did; an error did not.
            .filter(|s| matches!(s.status, EndState::Succeeded | EndState::Failed))
            .collect();
        let test = &summary.run.test;
        match crate::results::regression::shifts(test, series, &runs, &policy.change_points, trends)
        {
            Ok(shifts) => {
                match regressions::replace_change_points(&self.pool, test, series, &shifts).await {
                    Ok(new) => {
                        for s in new {
                            self.annotate_shift(s).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, test = %test, "storing change points failed")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, test = %test, "change points not computed"),
        }
    }

    /// A new change point as a Grafana annotation at its first run's end (when configured).
    async fn annotate_shift(&self, s: &crate::results::regression::Shift) {
        tracing::info!(test = %s.test, metric = %s.metric, run = %s.run_id, change = ?s.point.change_percent, "change point");
        let Some(g) = &self.grafana else { return };
        let at = chrono::DateTime::parse_from_rfc3339(&s.end)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        let text = format!(
            "perfsync: {} of {} shifted {} from {:.2} to {:.2}, beginning at run {} (p {:.1e})",
            s.metric,
            s.test,
            s.point
                .change_percent
                .map_or("?".into(), |p| format!("{p:+.1} %")),
            s.point.mean_before,
            s.point.mean_after,
            s.run_id,
            s.point.p_value
        );
        if let Err(e) = g
            .annotate(at, &s.test, &s.run_id, "change-point", &text)
            .await
        {
            tracing::warn!(error = %e, "grafana change-point annotation failed");
        }
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
        let mut shifts = BTreeMap::new();
        for s in &batch {
            if !history.contains_key(&s.run.test) {
                history.insert(
                    s.run.test.clone(),
                    results::recent(&self.pool, Some(&s.run.test), 30).await?,
                );
                shifts.insert(
                    s.run.test.clone(),
                    regressions::change_points(&self.pool, Some(&s.run.test), 20).await?,
                );
            }
        }
        let ids: Vec<String> = batch.iter().map(|s| s.run.id.clone()).collect();
        let key = self.results_key()?;
        let commit =
            tokio::task::spawn_blocking(move || git.write(&key, &batch, &history, &shifts))
                .await??;
        results::mark_pushed(&self.pool, &ids, &commit).await?;
        tracing::info!(commit = %commit, runs = ids.len(), "results pushed");
        Ok(ids.len())
    }

    /// Completes what a crash or an outage left half-done: spooled summaries go to the
    /// database, results perfsync wrote to git that the database lost are restored, and
    /// results missing from git are pushed.
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
        if self.git.is_some() {
            out.from_git = self.restore_from_git().await?;
        }
        out.pushed = self.flush().await?;
        Ok(out)
    }

    /// Results files at the branch head whose run the database holds as ended but without
    /// a result: restored when perfsync sealed them (`seal.rs`) and they agree with the run's
    /// record. Every other file the database lacks is ignored with a warning naming it and
    /// the commit that brought it; only the files of such runs are read at all.
    async fn restore_from_git(&self) -> Result<usize, RecorderError> {
        let Some(git) = self.git.clone() else {
            return Ok(0);
        };
        let key = self.results_key()?;
        let listing = {
            let git = git.clone();
            tokio::task::spawn_blocking(move || git.list_results()).await??
        };
        let Some((head, files)) = listing else {
            return Ok(0);
        };
        let ids: Vec<String> = files.iter().map(|f| f.run.clone()).collect();
        let known: std::collections::HashSet<String> = results::known_ids(&self.pool, &ids)
            .await?
            .into_iter()
            .collect();
        let files: Vec<ResultFile> = files
            .into_iter()
            .filter(|f| !known.contains(&f.run))
            .collect();
        if files.is_empty() {
            return Ok(0);
        }
        let unknown: Vec<String> = files.iter().map(|f| f.run.clone()).collect();
        let runs: BTreeMap<String, results::RunRecord> = results::run_records(&self.pool, &unknown)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut restored = 0;
        let mut ignored: Vec<(ResultFile, String)> = Vec::new();
        for f in files {
            let run = match runs.get(&f.run) {
                None => {
                    ignored.push((f, "no such run in test_runs".into()));
                    continue;
                }
                Some(r) if !r.ended() => {
                    let why = format!(
                        "run {} has not ended ({}): its own result is recorded when it ends",
                        r.id, r.status
                    );
                    ignored.push((f, why));
                    continue;
                }
                Some(r) => r.clone(),
            };
            let bytes = {
                let (git, oid) = (git.clone(), f.oid.clone());
                tokio::task::spawn_blocking(move || {
                    git.source
                        .read_blob(&oid, crate::source::dir::MAX_FILE_BYTES)
                })
                .await?
                .map_err(WriteBackError::from)?
            };
            let Some(bytes) = bytes else {
                ignored.push((f, "larger than any results file perfsync writes".into()));
                continue;
            };
            let s = match key.open(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    ignored.push((f, e.to_string()));
                    continue;
                }
            };
            let end_matches = run.ended_at.is_some_and(|t| {
                chrono::DateTime::parse_from_rfc3339(&s.run.end)
                    .is_ok_and(|e| (e.with_timezone(&chrono::Utc) - t).num_milliseconds() == 0)
            });
            if s.run.id != f.run
                || s.run.test != f.test
                || s.run.test != run.test
                || s.status.as_str() != run.status
                || !end_matches
            {
                let why = format!(
                    "sealed by perfsync, but not the result test_runs holds for run {} (test {}, {} at {:?})",
                    run.id, run.test, run.status, run.ended_at
                );
                ignored.push((f, why));
                continue;
            }
            if results::import_result(&self.pool, &s, &head, &f.path).await? {
                tracing::info!(file = %f.path, commit = %head, run = %s.run.id, "result restored from the repository");
                restored += 1;
            }
        }
        if !ignored.is_empty() {
            self.warn_ignored(&git, &head, ignored).await;
        }
        Ok(restored)
    }

    /// One warning per ignored file (the first [`WARN_FILES`]), naming the file and the
    /// commit that brought it onto the branch, then one line for the rest.
    async fn warn_ignored(
        &self,
        git: &Arc<ResultsGit>,
        head: &str,
        ignored: Vec<(ResultFile, String)>,
    ) {
        let total = ignored.len();
        let shown: Vec<(ResultFile, String)> = ignored.into_iter().take(WARN_FILES).collect();
        let paths: Vec<String> = shown.iter().map(|(f, _)| f.path.clone()).collect();
        let commits = {
            let (git, head) = (git.clone(), head.to_string());
            tokio::task::spawn_blocking(move || {
                paths
                    .iter()
                    .map(|p| {
                        git.source
                            .last_change(&head, p, BLAME_DEPTH)
                            .ok()
                            .flatten()
                            .unwrap_or_else(|| head.clone())
                    })
                    .collect::<Vec<String>>()
            })
            .await
            .unwrap_or_default()
        };
        for (i, (f, why)) in shown.iter().enumerate() {
            let commit = commits.get(i).map_or(head, String::as_str);
            // Paths come from the repository: `?` escapes what could forge a log line.
            tracing::warn!(file = ?f.path, commit = %commit, reason = %why, "results file ignored: {:?} at commit {commit}: {why}", f.path);
        }
        if total > WARN_FILES {
            tracing::warn!(commit = %head, more = total - WARN_FILES, "{} more results files ignored at commit {head}", total - WARN_FILES);
        }
    }
}

/// A results file at the branch head, by its path `results/<test>/<run>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFile {
    pub path: String,
    pub oid: String,
    pub test: String,
    pub run: String,
}

impl ResultsGit {
    /// The branch head and every results file on it (`<results>/<test>/<run>.json`), listed
    /// without reading any; `None` when the branch does not exist yet. Refused past the
    /// source's entry limit.
    pub fn list_results(&self) -> Result<Option<(String, Vec<ResultFile>)>, WriteBackError> {
        let head = match self.source.fetch() {
            Ok(h) => h.to_string(),
            Err(crate::source::SourceError::BranchMissing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let dir = self.results_dir.trim_matches('/');
        let files = self
            .source
            .files_at(&head, dir)?
            .into_iter()
            .filter_map(|(path, oid)| {
                let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
                let (test, name) = rest.split_once('/')?;
                let run = name.strip_suffix(".json")?;
                (!run.is_empty() && !run.contains('/') && !test.is_empty()).then(|| ResultFile {
                    test: test.to_string(),
                    run: run.to_string(),
                    path: path.clone(),
                    oid,
                })
            })
            .collect();
        Ok(Some((head, files)))
    }
}
