//! The sync: fetch the branch, bring the parsed repository up to the new head (reading only
//! what changed), plan, and record the plan with the new state in one transaction.

pub mod acknowledgements;
pub mod run;
pub mod triggers;
pub mod watch;

use crate::config::{Layout, Policy};
use crate::metrics::Metrics;
use crate::plan::{plan, Known, Plan, Prior};
use crate::record::sync_state::{self, QueuedRun, SyncRecord};
use crate::record::RecordError;
use crate::source::git::{CommitInfo, GitSource};
use crate::source::{SourceError, Tree};
use crate::spec::catalog::Index;
use crate::spec::Catalog;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("a blocking git task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The parsed repository at one commit, kept between syncs.
struct Snapshot {
    commit: String,
    tree: Tree,
    index: Index,
}

#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// Every test and template at the head, valid or not.
    pub catalog: Arc<Catalog>,
    pub plan: Plan,
    pub queued: Vec<QueuedRun>,
    pub head: String,
    /// Time spent fetching, and planning (index update and plan), excluding recording.
    pub fetch: Duration,
    pub planning: Duration,
    /// Nothing to do: the head was already synced.
    pub up_to_date: bool,
}

pub struct Syncer {
    source: Arc<GitSource>,
    layout: Layout,
    policy: Policy,
    pool: PgPool,
    repository: String,
    snapshot: Option<Snapshot>,
    prior: Option<Prior>,
    metrics: Arc<Metrics>,
    /// Test hook: fails the sync right before the state is committed, as a crash would.
    pub fail_before_commit: bool,
}

impl Syncer {
    pub fn new(
        source: GitSource,
        layout: Layout,
        policy: Policy,
        pool: PgPool,
        metrics: Arc<Metrics>,
    ) -> Syncer {
        let repository = source.url();
        Syncer {
            source: Arc::new(source),
            layout,
            policy,
            pool,
            repository,
            snapshot: None,
            prior: None,
            metrics,
            fail_before_commit: false,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The commit of the last successful sync, as this process knows it.
    pub fn synced_commit(&self) -> Option<&str> {
        self.prior.as_ref().and_then(|p| p.commit.as_deref())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GitSource) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let src = self.source.clone();
        Ok(tokio::task::spawn_blocking(move || f(&src)).await??)
    }

    /// One sync. On any error the recorded state is untouched and the next sync starts over
    /// from it, so a failure never loses or duplicates a planned run.
    pub async fn sync(&mut self, trigger: &str) -> Result<SyncOutcome, SyncError> {
        let started = Instant::now();
        let result = self.sync_inner(trigger).await;
        self.metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(o) if o.up_to_date => self.metrics.sync_outcome("up-to-date"),
            Ok(o) => {
                self.metrics.sync_outcome("synced");
                self.metrics.planned_runs.inc_by(o.plan.runs.len() as u64);
                self.metrics
                    .removed_tests
                    .inc_by(o.plan.removed.len() as u64);
                self.metrics.invalid_tests.set(o.plan.invalid.len() as i64);
                info!(
                    head = %o.head, trigger, planned = o.plan.runs.len(), removed = o.plan.removed.len(),
                    invalid = o.plan.invalid.len(), baseline = o.plan.is_baseline(),
                    fetch_ms = o.fetch.as_millis() as u64, plan_ms = o.planning.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64, "synced"
                );
            }
            Err(e) => {
                self.metrics.sync_outcome("failed");
                // Forget cached state: the next sync reloads it from the database.
                self.prior = None;
                warn!(error = %e, trigger, "sync failed");
                if let Err(db) = sync_state::record_failure(
                    &self.pool,
                    &self.repository,
                    self.source.branch(),
                    &e.to_string(),
                )
                .await
                {
                    warn!(error = %db, "could not record the sync failure");
                }
            }
        }
        result
    }

    async fn sync_inner(&mut self, trigger: &str) -> Result<SyncOutcome, SyncError> {
        let t0 = Instant::now();
        let head = self.blocking(|s| s.fetch().map(|o| o.to_string())).await?;
        let fetch = t0.elapsed();
        if self.prior.is_none() {
            self.prior = Some(
                sync_state::load_prior(&self.pool, &self.repository, self.source.branch()).await?,
            );
        }
        let prior = self.prior.clone().unwrap_or_default();
        if prior.commit.as_deref() == Some(head.as_str()) {
            // Nothing to plan; the catalog is still wanted by whoever runs tests.
            let catalog = match &self.snapshot {
                Some(s) if s.commit == head => Arc::new(s.index.catalog()),
                _ => Arc::new(self.advance(&prior, &head).await?.0),
            };
            return Ok(SyncOutcome {
                catalog,
                plan: Plan {
                    from: prior.commit.clone(),
                    to: head.clone(),
                    runs: vec![],
                    removed: vec![],
                    invalid: vec![],
                    skipped: vec![],
                },
                queued: vec![],
                head,
                fetch,
                planning: Duration::ZERO,
                up_to_date: true,
            });
        }
        let t1 = Instant::now();
        let (catalog, changed) = self.advance(&prior, &head).await?;
        let the_plan = plan(&prior, &catalog, &head, changed.as_deref());
        let planning = t1.elapsed();
        let info = {
            let h = head.clone();
            self.blocking(move |s| s.commit_info(&h)).await?
        };
        if self.fail_before_commit {
            return Err(SyncError::Record(RecordError::Conflict {
                repository: self.repository.clone(),
                branch: self.source.branch().to_string(),
                expected: prior.commit.clone(),
                found: None,
            }));
        }
        let queued = sync_state::record_sync(
            &self.pool,
            &SyncRecord {
                repository: &self.repository,
                branch: self.source.branch(),
                plan: &the_plan,
                catalog: &catalog,
                prior: &prior,
                head: &info,
                trigger,
            },
        )
        .await?;
        self.prior = Some(next_prior(&prior, &catalog, &the_plan));
        acknowledgements::import(&self.source, &self.pool, &head, &self.layout.results_dir).await;
        Ok(SyncOutcome {
            catalog: Arc::new(catalog),
            plan: the_plan,
            queued,
            head,
            fetch,
            planning,
            up_to_date: false,
        })
    }

    /// Brings the snapshot to `head` and returns the catalog there, plus the paths that changed
    /// since the last synced commit when that commit is an ancestor (`None` after a force-push).
    async fn advance(
        &mut self,
        prior: &Prior,
        head: &str,
    ) -> Result<(Catalog, Option<Vec<String>>), SyncError> {
        let folders = vec![
            self.layout.tests_dir.clone(),
            self.layout.templates_dir.clone(),
        ];
        // Bring the cached snapshot (if any) to `head`: diff from its commit, whatever the
        // ancestry, and read only the changed paths.
        let (snapshot, snapshot_diff) = match self.snapshot.take() {
            Some(snap) if snap.commit == head => {
                let diff = (prior.commit.as_deref() == Some(head)).then(Vec::new);
                (snap, diff)
            }
            Some(mut snap) => {
                let (old, new, f) = (snap.commit.clone(), head.to_string(), folders.clone());
                let (diff, tree) = self
                    .blocking(move |s| {
                        let refs: Vec<&str> = f.iter().map(String::as_str).collect();
                        let diff = s.changed_paths(&old, &new, &refs)?;
                        let mut tree = snap.tree;
                        s.update_tree(&mut tree, &new, &diff)?;
                        Ok((diff, tree))
                    })
                    .await?;
                let from = std::mem::replace(&mut snap.commit, head.to_string());
                snap.tree = tree;
                snap.index.update(&snap.tree, &diff);
                // Only a diff from the last synced commit says what the sync changed.
                let diff = (prior.commit.as_deref() == Some(from.as_str())).then_some(diff);
                (snap, diff)
            }
            None => {
                let (new, f) = (head.to_string(), folders.clone());
                let tree = self
                    .blocking(move |s| {
                        let refs: Vec<&str> = f.iter().map(String::as_str).collect();
                        s.tree_at(&new, &refs)
                    })
                    .await?;
                let index = Index::build(&tree, self.layout.clone(), Some(self.policy.clone()));
                let snap = Snapshot {
                    commit: head.to_string(),
                    tree,
                    index,
                };
                (snap, None)
            }
        };
        // The paths changed since the last synced commit, when that commit is an ancestor of
        // `head` (`None` after a force-push, when only revisions can be compared).
        let changed_since_prior = match &prior.commit {
            None => None,
            Some(old) => {
                let (old, new, f) = (old.clone(), head.to_string(), folders);
                let known = snapshot_diff;
                self.blocking(move |s| {
                    if !s.is_ancestor(&old, &new)? {
                        return Ok(None);
                    }
                    match known {
                        Some(diff) => Ok(Some(diff)),
                        None => {
                            let refs: Vec<&str> = f.iter().map(String::as_str).collect();
                            s.changed_paths(&old, &new, &refs).map(Some)
                        }
                    }
                })
                .await?
            }
        };
        let catalog = snapshot.index.catalog();
        self.snapshot = Some(snapshot);
        Ok((catalog, changed_since_prior))
    }

    /// The head commit's details (author for the audit log).
    pub async fn commit_info(&self, sha: &str) -> Result<CommitInfo, SyncError> {
        let s = sha.to_string();
        self.blocking(move |src| src.commit_info(&s)).await
    }
}

/// The state after recording `plan`: what the next sync compares against.
pub fn next_prior(prior: &Prior, catalog: &Catalog, plan: &Plan) -> Prior {
    let mut tests = prior.tests.clone();
    for r in &plan.removed {
        tests.remove(&r.test);
    }
    for entry in &catalog.tests {
        let Some(name) = &entry.name else { continue };
        match &entry.resolved {
            Some(rt) => {
                tests.insert(
                    name.clone(),
                    Known {
                        revision: Some(rt.revision.clone()),
                        template_revision: rt.template_revision.clone(),
                        file: entry.file.clone(),
                        valid: true,
                    },
                );
            }
            None => {
                let old = tests.get(name).cloned();
                tests.insert(
                    name.clone(),
                    Known {
                        revision: old.as_ref().and_then(|k| k.revision.clone()),
                        template_revision: old.and_then(|k| k.template_revision),
                        file: entry.file.clone(),
                        valid: false,
                    },
                );
            }
        }
    }
    Prior {
        commit: Some(plan.to.clone()),
        tests,
    }
}
