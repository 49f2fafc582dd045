//! The `PerfTest` mirror: one object per test in the namespace, with the spec copied and a
//! status (revision, commit, last run, result, p95, conditions `Ready`, `Running`, `Failed`,
//! `Passed`) that `kubectl get perftests`, a Flux `healthCheckExprs` and an Argo CD health
//! check can read, and Events (`kubectl describe perftest`): Normal when a run starts and
//! succeeds, Warning when it does not. Mirrors are applied only when a test's revision moved,
//! and those of tests gone from the repository deleted.
//!
//! `Passed` answers "did the current revision pass?": `Unknown` from the moment a revision is
//! applied until a run of it ends (so a health check waits), then `True` or `False`.

use super::crd::{Condition, MirrorSpec, PerfTestMirror, PerfTestStatus};
use super::{api, FIELD_MANAGER};
use crate::results::summary::EndState;
use crate::results::RunSummary;
use crate::spec::render::{LABEL_REVISION, LABEL_TEST, MANAGED_BY};
use crate::spec::revision::short;
use crate::spec::Catalog;
use k8s_openapi::api::core::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::Mutex;
use tracing::{info, warn};

const ATTEMPTS: u32 = 6;
/// The apiserver refuses an Event message over 1,024 bytes.
const MAX_EVENT_MESSAGE: usize = 1024;

pub struct Mirror {
    api: Api<PerfTestMirror>,
    events: Api<Event>,
    namespace: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    /// test → revision its mirror's spec was applied for.
    applied: BTreeMap<String, String>,
    status: BTreeMap<String, PerfTestStatus>,
    /// test → its mirror's uid, which its Events name.
    uid: BTreeMap<String, String>,
    /// spec file → test: a spec too broken to name its test still names its mirror.
    files: BTreeMap<String, String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Sets a condition, moving its transition time only when its status changes.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
) {
    set_condition_to(
        conds,
        kind,
        if status { "True" } else { "False" },
        reason,
        message,
    )
}

/// As [`set_condition`], with `True`, `False` or `Unknown`.
pub fn set_condition_to(
    conds: &mut Vec<Condition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
) {
    let status = status.to_string();
    match conds.iter_mut().find(|c| c.kind == kind) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now());
            }
            c.status = status;
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conds.push(Condition {
            kind: kind.into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(now()),
        }),
    }
}

impl Mirror {
    pub fn new(client: kube::Client, namespace: &str) -> Mirror {
        Mirror {
            api: Api::namespaced(client.clone(), namespace),
            events: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    async fn load(&self, st: &mut State) -> bool {
        if st.loaded {
            return true;
        }
        let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        match api::retry("list PerfTests", ATTEMPTS, || self.api.list(&lp)).await {
            Ok(list) => {
                for m in list.items {
                    let name = m.name_any();
                    if let Some(r) = m.labels().get(LABEL_REVISION) {
                        st.applied.insert(name.clone(), r.clone());
                    }
                    if let Some(uid) = m.uid() {
                        st.uid.insert(name.clone(), uid);
                    }
                    st.files.insert(m.spec.file.clone(), name.clone());
                    st.status.insert(name, m.status.unwrap_or_default());
                }
                st.loaded = true;
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot list PerfTest mirrors; trying at the next sync");
                false
            }
        }
    }

    async fn patch_status(&self, name: &str, status: &PerfTestStatus) {
        let body = serde_json::json!({ "status": status });
        let patch = Patch::Merge(&body);
        let pp = PatchParams::default();
        if let Err(e) = api::retry("patch PerfTest status", ATTEMPTS, || {
            self.api.patch_status(name, &pp, &patch)
        })
        .await
        {
            if !api::is_not_found(&e) {
                warn!(test = name, error = %e, "cannot update the PerfTest status");
            }
        }
    }

    /// Brings the mirrors in line with the repository at `commit`.
    pub async fn sync(&self, catalog: &Catalog, commit: Option<&str>) {
        let mut st = self.state.lock().await;
        if !self.load(&mut st).await {
            return;
        }
        let mut present = BTreeSet::new();
        for entry in &catalog.tests {
            let Some(name) = entry.name.as_ref().or_else(|| st.files.get(&entry.file)) else {
                continue;
            };
            let name = &name.clone();
            present.insert(name.clone());
            let Some(rt) = &entry.resolved else {
                // An invalid spec never removes its test; its mirror says why it is not ready.
                if st.applied.contains_key(name) {
                    let before = st.status.get(name).cloned().unwrap_or_default();
                    let mut s = before.clone();
                    set_condition(
                        &mut s.conditions,
                        "Ready",
                        false,
                        "Invalid",
                        format!("{} does not validate; run `perfsync validate`", entry.file),
                    );
                    // Every sync sees the invalid spec again; the API hears of it once.
                    if s != before {
                        self.patch_status(name, &s).await;
                        st.status.insert(name.clone(), s);
                    }
                    // Fixed back to the same revision, the mirror is applied (and Ready) again.
                    st.applied.insert(name.clone(), String::new());
                }
                continue;
            };
            let rev = short(&rt.revision).to_string();
            if st.applied.get(name) == Some(&rev) {
                continue;
            }
            let mut labels = BTreeMap::new();
            labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
            labels.insert(LABEL_TEST.to_string(), name.clone());
            labels.insert(LABEL_REVISION.to_string(), rev.clone());
            let body = serde_json::json!({
                "apiVersion": "perfsync.dev/v1alpha1",
                "kind": "PerfTest",
                "metadata": {"name": name, "labels": labels},
                "spec": MirrorSpec::from_test(rt, &entry.file),
            });
            let pp = PatchParams::apply(FIELD_MANAGER).force();
            let patch = Patch::Apply(&body);
            match api::retry("apply PerfTest", ATTEMPTS, || {
                self.api.patch(name, &pp, &patch)
            })
            .await
            {
                Ok(applied) => {
                    st.applied.insert(name.clone(), rev);
                    st.files.insert(entry.file.clone(), name.clone());
                    if let Some(uid) = applied.uid() {
                        st.uid.insert(name.clone(), uid);
                    }
                    let mut s = st.status.get(name).cloned().unwrap_or_default();
                    set_condition_to(
                        &mut s.conditions,
                        "Passed",
                        "Unknown",
                        "NewRevision",
                        format!("no run of revision {} has ended yet", short(&rt.revision)),
                    );
                    s.revision = Some(short(&rt.revision).to_string());
                    s.commit = commit.map(str::to_string);
                    set_condition(
                        &mut s.conditions,
                        "Ready",
                        true,
                        "Valid",
                        "the spec validates and is synced".into(),
                    );
                    self.patch_status(name, &s).await;
                    st.status.insert(name.clone(), s);
                }
                Err(e) => warn!(test = %name, error = %e, "cannot apply the PerfTest mirror"),
            }
        }
        let gone: Vec<String> = st
            .applied
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            let dp = DeleteParams::default();
            match api::retry("delete PerfTest", ATTEMPTS, || self.api.delete(&name, &dp)).await {
                Ok(_) => info!(test = %name, "PerfTest mirror deleted"),
                Err(e) if api::is_not_found(&e) => {}
                Err(e) => {
                    warn!(test = %name, error = %e, "cannot delete the PerfTest mirror");
                    continue;
                }
            }
            st.applied.remove(&name);
            st.status.remove(&name);
            st.uid.remove(&name);
            st.files.retain(|_, n| n != &name);
        }
    }

    pub async fn run_started(&self, test: &str, run: &str) {
        let mut st = self.state.lock().await;
        let mut s = st.status.get(test).cloned().unwrap_or_default();
        set_condition(
            &mut s.conditions,
            "Running",
            true,
            "RunStarted",
            format!("run {run} is running"),
        );
        set_condition_to(
            &mut s.conditions,
            "Passed",
            "Unknown",
            "RunInProgress",
            format!("run {run} is running"),
        );
        self.patch_status(test, &s).await;
        let uid = st.uid.get(test).cloned();
        st.status.insert(test.to_string(), s);
        drop(st);
        self.event(test, uid, false, "RunStarted", format!("run {run} started"))
            .await;
    }

    pub async fn run_ended(&self, test: &str, summary: &RunSummary) {
        let mut st = self.state.lock().await;
        let mut s = st.status.get(test).cloned().unwrap_or_default();
        let result = summary.status.as_str();
        s.last_run = Some(summary.run.id.clone());
        s.last_run_time = Some(summary.run.end.clone());
        s.last_result = Some(result.to_string());
        s.p95 = summary.p95_ms().map(|p| format!("{p:.1}ms"));
        let why = summary
            .reason
            .clone()
            .unwrap_or_else(|| format!("run {} {result}", summary.run.id));
        set_condition(
            &mut s.conditions,
            "Running",
            false,
            "RunEnded",
            format!("run {} ended {result}", summary.run.id),
        );
        let failed = !matches!(summary.status, EndState::Succeeded | EndState::Aborted);
        let reason = match summary.status {
            EndState::Succeeded => "Succeeded",
            EndState::Failed => "ThresholdsCrossed",
            EndState::Error => "RunError",
            EndState::Timeout => "Timeout",
            EndState::Aborted => "Aborted",
        };
        set_condition(&mut s.conditions, "Failed", failed, reason, why.clone());
        if summary.status != EndState::Aborted {
            set_condition(&mut s.conditions, "Passed", !failed, reason, why.clone());
        }
        self.patch_status(test, &s).await;
        let uid = st.uid.get(test).cloned();
        st.status.insert(test.to_string(), s);
        drop(st);
        let p95 = summary
            .p95_ms()
            .map(|p| format!(", p95 {p:.1} ms"))
            .unwrap_or_default();
        let message = format!("run {} {result}{p95}: {why}", summary.run.id);
        let warning = summary.status != EndState::Succeeded;
        let reason = match summary.status {
            EndState::Succeeded => "RunSucceeded",
            EndState::Failed => "RunFailed",
            EndState::Error => "RunError",
            EndState::Timeout => "RunTimedOut",
            EndState::Aborted => "RunAborted",
        };
        self.event(test, uid, warning, reason, message).await;
    }

    /// Records a core v1 Event about the test's mirror (best effort: a run never waits on
    /// it). The legacy shape (no `eventTime`), which `kubectl describe` and every dashboard
    /// read.
    async fn event(
        &self,
        test: &str,
        uid: Option<String>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let now = chrono::Utc::now();
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let mut message = message;
        if message.len() > MAX_EVENT_MESSAGE {
            let mut cut = MAX_EVENT_MESSAGE - 3;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            // As client-go's recorder names them: the object's name and a time in hex.
            "metadata": {"name": format!("{test}.{nanos:x}"), "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "perfsync.dev/v1alpha1", "kind": "PerfTest",
                "name": test, "namespace": self.namespace, "uid": uid,
            },
            "type": if warning { "Warning" } else { "Normal" },
            "reason": reason,
            "message": message,
            "source": {"component": "perfsync"},
            "reportingComponent": "perfsync",
            "reportingInstance": std::env::var("HOSTNAME").unwrap_or_else(|_| "perfsync".into()),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        let event: Event = match serde_json::from_value(body) {
            Ok(e) => e,
            Err(e) => {
                warn!(test, error = %e, "cannot build a PerfTest event");
                return;
            }
        };
        let pp = PostParams::default();
        if let Err(e) =
            api::retry("create Event", ATTEMPTS, || self.events.create(&pp, &event)).await
        {
            warn!(test, reason, error = %e, "cannot record a PerfTest event");
        }
    }
}
