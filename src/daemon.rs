//! `perfsync serve`: wires the long-lived tasks together. Each runs in its own span; if one of
//! them ends while the daemon is not shutting down, the daemon exits instead of limping.

use crate::config::{Config, ConfigError};
use crate::executor::kubernetes::{api as kube_api, lease::LeaderLease, KubeExecutor};
use crate::executor::local::LocalExecutor;
use crate::executor::scheduler::Scheduler;
use crate::executor::Executor;
use crate::metrics::Metrics;
use crate::record::git_results::ResultsGit;
use crate::record::grafana::Grafana;
use crate::record::recorder::Recorder;
use crate::record::{db, RecordError};
use crate::results::prometheus::Prometheus;
use crate::server::{self, AppState, Health};
use crate::source::git::GitSource;
use crate::spec::render::RunnerDefaults;
use crate::sync::run::{poll_loop, sync_loop};
use crate::sync::triggers::Triggers;
use crate::sync::{watch as repo_watch, Syncer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Secret(#[from] crate::config::SecretError),
    #[error(transparent)]
    Results(#[from] crate::record::recorder::RecorderError),
    #[error("server.listen `{addr}`: {reason}")]
    Listen { addr: String, reason: String },
    #[error("executor.kind: kubernetes: {0}")]
    Kubernetes(String),
    #[error("task `{0}` stopped unexpectedly")]
    TaskDied(String),
    #[error("cannot watch the repository: {0}")]
    Watch(String),
    #[error(transparent)]
    Deliveries(#[from] crate::record::outbox::OutboxError),
}

/// Everything `serve` builds before it starts the tasks; tests build the same pieces.
pub struct Parts {
    pub config: Config,
    pub syncer: Syncer,
    pub state: Arc<AppState>,
    pub listener: tokio::net::TcpListener,
    pub recorder: Arc<Recorder>,
    pub scheduler: Arc<Scheduler>,
}

/// The scheduler with the configured executor.
pub async fn scheduler(
    config: &Config,
    pool: sqlx::PgPool,
    recorder: Arc<Recorder>,
) -> Result<Scheduler, DaemonError> {
    let extra_env = prometheus_env(config);
    let executor = match config.executor.kind {
        crate::config::ExecutorKind::Local => Executor::Local(LocalExecutor::with_settings(
            config
                .executor
                .k6_binary
                .clone()
                .unwrap_or_else(|| "k6".into()),
            Path::new(&config.state_dir).join("runs"),
            extra_env,
            &config.executor.local,
        )),
        crate::config::ExecutorKind::Kubernetes => {
            let e = &config.executor;
            let client = kube_api::client(e.kubeconfig.as_deref().map(Path::new))
                .await
                .map_err(|e| DaemonError::Kubernetes(e.to_string()))?;
            let defaults = RunnerDefaults {
                namespace: e.namespace.clone().unwrap_or_else(|| "perfsync".into()),
                image: e.runner_image.clone(),
                env: extra_env,
                runner: e.runner.clone().unwrap_or_default(),
                starter_image: e.starter_image.clone(),
            };
            let mut kube = KubeExecutor::new(
                client,
                Path::new(&config.state_dir).join("kubernetes"),
                defaults,
                e.stall_timeout.as_duration(),
            );
            kube.egress = egress_of(config, e.egress);
            kube.secret_policy = crate::executor::kubernetes::secrets::SecretPolicy {
                names: config.policy.runner.allowed_secrets.clone(),
                label: config.policy.runner.secret_label(),
            };
            Executor::Kubernetes(Box::new(kube))
        }
    };
    let prometheus = config.prometheus.as_ref().map(|p| Prometheus::new(&p.url));
    Ok(Scheduler::new(
        pool,
        executor,
        recorder,
        config.policy.clone(),
        prometheus,
    ))
}

/// Prometheus remote-write settings every runner gets when Prometheus is configured.
fn prometheus_env(config: &Config) -> Vec<(String, String)> {
    let mut extra_env = Vec::new();
    if let Some(p) = &config.prometheus {
        let rw = p
            .remote_write_url
            .clone()
            .unwrap_or_else(|| format!("{}/api/v1/write", p.url.trim_end_matches('/')));
        extra_env.push(("K6_PROMETHEUS_RW_SERVER_URL".to_string(), rw));
        extra_env.push((
            "K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM".to_string(),
            "true".to_string(),
        ));
        extra_env.push((
            "K6_PROMETHEUS_RW_TREND_STATS".to_string(),
            "p(95),p(99),min,max,avg".to_string(),
        ));
    }
    extra_env
}

/// The recorder of results: database always, git write-back and Grafana as configured.
pub fn recorder(
    config: &Config,
    repo_url: &str,
    pool: sqlx::PgPool,
) -> Result<Recorder, DaemonError> {
    let git = if config.results.write_back {
        let branch = config
            .results
            .branch
            .clone()
            .unwrap_or_else(|| config.repository.branch.clone());
        Some(ResultsGit {
            // A clone of its own: never contends with the sync's fetches for lock files.
            source: GitSource::for_purpose(
                repo_url,
                &branch,
                Path::new(&config.state_dir),
                config.git_auth()?,
                "results",
            )
            .with_limits(config.repository.limits()),
            results_dir: config.repository.layout().results_dir,
            author: (
                config.results.author_name.clone(),
                config.results.author_email.clone(),
            ),
            retries: config.results.push_retries,
            before_push: None,
        })
    } else {
        None
    };
    let grafana = match &config.grafana {
        Some(g) => Some(Grafana::new(&g.url, g.token.resolve("grafana.token")?)),
        None => None,
    };
    Ok(Recorder::new(
        pool,
        Path::new(&config.state_dir),
        git,
        grafana,
    ))
}

pub async fn prepare(config: Config) -> Result<Parts, DaemonError> {
    let url = config.database_url()?;
    let pool = db::pool(&url)?;
    db::migrate(&pool).await?;
    let repo_url = config.repository_url()?;
    let source = GitSource::new(
        &repo_url,
        &config.repository.branch,
        Path::new(&config.state_dir),
        config.git_auth()?,
    )
    .with_limits(config.repository.limits());
    let metrics = Arc::new(Metrics::new());
    let syncer = Syncer::new(
        source,
        config.repository.layout(),
        config.policy.clone(),
        pool.clone(),
        metrics.clone(),
    );
    let recorder = recorder(&config, &repo_url, pool.clone())?;
    // The results key: an exposed or unreadable one stops the daemon at start.
    recorder.check()?;
    let recorder = Arc::new(recorder);
    let scheduler = Arc::new(scheduler(&config, pool.clone(), recorder.clone()).await?);
    if let Some(d) = crate::record::outbox::Deliveries::from_config(&config, pool.clone())? {
        // Weak: the scheduler holds the recorder, which holds the deliveries.
        let sched = Arc::downgrade(&scheduler);
        d.set_labels(move |test| {
            crate::record::outbox::labels_in(sched.upgrade()?.catalog()?.as_ref(), test)
        });
        recorder.set_deliveries(Arc::new(d));
    }
    let mut hook_secrets = BTreeMap::new();
    let w = &config.webhooks;
    for (name, r) in [
        ("github", &w.github),
        ("gitlab", &w.gitlab),
        ("gitea", &w.gitea),
        ("generic", &w.generic),
    ] {
        if let Some(r) = r {
            hook_secrets.insert(name, r.resolve(&format!("webhooks.{name}"))?);
        }
    }
    let api_token = config
        .server
        .api_token
        .as_ref()
        .map(|r| r.resolve("server.apiToken"))
        .transpose()?;
    let listen = config.server.listen.clone();
    let addr: SocketAddr =
        listen
            .parse()
            .map_err(|e: std::net::AddrParseError| DaemonError::Listen {
                addr: listen.clone(),
                reason: e.to_string(),
            })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Listen {
            addr: listen.clone(),
            reason: e.to_string(),
        })?;
    let state = Arc::new(AppState {
        triggers: Arc::new(Triggers::new()),
        metrics,
        health: Arc::new(Health::default()),
        branch: config.repository.branch.clone(),
        hook_secrets,
        api_token,
        pool: Some(pool),
        scheduler: Some(scheduler.clone()),
        repository_url: Some(crate::source::git::redact_url(&repo_url)),
        page: crate::server::page::PageSettings::from_config(&config),
    });
    // Weak: the state holds the scheduler, which holds the recorder.
    let known = Arc::downgrade(&state);
    recorder.mask_secrets(move || {
        known
            .upgrade()
            .map(|s| crate::server::page::known_secrets(&s))
            .unwrap_or_default()
    });
    Ok(Parts {
        config,
        syncer,
        state,
        listener,
        recorder,
        scheduler,
    })
}

/// The lease this replica must hold to schedule, when leader election is on.
fn leader_lease(config: &Config, sched: &Scheduler) -> Option<LeaderLease> {
    let Executor::Kubernetes(k) = sched.executor.as_ref() else {
        return None;
    };
    let le = config.executor.leader_election.clone().unwrap_or_default();
    if !le.enabled {
        return None;
    }
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "perfsync".into());
    let identity = format!("{host}-{}", std::process::id());
    Some(LeaderLease::new(
        k.client.clone(),
        &k.namespace,
        &le.lease_name,
        &identity,
        le.lease_duration.as_duration(),
    ))
}

/// Runs until SIGTERM or SIGINT (then `Ok`) or until a task dies (then `Err`).
pub async fn run(parts: Parts, mut stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
    let Parts {
        config,
        syncer,
        state,
        listener,
        recorder,
        scheduler,
    } = parts;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");

    let _watcher = match repo_watch::local_git_dir(&config.repository_url()?) {
        Some(dir) if config.sync.watch => Some(
            repo_watch::watch(&dir, &config.repository.branch, state.triggers.clone())
                .map_err(|e| DaemonError::Watch(e.to_string()))?,
        ),
        _ => None,
    };
    state.triggers.fire("start", None);
    {
        // Complete what a crash left half-done, then keep pushing whatever could not be.
        let (r, mut s) = (recorder.clone(), shutdown.clone());
        tasks.spawn(
            async move {
                match r.reconcile().await {
                    Ok(done) => info!(
                        from_spool = done.from_spool,
                        from_git = done.from_git,
                        pushed = done.pushed,
                        "results reconciled"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "results reconciliation failed; will retry")
                    }
                }
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                            if let Err(e) = r.flush().await {
                                tracing::warn!(error = %e, "results write-back failed; will retry");
                            }
                        }
                        _ = s.changed() => break,
                    }
                }
                "results"
            }
            .instrument(tracing::info_span!("results")),
        );
    }
    if let Some(d) = recorder.deliveries() {
        let s = shutdown.clone();
        tasks.spawn(
            async move {
                d.run(s).await;
                "deliveries"
            }
            .instrument(tracing::info_span!("deliveries")),
        );
    }
    {
        let (t, h, s) = (
            state.triggers.clone(),
            state.health.clone(),
            shutdown.clone(),
        );
        let (tx, mut outcomes) = tokio::sync::mpsc::channel::<crate::sync::SyncOutcome>(4);
        tasks.spawn(
            async move {
                sync_loop(syncer, t, h, Some(tx), s).await;
                "sync"
            }
            .instrument(tracing::info_span!("sync-loop")),
        );
        // Each sync hands the scheduler the repository as it now stands.
        let sched = scheduler.clone();
        let mut s = shutdown.clone();
        tasks.spawn(
            async move {
                loop {
                    tokio::select! {
                        o = outcomes.recv() => match o {
                            Some(o) => sched.set_catalog_at(o.catalog, Some(o.head)),
                            None => break,
                        },
                        _ = s.changed() => break,
                    }
                }
                "sync-outcomes"
            }
            .instrument(tracing::info_span!("sync-outcomes")),
        );
        let (sched, s) = (scheduler.clone(), shutdown.clone());
        let lease = leader_lease(&config, &sched);
        tasks.spawn(
            async move {
                let Some(lease) = lease else {
                    sched.run(s).await;
                    return "scheduler";
                };
                // Only the leader schedules; a lost lease ends the process so that a run is
                // never followed by two replicas.
                let mut stop = s.clone();
                tokio::select! {
                    _ = lease.acquire() => {}
                    _ = stop.changed() => return "scheduler",
                }
                tokio::select! {
                    _ = sched.run(s) => {
                        lease.release().await;
                        "scheduler"
                    }
                    _ = lease.hold() => "leader-lease",
                }
            }
            .instrument(tracing::info_span!("scheduler")),
        );
    }
    {
        let (t, s) = (state.triggers.clone(), shutdown.clone());
        let (i, j) = (
            config.sync.poll_interval.as_duration(),
            config.sync.poll_jitter.as_duration(),
        );
        tasks.spawn(
            async move {
                poll_loop(t, i, j, s).await;
                "poll"
            }
            .instrument(tracing::info_span!("poll")),
        );
    }
    {
        let mut s = shutdown.clone();
        let routes = server::routes(state.clone());
        tasks.spawn(
            async move {
                warp::serve(routes)
                    .incoming(listener)
                    .graceful(async move {
                        let _ = s.changed().await;
                    })
                    .run()
                    .await;
                "http"
            }
            .instrument(tracing::info_span!("http")),
        );
    }
    let result = tokio::select! {
        _ = stop.changed() => Ok(()),
        done = tasks.join_next() => {
            let name = match done {
                Some(Ok(name)) => name.to_string(),
                Some(Err(e)) => format!("panicked: {e}"),
                None => "none".to_string(),
            };
            error!(task = %name, "a long-lived task stopped; exiting");
            Err(DaemonError::TaskDied(name))
        }
    };
    let _ = shutdown_tx.send(true);
    while tasks.join_next().await.is_some() {}
    result
}

/// Turns SIGTERM and SIGINT into a stop signal. The handlers are installed before this
/// returns, so a signal arriving during start-up is a clean stop too.
pub fn stop_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    tokio::spawn(async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
        info!("stopping on signal");
        let _ = tx.send(true);
    });
    rx
}

/// What each run's egress policy lets its pods reach: the policy's allowed targets, and the
/// Prometheus remote-write endpoint when results go there.
fn egress_of(
    config: &crate::config::Config,
    mode: crate::config::EgressMode,
) -> crate::executor::kubernetes::Egress {
    use crate::executor::kubernetes::{egress::Mode, Egress};
    let mode = match mode {
        crate::config::EgressMode::Networkpolicy => Mode::NetworkPolicy,
        crate::config::EgressMode::Cilium => Mode::Cilium,
        crate::config::EgressMode::None => Mode::Off,
    };
    let mut patterns = config.policy.allowed_targets.clone();
    if let Some(p) = &config.prometheus {
        patterns.push(p.url.clone());
    }
    let rules = crate::spec::allowlist::Allowlist::parse(&patterns)
        .map(|a| a.egress())
        .unwrap_or_default();
    match mode {
        Mode::Off => tracing::warn!("executor.egress is none: runs may reach any host the cluster lets them"),
        Mode::NetworkPolicy => tracing::info!("each run gets a NetworkPolicy (DNS, the policy's CIDRs and resolved host names); enforced only if the cluster's CNI implements NetworkPolicy, which the API cannot tell"),
        Mode::Cilium => tracing::info!("each run gets a CiliumNetworkPolicy (toFQDNs)"),
    }
    Egress { mode, rules }
}
