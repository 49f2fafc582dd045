//! Runs the queue: starts what [`super::schedule::decide`] allows, follows each run to its
//! end, hands it to the recorder, adopts runs a previous process left running, stops runs of
//! deleted tests, and queues cron-scheduled runs.

use super::run::{Collected, RunDir, StartRun};
use super::schedule::{decide, Queued};
use super::Executor;
use crate::config::Policy;
use crate::record::recorder::{Finish, Recorder};
use crate::record::runs::{self, RunRow};
use crate::results::prometheus::Prometheus;
use crate::results::summary::RunTrigger;
use crate::results::{Ending, RunReport};
use crate::spec::catalog::ResolvedTest;
use crate::spec::Catalog;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

pub struct Scheduler {
    pub pool: PgPool,
    pub executor: Arc<Executor>,
    pub recorder: Arc<Recorder>,
    pub policy: Policy,
    pub prometheus: Option<Prometheus>,
    pub executor_name: String,
    view: RwLock<Arc<View>>,
    /// The catalog the executor was last told about (mirrors, pruning).
    announced: Mutex<Option<Arc<Catalog>>>,
    /// Active runs: run id → (test, stop signal).
    active: Mutex<BTreeMap<String, (String, watch::Sender<Option<String>>)>>,
    wake: Notify,
    last_cron_check: Mutex<DateTime<Utc>>,
}

/// The repository as the last sync left it, and what this process has seen of it. Replaced
/// whole, so a tick reads one consistent view.
#[derive(Default)]
struct View {
    catalog: Option<Arc<Catalog>>,
    /// The commit the catalog is at.
    head: Option<String>,
    /// When this process got its first catalog: runs queued before are judged at once.
    first_at: Option<DateTime<Utc>>,
    /// The latest commits catalogs were taken at. A run queued at another commit (by another
    /// replica's sync, or by a sync whose outcome is on its way) may name what this catalog
    /// does not know yet.
    seen: VecDeque<String>,
}

/// Runs wait for an unseen commit for a minute at most; this many recent commits cover it.
const SEEN_KEPT: usize = 64;

/// What an abort request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    Stopping,
    AbortedQueued,
    NotActive(String),
    Unknown,
}

fn trigger_of(s: &str) -> RunTrigger {
    if s.contains("manual") || s == "api" {
        RunTrigger::Manual
    } else if s.contains("schedule") {
        RunTrigger::Schedule
    } else {
        RunTrigger::Change
    }
}

impl Scheduler {
    pub fn new(
        pool: PgPool,
        executor: Executor,
        recorder: Arc<Recorder>,
        policy: Policy,
        prometheus: Option<Prometheus>,
    ) -> Scheduler {
        Scheduler {
            pool,
            executor_name: executor.name().into(),
            executor: Arc::new(executor),
            recorder,
            policy,
            prometheus,
            view: RwLock::new(Arc::new(View::default())),
            announced: Mutex::new(None),
            active: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            last_cron_check: Mutex::new(Utc::now()),
        }
    }

    pub fn set_catalog(&self, c: Arc<Catalog>) {
        self.set_catalog_at(c, None);
    }

    /// The repository at `head`, as a sync left it.
    pub fn set_catalog_at(&self, c: Arc<Catalog>, head: Option<String>) {
        if let Ok(mut v) = self.view.write() {
            let mut seen = v.seen.clone();
            if let Some(h) = &head {
                seen.push_back(h.clone());
                while seen.len() > SEEN_KEPT {
                    seen.pop_front();
                }
            }
            *v = Arc::new(View {
                catalog: Some(c),
                head,
                first_at: v.first_at.or_else(|| Some(Utc::now())),
                seen,
            });
        }
        self.wake.notify_one();
    }

    fn view(&self) -> Arc<View> {
        self.view
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|_| Arc::new(View::default()))
    }

    /// Tells the executor about a catalog it has not seen. Done from the scheduling loop, so
    /// only the replica that schedules (the leader) touches mirrors and prunes.
    async fn announce(&self, catalog: &Arc<Catalog>, head: Option<&str>) {
        let fresh = self
            .announced
            .lock()
            .map(|a| !a.as_ref().is_some_and(|x| Arc::ptr_eq(x, catalog)))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        self.executor.catalog_changed(catalog, head).await;
        if let Ok(mut a) = self.announced.lock() {
            *a = Some(catalog.clone());
        }
    }

    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.view().catalog.clone()
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn active_runs(&self) -> Vec<(String, String)> {
        self.active
            .lock()
            .map(|a| {
                a.iter()
                    .map(|(id, (t, _))| (id.clone(), t.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops an active run or aborts a queued one; `actor` goes to the audit log.
    pub async fn abort(
        self: &Arc<Self>,
        run_id: &str,
        actor: &str,
    ) -> Result<AbortOutcome, crate::record::RecordError> {
        let signalled = self.active.lock().ok().and_then(|a| {
            a.get(run_id)
                .map(|(_, tx)| tx.send(Some(format!("aborted by {actor}"))).is_ok())
        });
        let outcome = match signalled {
            Some(_) => AbortOutcome::Stopping,
            None => match runs::get(&self.pool, run_id).await? {
                None => AbortOutcome::Unknown,
                Some(row) if row.status == "queued" => {
                    self.end_unstarted(
                        &row,
                        Ending::Aborted(format!("aborted by {actor} before it started")),
                    )
                    .await;
                    AbortOutcome::AbortedQueued
                }
                // Followed by another replica (the leader): ask through the cluster.
                Some(row)
                    if row.status == "running"
                        && self
                            .executor
                            .request_abort(&row.id, &format!("aborted by {actor}"))
                            .await =>
                {
                    AbortOutcome::Stopping
                }
                Some(row) => AbortOutcome::NotActive(row.status),
            },
        };
        runs::audit(
            &self.pool,
            actor,
            "run.abort",
            None,
            Some(run_id),
            serde_json::json!({"outcome": format!("{outcome:?}")}),
        )
        .await?;
        Ok(outcome)
    }

    /// A run that never started still ends with a summary (no runners, no metrics).
    async fn end_unstarted(&self, row: &RunRow, ending: Ending) {
        let now = Utc::now();
        let report = RunReport {
            run_id: row.id.clone(),
            test: row.test.clone(),
            revision: row.revision.clone(),
            commit: row.commit.clone(),
            author: row.author.clone(),
            trigger: trigger_of(&row.trigger),
            executor: self.executor_name.clone(),
            parallelism: 0,
            start: now,
            end: now,
            ending,
            runners: Vec::new(),
        };
        let f = Finish {
            report: &report,
            thresholds: &crate::spec::model::Thresholds::new(),
            baseline: None,
            prometheus: None,
            tolerance: &self.policy.regression_tolerance,
            series: None,
            regression: &self.policy.regression,
            trends: &[],
        };
        if let Err(e) = self.recorder.finish(f).await {
            warn!(run = %row.id, error = %e, "could not record an unstarted run");
        }
    }

    /// The scheduler's loop. On shutdown, runs still going are left to the next process;
    /// runs that ended finish recording first.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        self.adopt(&mut tasks, &shutdown).await;
        loop {
            if let Err(e) = self.tick(&mut tasks, &shutdown).await {
                warn!(error = %e, "scheduling failed; retrying");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn adopt(self: &Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) {
        for dir in self.executor.leftovers().await {
            info!(run = %dir.meta.run_id, "adopting a run left by an earlier process");
            self.spawn_follow(tasks, dir, shutdown.clone());
        }
        // Runs the database thinks are running but whose folder is gone cannot be followed.
        if let Ok(rows) = runs::running(&self.pool).await {
            for row in rows {
                let followed = self
                    .active
                    .lock()
                    .map(|a| a.contains_key(&row.id))
                    .unwrap_or(true);
                if !followed {
                    self.end_unstarted(
                        &row,
                        Ending::Error("the run's runners were lost with an earlier process".into()),
                    )
                    .await;
                }
            }
        }
    }

    async fn tick(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), crate::record::RecordError> {
        let view = self.view();
        let Some(catalog) = view.catalog.clone() else {
            return Ok(());
        };
        self.announce(&catalog, view.head.as_deref()).await;
        let present: BTreeSet<&str> = catalog
            .tests
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        // Deleted tests: stop their active runs.
        if let Ok(active) = self.active.lock() {
            for (test, tx) in active.values() {
                if !present.contains(test.as_str()) {
                    let _ = tx.send(Some("the test was deleted".into()));
                }
            }
        }
        self.queue_cron(&catalog).await;
        let queued = runs::queued(&self.pool).await?;
        let mut startable = Vec::new();
        // A run this catalog does not know, queued at a commit no catalog here was taken at,
        // waits for the catalog to catch up rather than being ended, for a minute at most
        // (after a restart the commits seen before are forgotten).
        let first = view.first_at.unwrap_or_else(Utc::now);
        let newer = |row: &RunRow| {
            row.commit.as_ref().is_some_and(|c| !view.seen.contains(c))
                && row.created_at > first
                && Utc::now() - row.created_at < chrono::Duration::seconds(60)
        };
        for row in &queued {
            let known = valid(&catalog, &row.test).is_some_and(|rt| rt.revision == row.revision);
            if newer(row) && !known {
                continue;
            }
            if !present.contains(row.test.as_str()) {
                self.end_unstarted(
                    row,
                    Ending::Aborted("the test was deleted before it ran".into()),
                )
                .await;
            } else {
                startable.push(row.clone());
            }
        }
        let running: BTreeSet<String> = self
            .active
            .lock()
            .map(|a| a.values().map(|(t, _)| t.clone()).collect())
            .unwrap_or_default();
        let q: Vec<Queued> = startable
            .iter()
            .map(|r| Queued {
                id: r.id.clone(),
                test: r.test.clone(),
            })
            .collect();
        let d = decide(&q, &running, self.policy.max_concurrent_runs as usize);
        if !d.supersede.is_empty() {
            runs::supersede(&self.pool, &d.supersede).await?;
        }
        for id in d.start {
            let Some(row) = startable.iter().find(|r| r.id == id).cloned() else {
                continue;
            };
            match valid(&catalog, &row.test) {
                Some(rt) if rt.revision == row.revision => {
                    self.spawn_start(tasks, row, rt, shutdown.clone()).await
                }
                Some(_) | None => {
                    self.end_unstarted(
                        &row,
                        Ending::Aborted(
                            "the revision is no longer in the repository (or the test is invalid)"
                                .into(),
                        ),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    /// Queues a run for every valid test whose cron schedule fired since the last check.
    async fn queue_cron(&self, catalog: &Catalog) {
        let now = Utc::now();
        let since = match self.last_cron_check.lock() {
            Ok(mut g) => std::mem::replace(&mut *g, now),
            Err(_) => return,
        };
        for rt in catalog.valid_tests() {
            let Some(expr) = &rt.test.spec.trigger.schedule else {
                continue;
            };
            if rt.test.spec.suspend {
                continue;
            }
            let Ok(cron) = croner::parser::CronParser::new().parse(expr) else {
                continue;
            };
            let fired = cron
                .find_next_occurrence(&since, false)
                .is_ok_and(|next| next <= now);
            if fired {
                let name = &rt.test.metadata.name;
                match runs::enqueue(
                    &self.pool,
                    name,
                    &rt.revision,
                    "schedule",
                    "perfsync (schedule)",
                    None,
                )
                .await
                {
                    Ok(id) => info!(run = %id, test = %name, "scheduled run queued"),
                    Err(e) => warn!(test = %name, error = %e, "could not queue a scheduled run"),
                }
            }
        }
    }

    async fn spawn_start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        row: RunRow,
        rt: Arc<ResolvedTest>,
        shutdown: watch::Receiver<bool>,
    ) {
        if self
            .active
            .lock()
            .map(|a| a.contains_key(&row.id))
            .unwrap_or(true)
        {
            return; // already followed (adopted)
        }
        let timeout = rt
            .test
            .spec
            .timeout
            .unwrap_or(self.policy.default_timeout)
            .as_duration();
        let req = StartRun {
            run_id: &row.id,
            test: &rt,
            timeout,
            trigger: &row.trigger,
            commit: row.commit.as_deref(),
            author: row.author.as_deref(),
        };
        match self.executor.start(&req).await {
            Ok(dir) => {
                let me = self.clone();
                let (id, test, start) = (row.id.clone(), row.test.clone(), dir.meta.start);
                let d = dir.clone();
                tokio::spawn(
                    async move {
                        if let Err(e) = me.recorder.started(&id, &test, start).await {
                            warn!(run = %id, error = %e, "could not record the start");
                        }
                        me.executor.started(&d).await;
                    }
                    .instrument(tracing::info_span!("run-started", run = %row.id)),
                );
                self.spawn_follow(tasks, dir, shutdown);
            }
            Err(e) => {
                warn!(run = %row.id, error = %e, "cannot start the run");
                let me = self.clone();
                tasks.spawn(
                    async move { me.end_unstarted(&row, Ending::Error(e.to_string())).await },
                );
            }
        }
    }

    fn spawn_follow(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        dir: RunDir,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (tx, rx) = watch::channel(None);
        if let Ok(mut a) = self.active.lock() {
            a.insert(dir.meta.run_id.clone(), (dir.meta.test.clone(), tx));
        }
        let me = self.clone();
        let span = tracing::info_span!("run", run = %dir.meta.run_id, test = %dir.meta.test);
        tasks.spawn(
            async move {
                let collected: Collected = tokio::select! {
                    c = me.executor.wait(&dir, rx) => c,
                    // Leave it running: the next process adopts it.
                    _ = shutdown.changed() => return,
                };
                me.record(&dir, collected).await;
                if let Ok(mut a) = me.active.lock() {
                    a.remove(&dir.meta.run_id);
                }
                me.wake.notify_one();
            }
            .instrument(span),
        );
    }

    async fn record(&self, dir: &RunDir, c: Collected) {
        let m = &dir.meta;
        let report = RunReport {
            run_id: m.run_id.clone(),
            test: m.test.clone(),
            revision: m.revision.clone(),
            commit: m.commit.clone(),
            author: m.author.clone(),
            trigger: trigger_of(&m.trigger),
            executor: self.executor_name.clone(),
            parallelism: m.parallelism,
            start: c.start,
            end: c.end,
            ending: c.ending,
            runners: c.runners,
        };
        let f = Finish {
            report: &report,
            thresholds: &m.spec.thresholds,
            baseline: m.spec.baseline.as_deref(),
            prometheus: self.prometheus.as_ref(),
            tolerance: &self.policy.regression_tolerance,
            series: m.content_digest.as_deref().map(|content| {
                crate::results::regression::series_inputs(
                    &m.test,
                    &m.spec,
                    content,
                    &report.executor,
                )
            }),
            regression: &self.policy.regression,
            trends: &m.spec.tracked_trends,
        };
        match self.recorder.finish(f).await {
            Ok(s) => {
                info!(status = s.status.as_str(), p95 = ?s.p95_ms(), "run recorded");
                self.executor.recorded(dir, &s).await;
            }
            Err(e) => {
                warn!(error = %e, "recording failed; the run is adopted again at the next start")
            }
        }
    }
}

fn valid(catalog: &Catalog, name: &str) -> Option<Arc<ResolvedTest>> {
    catalog.test(name).and_then(|t| t.resolved.clone())
}
