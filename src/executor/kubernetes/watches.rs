//! Every run followed through two namespace-wide watches: perfsync's TestRuns and the pods of
//! their runs (initializer, runners, starter — all carry perfsync's labels through
//! `spec.runner.metadata.labels` and `spec.starter.metadata.labels`). The objects are indexed
//! by TestRun name (`k6_cr` on pods), and each run's follower gets only its own view, sent
//! when one of its objects changes.

use super::reflect::{self, Change};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tracing::Instrument;

/// One run's objects as last seen. `listed` is false until both watches listed once.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub listed: bool,
    pub testrun: Option<Arc<DynamicObject>>,
    pub pods: BTreeMap<String, Arc<Pod>>,
}

struct Entry {
    testrun: Option<Arc<DynamicObject>>,
    pods: BTreeMap<String, Arc<Pod>>,
    tx: watch::Sender<RunView>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            testrun: None,
            pods: BTreeMap::new(),
            tx: watch::channel(RunView::default()).0,
        }
    }
    fn send(&self, listed: bool) {
        self.tx.send_replace(RunView {
            listed,
            testrun: self.testrun.clone(),
            pods: self.pods.clone(),
        });
    }
    fn idle(&self) -> bool {
        self.testrun.is_none() && self.pods.is_empty() && self.tx.receiver_count() == 0
    }
}

#[derive(Default)]
struct Index {
    testruns_listed: bool,
    pods_listed: bool,
    runs: HashMap<String, Entry>,
}

impl Index {
    fn listed(&self) -> bool {
        self.testruns_listed && self.pods_listed
    }
    fn entry(&mut self, name: &str) -> &mut Entry {
        self.runs.entry(name.to_string()).or_insert_with(Entry::new)
    }
    /// Sends `names`' views, then forgets entries nobody follows and nothing fills.
    fn publish<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        let listed = self.listed();
        for n in names {
            if let Some(e) = self.runs.get(n) {
                e.send(listed);
            }
        }
        self.runs.retain(|_, e| !e.idle());
    }
}

fn pod_run(p: &Pod) -> Option<String> {
    p.labels().get("k6_cr").cloned()
}

/// The two watches and the index they fill; started on the first follow, so a replica
/// that does not lead opens none.
pub struct Watches {
    index: Arc<Mutex<Index>>,
    started: Mutex<bool>,
    testruns: Api<DynamicObject>,
    pods: Api<Pod>,
    selector: String,
}

fn lock(m: &Mutex<Index>) -> MutexGuard<'_, Index> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watches {
    pub fn new(testruns: Api<DynamicObject>, pods: Api<Pod>, selector: String) -> Watches {
        Watches {
            index: Arc::new(Mutex::new(Index::default())),
            started: Mutex::new(false),
            testruns,
            pods,
            selector,
        }
    }

    /// Follows TestRun `name`: its view now and on every change.
    pub fn follow(&self, name: &str) -> watch::Receiver<RunView> {
        self.start();
        let mut idx = lock(&self.index);
        let listed = idx.listed();
        let e = idx.entry(name);
        let rx = e.tx.subscribe();
        e.send(listed);
        rx
    }

    fn start(&self) {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if *started {
            return;
        }
        *started = true;
        let idx = self.index.clone();
        let sink = move |c: Change<DynamicObject>| {
            let mut idx = lock(&idx);
            let touched: Vec<String> = match c {
                Change::Listed(items) => {
                    idx.testruns_listed = true;
                    let fresh: BTreeMap<String, Arc<DynamicObject>> = items
                        .into_iter()
                        .map(|o| (o.name_any(), Arc::new(o)))
                        .collect();
                    for (name, e) in idx.runs.iter_mut() {
                        e.testrun = fresh.get(name).cloned();
                    }
                    for (name, o) in fresh {
                        idx.entry(&name).testrun = Some(o);
                    }
                    idx.runs.keys().cloned().collect()
                }
                Change::Applied(o) => {
                    let name = o.name_any();
                    idx.entry(&name).testrun = Some(Arc::new(o));
                    vec![name]
                }
                Change::Deleted(o) => {
                    let name = o.name_any();
                    idx.entry(&name).testrun = None;
                    vec![name]
                }
            };
            idx.publish(&touched);
        };
        tokio::spawn(
            reflect::reflect(self.testruns.clone(), self.selector.clone(), sink)
                .instrument(tracing::info_span!("watch", kind = "TestRun")),
        );
        let idx = self.index.clone();
        let sink = move |c: Change<Pod>| {
            let mut idx = lock(&idx);
            let touched: Vec<String> = match c {
                Change::Listed(items) => {
                    idx.pods_listed = true;
                    for e in idx.runs.values_mut() {
                        e.pods.clear();
                    }
                    for p in items {
                        if let Some(run) = pod_run(&p) {
                            idx.entry(&run).pods.insert(p.name_any(), Arc::new(p));
                        }
                    }
                    idx.runs.keys().cloned().collect()
                }
                Change::Applied(p) => match pod_run(&p) {
                    Some(run) => {
                        idx.entry(&run).pods.insert(p.name_any(), Arc::new(p));
                        vec![run]
                    }
                    None => vec![],
                },
                Change::Deleted(p) => match pod_run(&p) {
                    Some(run) => {
                        idx.entry(&run).pods.remove(&p.name_any());
                        vec![run]
                    }
                    None => vec![],
                },
            };
            idx.publish(&touched);
        };
        tokio::spawn(
            reflect::reflect(self.pods.clone(), self.selector.clone(), sink)
                .instrument(tracing::info_span!("watch", kind = "Pod")),
        );
    }
}
