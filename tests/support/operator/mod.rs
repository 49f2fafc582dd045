//! A stand-in for the k6-operator (v1.6.0 by default, v1.5.0 on request) and for the parts of
//! a cluster it relies on, driven by the Kubernetes API test server's [`Store`]. It follows the
//! real operator step by step (its source: `internal/controller/*.go`,
//! `pkg/resources/jobs/*.go`, `pkg/types/*.go`, `api/v1alpha1/testrun_types.go`):
//!
//! - `controller.rs`: the TestRun reconciler, stage by stage, with the operator's conditions
//!   and its rule for which stage may follow which; a failed create (422) is logged and the
//!   stage does not move, as in the real one.
//! - `args.rs`, `initializer.rs`, `runners.rs`, `starter.rs`: the Jobs and Services exactly as
//!   the operator builds them (names, labels, `backoffLimit: 0`, the initializer's `sh -c`
//!   script with `spec.arguments` pasted unquoted into it, or `spec.args` passed positionally).
//! - `cluster.rs`: the Job controller (a pod per Job, Job status), the scheduler (nodes with
//!   allocatable CPU and memory, node selectors, `Unschedulable`), Events.
//! - `kubelet.rs`: image pulls (`ImagePullBackOff`), volumes (`FailedMount`), env
//!   (`CreateContainerConfigError`), `$(VAR)` expansion of command and args, pod status and
//!   exit codes. Every container command runs for real: the initializer's shell script with the
//!   real `k6 archive` and `k6 inspect`, the runners' `k6 run --paused`, the starter's `curl`.
//! - `process.rs`: one mount namespace per pod (`unshare -m`), the ConfigMap and Secret volumes
//!   bind-mounted where the pod spec mounts them, a private `/tmp`, stdout+stderr as the log.
//! - `synthetic.rs`: runners without k6 for benchmarks of perfsync itself.
//!
//! ## Where it deviates from a real cluster, and why
//! - **Network.** Every pod shares the host's network namespace, so two runners cannot both
//!   listen on `0.0.0.0:6565`. Each pod gets an address of its own in `127.0.0.0/8` (its
//!   `status.podIP`, checked free before use) and the kubelet runs the runner's
//!   `--address=0.0.0.0:6565` as `--address=<podIP>:6565`. There is no kube-proxy either: a
//!   Service's `spec.clusterIP` is the IP of the pod its selector picks (set when both
//!   exist), so the operator's readiness check and the starter's unchanged `curl` command reach
//!   `http://<clusterIP>:6565/v1/status` as they would in a cluster.
//! - **Images.** Every image is the host: `sh`, `k6` and `curl` come from `PATH`. An image
//!   starting with `registry.invalid/` ([`UNPULLABLE`]) cannot be pulled. The "image" also sets
//!   `HOME=/tmp` (the pod's private `/tmp`) and `K6_NO_USAGE_REPORT=true` (no network here).
//! - **Containers.** Init containers, probes, security contexts and limits are copied into the
//!   pod spec but not enforced; readiness is `True` as soon as the container runs. Volumes other
//!   than `configMap`, `secret` and `emptyDir` mount as empty folders. ConfigMap and Secret
//!   volumes are a copy taken at start, not kept in sync.
//! - **Time.** Retries that take seconds or minutes in a cluster (reconcile requeues, kubelet
//!   back-off) are a fraction of a second here; nothing else about them changes.
//! - **Cloud.** `--out cloud`, PLZ, istio/scuttle and `VolumeClaim`/`LocalFile` scripts are
//!   not modelled: a script that is not a ConfigMap leaves the TestRun stuck, logged.
//! - **Lookups.** Where the operator lists runner Jobs, pods and Services by label, the
//!   stand-in reads them by name (`<testrun>-<i>`, `<testrun>-service-<i>`, and the pod the Job
//!   controller made for each Job): the same objects, without scanning the whole store.
//! - **Synthetic mode** leaves out the routine Events (Scheduled, Pulled, Created, Started,
//!   SuccessfulCreate, Completed): the store scans every Event to record one.
//! - **Grace.** A deleted pod's processes get SIGTERM, then SIGKILL after
//!   `terminationGracePeriodSeconds` (at most 5 s here, 30 s in a cluster).

#![allow(dead_code)]

mod args;
mod cluster;
mod controller;
mod env;
mod initializer;
mod kubelet;
mod process;
mod runners;
mod starter;
mod synthetic;

use super::kube_api;
use kube_api::{Coll, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use args::{argv, parse_cli};
#[allow(unused_imports)]
pub use env::expand;

/// An image the stand-in cannot "pull" (any image starting with `registry.invalid/` is one).
pub const UNPULLABLE: &str = "registry.invalid/k6:none";

/// Whether the cluster can pull `image`.
pub fn pullable(image: &str) -> bool {
    !image.starts_with("registry.invalid/")
}

/// Which k6-operator release the stand-in behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// `spec.arguments` only: split on single spaces for the runners, the initializer's env as
    /// literal values (`-e NAME="value"`; a `secretKeyRef` gives an empty value).
    V1_5,
    /// `spec.args` (positional, kubelet-expanded `$(NAME)`) or `spec.arguments`
    /// (`strings.Fields`, pasted into the shell script, env as `-e NAME="${NAME}"`).
    #[default]
    V1_6,
}

/// A node of the cluster: allocatable CPU (millicores) and memory (bytes), labels.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub cpu_milli: u64,
    pub memory: u64,
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// A node labelled `kubernetes.io/hostname=<name>`, with quantities as Kubernetes writes
    /// them (`"8"`, `"500m"`, `"32Gi"`).
    pub fn new(name: &str, cpu: &str, memory: &str) -> Node {
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
        Node {
            name: name.to_string(),
            cpu_milli: cluster::cpu_milli(cpu).unwrap_or(0),
            memory: cluster::bytes(memory).unwrap_or(0),
            labels,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Node {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// Runners without k6: see `synthetic.rs`.
#[derive(Debug, Clone)]
pub struct SyntheticRunners {
    /// How long each runner "runs" once resumed; it then ends with exit code 0.
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct OperatorOptions {
    pub version: Version,
    /// Default: `node-1` and `node-2`, 8 CPU and 32Gi each.
    pub nodes: Vec<Node>,
    pub synthetic: Option<SyntheticRunners>,
    /// Runner indexes (`instance_id`, from 1) whose node is gone once the runner pod ended:
    /// the pod's log can no longer be read.
    pub node_gone_after_end: BTreeSet<u32>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            version: Version::V1_6,
            nodes: vec![
                Node::new("node-1", "8", "32Gi"),
                Node::new("node-2", "8", "32Gi"),
            ],
            synthetic: None,
            node_gone_after_end: BTreeSet::new(),
        }
    }
}

pub struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    shared: Arc<Shared>,
    /// Container processes by pod name (process group ids).
    pub processes: Arc<Mutex<BTreeMap<String, i32>>>,
    /// How many runner containers were ever started.
    pub started: Arc<Mutex<u32>>,
    /// How many times a TestRun of each name was taken up (a duplicate run shows as 2).
    pub testruns: Arc<Mutex<BTreeMap<String, u32>>>,
}

/// What every part of the stand-in shares.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub work: PathBuf,
    pub opts: OperatorOptions,
    pub processes: Arc<Mutex<BTreeMap<String, i32>>>,
    pub started: Arc<Mutex<u32>>,
    pub testruns: Arc<Mutex<BTreeMap<String, u32>>>,
    /// The operator's own log lines.
    pub log: Mutex<Vec<String>>,
    pub cluster: Mutex<cluster::State>,
    pub kubelet: Mutex<kubelet::State>,
    pub controller: Mutex<controller::State>,
    pub synthetic: Mutex<synthetic::State>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn testruns() -> Coll {
    Coll::new("k6.io", "testruns")
}
pub(crate) fn pods() -> Coll {
    Coll::new("", "pods")
}
pub(crate) fn jobs() -> Coll {
    Coll::new("batch", "jobs")
}
pub(crate) fn services() -> Coll {
    Coll::new("", "services")
}

pub(crate) fn s<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(|x| x.as_str()).unwrap_or("")
}

impl Shared {
    pub fn say(&self, line: String) {
        lock(&self.log).push(line);
    }
}

impl Operator {
    pub fn start(store: Arc<Store>, work: PathBuf) -> Operator {
        Operator::start_with(store, work, OperatorOptions::default())
    }

    pub fn start_with(store: Arc<Store>, work: PathBuf, opts: OperatorOptions) -> Operator {
        let _ = std::fs::create_dir_all(&work);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            work,
            opts,
            processes: Arc::new(Mutex::new(BTreeMap::new())),
            started: Arc::new(Mutex::new(0)),
            testruns: Arc::new(Mutex::new(BTreeMap::new())),
            log: Mutex::new(Vec::new()),
            cluster: Mutex::new(cluster::State::default()),
            kubelet: Mutex::new(kubelet::State::default()),
            controller: Mutex::new(controller::State::default()),
            synthetic: Mutex::new(synthetic::State::default()),
        });
        tokio::spawn(run(shared.clone(), stopped));
        Operator {
            stop,
            processes: shared.processes.clone(),
            started: shared.started.clone(),
            testruns: shared.testruns.clone(),
            shared,
        }
    }

    /// The operator's log so far (what `kubectl logs` of the operator would show, in short).
    pub fn log(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// The host folder behind a pod: its log, its private `/tmp` (`tmp/`), its volumes.
    pub fn pod_dir(&self, ns: &str, pod: &str) -> PathBuf {
        process::pod_dir(&self.shared.work, ns, pod)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        synthetic::stop_all(&self.shared);
        for pgid in lock(&self.processes).values().copied() {
            // SAFETY: kills a container's own process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// The stand-in's one loop: events from the store mark what to look at; a short tick runs
/// the cluster (Job controller, scheduler, kubelet) and the reconciler over what is marked,
/// and everything is looked at again once a second (level-triggered, as controllers are).
async fn run(shared: Arc<Shared>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut events = shared.store.events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut full_at = Instant::now();
    let mut all = true;
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let mut dirty: BTreeSet<(String, String)> = BTreeSet::new();
        // At most so many events a round, so that reconciles keep pace with a burst.
        for _ in 0..2000 {
            match events.try_recv() {
                Ok(e) => {
                    cluster::on_event(&shared, &e);
                    if let Some(key) = controller::key_of(&e) {
                        dirty.insert(key);
                    }
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => all = true,
                Err(_) => break,
            }
        }
        if full_at.elapsed() >= Duration::from_secs(1) {
            all = true;
        }
        if all {
            full_at = Instant::now();
            cluster::resync(&shared);
        }
        cluster::tick(&shared);
        controller::reconcile(&shared, if all { None } else { Some(dirty) }).await;
        all = false;
    }
}
