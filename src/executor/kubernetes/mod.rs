//! The kubernetes executor: each run as a k6-operator TestRun. Per revision an immutable
//! ConfigMap holds the bundle; per run a TestRun is applied server-side; the run is followed
//! through the TestRun's stage and its runner pods, whose exit codes and logs (the summary
//! line) are read before the TestRun is deleted. A folder per run under the state directory
//! keeps what was collected, so a crash between stopping a run and recording it loses
//! nothing; the TestRun's `perfsync.dev/meta` annotation lets a process with an empty state
//! directory adopt what is running.

pub mod api;
pub mod crd;
pub mod egress;
pub mod follow;
pub mod lease;
pub mod mirror;
pub mod pruned;
pub mod reflect;
pub mod secrets;
pub mod watches;

use super::run::{write_atomic, Collected, Meta, RunDir, StartRun};
use super::ExecutorError;
use crate::results::report::{summary_from_output, Ending, RunnerReport};
use crate::results::RunSummary;
use crate::spec::catalog::ResolvedTest;
use crate::spec::render::{self, RunnerDefaults, LABEL_RUN, LABEL_TEST, MANAGED_BY};
use crate::spec::Catalog;
use chrono::{DateTime, Utc};
use follow::RunnerState;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{
    DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

pub const FIELD_MANAGER: &str = "perfsync";
pub const META_ANNOTATION: &str = "perfsync.dev/meta";
/// Set on a TestRun to have the replica following it stop it (an abort through another
/// replica's API).
pub const ABORT_ANNOTATION: &str = "perfsync.dev/abort";
const ATTEMPTS: u32 = 8;
/// Rounds of reading an ended runner's log (each with its own retries) before giving up.
const LOG_ROUNDS: u32 = 3;
/// How long an `error` stage waits for the initializer pod's end to be seen.
const ERROR_GRACE: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubernetes client: {message}")]
    Config { message: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Local(#[from] super::run::DirError),
    #[error("the TestRun CRD installed in the cluster dropped {fields} from TestRun {testrun}: the k6-operator there is older than perfsync supports (v1.5.0 or later); install its current CRD")]
    Pruned { testrun: String, fields: String },
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Api { what, source }
}

pub struct KubeExecutor {
    pub client: kube::Client,
    pub namespace: String,
    /// `<stateDir>/kubernetes`: one folder per run.
    pub root: PathBuf,
    pub defaults: RunnerDefaults,
    pub stall: Duration,
    pub mirror: mirror::Mirror,
    /// One TestRun watch and one pod watch for every run followed.
    watches: watches::Watches,
    /// How each run's egress is confined, and what the policy lets it reach.
    pub egress: Egress,
    /// Which Secrets a test's `secretEnv` may name.
    pub secret_policy: secrets::SecretPolicy,
    /// Values of the Secrets runs got, masked wherever a runner's output is kept or shown.
    pub secret_book: secrets::SecretBook,
    /// The revision of every valid test, for pruning ConfigMaps.
    current: Mutex<BTreeMap<String, String>>,
}

fn managed() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

impl KubeExecutor {
    pub fn new(
        client: kube::Client,
        root: PathBuf,
        defaults: RunnerDefaults,
        stall: Duration,
    ) -> KubeExecutor {
        let namespace = defaults.namespace.clone();
        let watches = watches::Watches::new(
            Api::namespaced_with(client.clone(), &namespace, &api::testrun_resource()),
            Api::namespaced(client.clone(), &namespace),
            managed(),
        );
        KubeExecutor {
            mirror: mirror::Mirror::new(client.clone(), &namespace),
            watches,
            egress: Egress::default(),
            secret_policy: secrets::SecretPolicy::default(),
            secret_book: secrets::SecretBook::default(),
            client,
            namespace,
            root,
            defaults,
            stall,
            current: Mutex::new(BTreeMap::new()),
        }
    }

    fn testruns(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &api::testrun_resource(),
        )
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the run's ConfigMap (if its revision has none yet) and applies its TestRun.
    /// Idempotent on the run id: a run that has a folder is returned as it is.
    pub async fn start(&self, req: &StartRun<'_>) -> Result<RunDir, ExecutorError> {
        let path = self.root.join(req.run_id);
        if let Some(existing) = RunDir::load(&path) {
            return Ok(existing);
        }
        let wrap = |source| ExecutorError::Kubernetes {
            run: req.run_id.to_string(),
            source,
        };
        let dir =
            RunDir::create(path.clone(), Meta::new(req, Utc::now())).map_err(|e| wrap(e.into()))?;
        let applied = async {
            secrets::admit(
                &Api::namespaced(self.client.clone(), &self.namespace),
                &self.namespace,
                &self.secret_policy,
                &req.test.test.spec,
                &self.secret_book,
            )
            .await?;
            self.ensure_configmap(req.test).await?;
            self.apply_testrun(req.test, &dir.meta).await
        }
        .await;
        if let Err(e) = applied {
            // Nothing runs: forget the folder so the run is not adopted as a lost one.
            let _ = std::fs::remove_dir_all(&path);
            return Err(wrap(e));
        }
        Ok(dir)
    }

    async fn ensure_configmap(&self, rt: &ResolvedTest) -> Result<(), KubeError> {
        let cm = render::configmap(rt, &self.namespace);
        let body: ConfigMap = serde_json::to_value(&cm)
            .and_then(serde_json::from_value)
            .map_err(|e| KubeError::Config {
                message: format!("rendering ConfigMap {}: {e}", cm.metadata.name),
            })?;
        let api = self.configmaps();
        let pp = PostParams::default();
        let created = api::retry("create ConfigMap", ATTEMPTS, || api.create(&pp, &body)).await;
        match created {
            Ok(_) => Ok(()),
            // Immutable and named by revision: one that exists holds this very bundle.
            Err(e) if api::is_already_exists(&e) => Ok(()),
            Err(e) => Err(api_err(format!("creating ConfigMap {}", cm.metadata.name))(
                e,
            )),
        }
    }

    async fn apply_testrun(&self, rt: &ResolvedTest, meta: &Meta) -> Result<(), KubeError> {
        let mut tr = render::testrun(rt, &meta.run_id, &self.defaults);
        let name = tr.metadata.name.clone();
        tr.metadata.annotations.insert(
            META_ANNOTATION.into(),
            serde_json::to_string(meta).unwrap_or_default(),
        );
        let body = serde_json::to_value(&tr).map_err(|e| KubeError::Config {
            message: format!("rendering TestRun {}: {e}", meta.run_id),
        })?;
        let api = self.testruns();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        let kept = api::retry("apply TestRun", ATTEMPTS, || api.patch(&name, &pp, &patch))
            .await
            .map_err(api_err(format!("applying TestRun {name}")))?;
        // Never run without a field the installed CRD dropped (VUs, duration, tags…).
        let dropped = pruned::pruned_paths(&body["spec"], &kept.data["spec"]);
        if !dropped.is_empty() {
            let _ = self.delete_testrun(&name).await;
            return Err(KubeError::Pruned {
                testrun: name,
                fields: dropped
                    .iter()
                    .map(|f| format!("spec.{f}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        // Confine the run's pods before any runner starts; without it the run does not go.
        let owner = egress::Owner {
            name: &name,
            uid: kept.metadata.uid.as_deref().unwrap_or(""),
        };
        if let Err(e) = self.confine(&name, &meta.run_id, &owner).await {
            let _ = self.delete_testrun(&name).await;
            return Err(e);
        }
        info!(run = %meta.run_id, testrun = %name, "TestRun applied");
        Ok(())
    }

    /// Creates the run's egress policy object (see `egress.rs`).
    async fn confine(
        &self,
        name: &str,
        run: &str,
        owner: &egress::Owner<'_>,
    ) -> Result<(), KubeError> {
        let (body, resource) = match self.egress.mode {
            egress::Mode::Off => return Ok(()),
            egress::Mode::NetworkPolicy => {
                let mut resolved = Vec::new();
                for r in &self.egress.rules {
                    if let crate::spec::allowlist::EgressHost::Name(host) = &r.host {
                        let port = r.port.unwrap_or(443);
                        match tokio::net::lookup_host((host.as_str(), port)).await {
                            Ok(addrs) => {
                                resolved.extend(addrs.map(|a| (a.ip(), r.port)));
                            }
                            Err(e) => {
                                warn!(host = %host, error = %e, "an allowed host does not resolve; the run cannot reach it")
                            }
                        }
                    }
                }
                resolved.sort();
                resolved.dedup();
                (
                    egress::network_policy(
                        name,
                        run,
                        &self.namespace,
                        owner,
                        &self.egress.rules,
                        &resolved,
                    ),
                    kube::discovery::ApiResource::from_gvk_with_plural(
                        &kube::api::GroupVersionKind::gvk(
                            "networking.k8s.io",
                            "v1",
                            "NetworkPolicy",
                        ),
                        "networkpolicies",
                    ),
                )
            }
            egress::Mode::Cilium => (
                egress::cilium_policy(name, run, &self.namespace, owner, &self.egress.rules),
                kube::discovery::ApiResource::from_gvk_with_plural(
                    &kube::api::GroupVersionKind::gvk("cilium.io", "v2", "CiliumNetworkPolicy"),
                    "ciliumnetworkpolicies",
                ),
            ),
        };
        let obj: DynamicObject = serde_json::from_value(body).map_err(|e| KubeError::Config {
            message: format!("rendering the egress policy of {name}: {e}"),
        })?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let pp = PostParams::default();
        match api::retry("create egress policy", ATTEMPTS, || api.create(&pp, &obj)).await {
            Ok(_) => Ok(()),
            // Named by TestRun: one that exists is this run's (a restart between the two).
            Err(e) if api::is_already_exists(&e) => Ok(()),
            Err(e) => Err(api_err(format!(
                "creating the egress policy of TestRun {name}"
            ))(e)),
        }
    }

    /// Runs not yet recorded: folders under the state directory, and TestRuns of perfsync's
    /// in the namespace that have none (the state directory was lost with the pod).
    pub async fn leftovers(&self) -> Vec<RunDir> {
        let mut out = RunDir::unrecorded(&self.root);
        let known: BTreeSet<String> = out.iter().map(|d| d.meta.run_id.clone()).collect();
        let api = self.testruns();
        let lp = ListParams::default().labels(&managed());
        let listed = api::retry("list TestRuns", ATTEMPTS, || api.list(&lp)).await;
        match listed {
            Ok(list) => {
                for tr in list.items {
                    let name = tr.name_any();
                    let Some(run) = tr.labels().get(LABEL_RUN).cloned() else {
                        continue;
                    };
                    let path = self.root.join(&run);
                    if known.contains(&run) || RunDir::load(&path).is_some() {
                        continue;
                    }
                    let meta = tr
                        .annotations()
                        .get(META_ANNOTATION)
                        .and_then(|m| serde_json::from_str::<Meta>(m).ok());
                    match meta.map(|m| RunDir::create(path, m)) {
                        Some(Ok(dir)) => out.push(dir),
                        Some(Err(e)) => warn!(run = %name, error = %e, "cannot adopt"),
                        None => {
                            warn!(run = %name, "a TestRun of perfsync's without readable meta; left alone")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list TestRuns to adopt; folders only"),
        }
        out.sort_by_key(|d| d.meta.start);
        out
    }

    async fn read_log(&self, pod: &str) -> Result<String, kube::Error> {
        let api = self.pods();
        let lp = LogParams {
            container: Some("k6".into()),
            ..LogParams::default()
        };
        let got = api::retry("read pod log", 4, || api.logs(pod, &lp)).await;
        match got {
            // A pod whose only container is named otherwise.
            Err(e) if api::code(&e) == Some(400) => api.logs(pod, &LogParams::default()).await,
            other => other,
        }
    }

    async fn delete_testrun(&self, name: &str) -> Result<(), KubeError> {
        let api = self.testruns();
        let dp = DeleteParams::background();
        match api::retry("delete TestRun", ATTEMPTS, || api.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if api::is_not_found(&e) => Ok(()),
            Err(e) => Err(api_err(format!("deleting TestRun {name}"))(e)),
        }
    }

    /// Follows a run to its end. What was collected is written to the run's folder before
    /// anything is deleted, so a restarted process records it without the cluster.
    pub async fn wait(
        &self,
        dir: &RunDir,
        mut cancel: watch::Receiver<Option<String>>,
    ) -> Collected {
        let collected_path = dir.path.join("collected.json");
        if let Some(c) = std::fs::read(&collected_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Collected>(&b).ok())
        {
            return c;
        }
        secrets::remember(
            &Api::namespaced(self.client.clone(), &self.namespace),
            &dir.meta.spec,
            &self.secret_book,
        )
        .await;
        let name = render::testrun_name(&dir.meta.test, &dir.meta.run_id);
        let n = dir.meta.parallelism.max(1);
        let mut view = self.watches.follow(&name);
        let mut view_open = true;
        let mut logs = Logs::default();
        let mut last_key = String::new();
        let mut last_progress = tokio::time::Instant::now();
        let mut seen = false;
        let mut error_seen: Option<tokio::time::Instant> = None;
        let ending = loop {
            let v = view.borrow_and_update().clone();
            if v.listed {
                let tr = v.testrun.as_deref();
                seen |= tr.is_some();
                let stage = tr.and_then(follow::stage);
                let pods = follow::run_pods(v.pods.values().map(|p| p.as_ref()), &name);
                for (i, pod) in &pods.runners {
                    if matches!(follow::runner_state(pod), RunnerState::Ended { .. }) {
                        self.fetch_log(*i, pod, &mut logs, false).await;
                    }
                }
                let done = |i: &u32| {
                    pods.runners.get(i).is_some_and(|p| {
                        matches!(follow::runner_state(p), RunnerState::Ended { .. })
                            && logs.has(*i, p)
                    })
                };
                if (1..=n).all(|i| done(&i)) {
                    break Ending::Finished;
                }
                if let Some(why) = tr.and_then(|t| t.annotations().get(ABORT_ANNOTATION).cloned()) {
                    self.stop(&name, &pods.runners, &mut logs).await;
                    break Ending::Aborted(why);
                }
                // The pod watch may lag the TestRun's: give the initializer's end a moment
                // to arrive, since its state and log are the only account of the error.
                let init_ended = pods
                    .initializer
                    .is_some_and(|p| matches!(follow::runner_state(p), RunnerState::Ended { .. }));
                let error_at = match stage.as_deref() {
                    Some("error") => *error_seen.get_or_insert_with(tokio::time::Instant::now),
                    _ => tokio::time::Instant::now(),
                };
                if stage.as_deref() == Some("error")
                    && (init_ended
                        || pods.initializer.is_none() && error_at.elapsed() >= ERROR_GRACE / 2
                        || error_at.elapsed() >= ERROR_GRACE)
                {
                    let init_log = match pods.initializer {
                        Some(p) => self.read_log(&p.name_any()).await.ok(),
                        None => None,
                    };
                    let why = follow::error_cause(tr, &pods, init_log.as_deref(), n);
                    self.stop(&name, &pods.runners, &mut logs).await;
                    break Ending::Error(why);
                }
                if stage.as_deref() == Some("finished") && pods.runners.keys().all(done) {
                    break Ending::Finished; // runners without a pod are lost
                }
                if tr.is_none() && seen {
                    self.stop(&name, &pods.runners, &mut logs).await;
                    break Ending::Error(
                        "the TestRun was deleted by someone other than perfsync".into(),
                    );
                }
                let key = follow::progress_key(stage.as_deref(), &pods);
                if key != last_key {
                    last_key = key;
                    last_progress = tokio::time::Instant::now();
                } else if !follow::working(stage.as_deref(), &pods)
                    && last_progress.elapsed() >= self.stall
                {
                    let (cause, ask) = follow::stall_cause(stage.as_deref(), &pods, n);
                    let mut why = format!("no progress for {}s: {cause}", self.stall.as_secs());
                    for pod in ask {
                        if let Some(ev) = self.pod_warning(&pod).await {
                            why.push_str(&format!("; pod {pod}: {ev}"));
                        }
                    }
                    self.stop(&name, &pods.runners, &mut logs).await;
                    break Ending::Error(why);
                }
            }
            let stop_for = if Utc::now() >= dir.meta.deadline {
                Some(Ending::Timeout)
            } else {
                cancel.borrow().clone().map(Ending::Aborted)
            };
            if let Some(ending) = stop_for {
                let v = view.borrow().clone();
                let runners = follow::runners(v.pods.values().map(|p| p.as_ref()), &name);
                self.stop(&name, &runners, &mut logs).await;
                break ending;
            }
            tokio::select! {
                changed = view.changed(), if view_open => view_open = changed.is_ok(),
                _ = cancel.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        };
        let v = view.borrow().clone();
        let runners = follow::runners(v.pods.values().map(|p| p.as_ref()), &name);
        let collected = collect(dir, n, ending, &runners, &logs);
        for (i, (_, log)) in &logs.text {
            let _ = std::fs::write(dir.path.join(format!("runner-{i}.log")), log);
        }
        if let Err(e) = write_atomic(
            &collected_path,
            &serde_json::to_vec(&collected).unwrap_or_default(),
        ) {
            warn!(run = %dir.meta.run_id, error = %e, "cannot keep what was collected");
        }
        collected
    }

    /// Reads runner `i`'s log once it ended. A log that cannot be read (its node is gone)
    /// is given up after a few rounds, or at once when `last`: the runner then ends with its
    /// exit code and a note, never as a stall.
    async fn fetch_log(&self, i: u32, pod: &Pod, logs: &mut Logs, last: bool) {
        let pname = pod.name_any();
        if logs.has(i, pod) {
            return;
        }
        match self.read_log(&pname).await {
            Ok(l) => {
                logs.text.insert(i, (pname, l));
            }
            Err(e) => {
                let tries = logs.failures.entry(pname.clone()).or_default();
                *tries += 1;
                if last || *tries >= LOG_ROUNDS || api::is_not_found(&e) {
                    warn!(pod = %pname, error = %e, "giving up on the runner's log");
                    logs.notes.insert(
                        i,
                        format!("its log could not be read ({})", short_error(&e)),
                    );
                    logs.text.insert(i, (pname, String::new()));
                }
            }
        }
    }

    /// The newest warning event of a pod (`FailedMount: …`), which says why a pod waits
    /// when its own status does not.
    async fn pod_warning(&self, pod: &str) -> Option<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        let list = api::retry("list events", 3, || api.list(&lp)).await.ok()?;
        list.items
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .max_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or_default()
            })
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
    }

    /// Stops a run: reads what the runners logged so far, then deletes the TestRun (its
    /// Jobs and pods go with it).
    async fn stop(&self, name: &str, runners: &BTreeMap<u32, &Pod>, logs: &mut Logs) {
        for (i, pod) in runners {
            self.fetch_log(*i, pod, logs, true).await;
        }
        if let Err(e) = self.delete_testrun(name).await {
            warn!(testrun = %name, error = %e, "cannot delete the TestRun; pruned later");
        }
    }

    /// After recording: delete the TestRun, never adopt the run again, update its mirror,
    /// prune what no test needs any more.
    pub async fn recorded(&self, dir: &RunDir, summary: &RunSummary) {
        let name = render::testrun_name(&dir.meta.test, &dir.meta.run_id);
        if let Err(e) = self.delete_testrun(&name).await {
            warn!(run = %dir.meta.run_id, error = %e, "cannot delete the TestRun; pruned later");
        }
        dir.mark_recorded();
        self.mirror.run_ended(&dir.meta.test, summary).await;
        self.prune().await;
    }

    /// Marks the run's TestRun for stopping; the replica following it sees the mark.
    pub async fn request_abort(&self, run_id: &str, why: &str) -> bool {
        let api = self.testruns();
        let lp = ListParams::default().labels(&format!("{LABEL_RUN}={run_id}"));
        let name = match api::retry("find TestRun", ATTEMPTS, || api.list(&lp)).await {
            Ok(l) => match l.items.first() {
                Some(tr) => tr.name_any(),
                None => return false,
            },
            Err(e) => {
                warn!(run = %run_id, error = %e, "cannot find the run's TestRun");
                return false;
            }
        };
        let patch = serde_json::json!({"metadata": {"annotations": {ABORT_ANNOTATION: why}}});
        let pp = PatchParams::default();
        let p = Patch::Merge(&patch);
        match api::retry("mark TestRun aborted", ATTEMPTS, || {
            api.patch(&name, &pp, &p)
        })
        .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!(run = %run_id, error = %e, "cannot ask for the run to stop");
                false
            }
        }
    }

    pub async fn started(&self, dir: &RunDir) {
        self.mirror
            .run_started(&dir.meta.test, &dir.meta.run_id)
            .await;
    }

    pub async fn catalog_changed(&self, catalog: &Catalog, commit: Option<&str>) {
        if let Ok(mut c) = self.current.lock() {
            *c = catalog
                .valid_tests()
                .map(|rt| (rt.test.metadata.name.clone(), rt.revision.clone()))
                .collect();
        }
        self.mirror.sync(catalog, commit).await;
        self.prune().await;
    }

    /// Deletes ConfigMaps no current revision and no TestRun uses, and TestRuns of runs
    /// already recorded.
    pub async fn prune(&self) {
        let (trs, cms) = (self.testruns(), self.configmaps());
        let lp = ListParams::default().labels(&managed());
        let (Ok(runs), Ok(maps)) = (
            api::retry("list TestRuns", ATTEMPTS, || trs.list(&lp)).await,
            api::retry("list ConfigMaps", ATTEMPTS, || cms.list(&lp)).await,
        ) else {
            warn!("cannot list what to prune; trying again later");
            return;
        };
        let mut used: BTreeSet<String> = BTreeSet::new();
        for tr in &runs.items {
            let name = tr.name_any();
            let run = tr.labels().get(LABEL_RUN).cloned().unwrap_or_default();
            if !run.is_empty()
                && RunDir::load(&self.root.join(&run)).is_some_and(|d| d.is_recorded())
            {
                let _ = self.delete_testrun(&name).await;
                continue;
            }
            if let Some(cm) = tr
                .data
                .pointer("/spec/script/configMap/name")
                .and_then(|v| v.as_str())
            {
                used.insert(cm.to_string());
            }
        }
        let current: BTreeSet<String> = self
            .current
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(t, r)| render::configmap_name(t, r))
                    .collect()
            })
            .unwrap_or_default();
        if current.is_empty() && used.is_empty() {
            // Before the first sync nothing is known to be unused.
            return;
        }
        for cm in maps.items {
            let name = cm.name_any();
            if used.contains(&name) || current.contains(&name) {
                continue;
            }
            let dp = DeleteParams::default();
            match api::retry("delete ConfigMap", ATTEMPTS, || cms.delete(&name, &dp)).await {
                Ok(_) => info!(configmap = %name, test = ?cm.labels().get(LABEL_TEST), "pruned"),
                Err(e) if api::is_not_found(&e) => {}
                Err(e) => warn!(configmap = %name, error = %e, "cannot prune"),
            }
        }
    }
}

/// The runners' reports from their pods' states and logs.
fn collect(
    dir: &RunDir,
    n: u32,
    ending: Ending,
    runners: &BTreeMap<u32, &Pod>,
    logs: &Logs,
) -> Collected {
    let mut end: Option<DateTime<Utc>> = None;
    let reports = (1..=n)
        .map(|i| {
            let summary = logs.text.get(&i).and_then(|(_, l)| summary_from_output(l));
            let (exit_code, reason) = match runners.get(&i).map(|p| follow::runner_state(p)) {
                Some(RunnerState::Ended {
                    exit_code,
                    reason,
                    finished_at,
                }) => {
                    if let Some(t) = finished_at {
                        end = Some(end.map_or(t, |e| e.max(t)));
                    }
                    (exit_code, reason)
                }
                Some(_) => (None, Some("the runner was stopped before it ended".into())),
                None => (
                    None,
                    Some("the runner's pod was never seen (lost, or never created)".into()),
                ),
            };
            let reason = match (reason, logs.notes.get(&i)) {
                (Some(r), Some(n)) => Some(format!("{r}; {n}")),
                (r, n) => r.or_else(|| n.cloned()),
            };
            RunnerReport {
                index: i,
                exit_code,
                reason,
                summary,
            }
        })
        .collect();
    Collected {
        runners: reports,
        ending,
        start: dir.meta.start,
        end: end.unwrap_or_else(Utc::now),
    }
}

/// What was read of the runners' logs: text by runner (with the pod it came from), notes
/// for logs given up on, failed reads by pod.
#[derive(Default)]
struct Logs {
    text: BTreeMap<u32, (String, String)>,
    notes: BTreeMap<u32, String>,
    failures: BTreeMap<String, u32>,
}

impl Logs {
    fn has(&self, i: u32, pod: &Pod) -> bool {
        self.text.get(&i).is_some_and(|(p, _)| *p == pod.name_any())
    }
}

/// An API error in a few words (a Status's message, not the whole debug form).
fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// The egress confinement of runs (`executor.egress`) and the destinations the policy allows.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub mode: egress::Mode,
    pub rules: Vec<crate::spec::allowlist::EgressRule>,
}
