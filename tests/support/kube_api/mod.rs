//! An HTTP server that speaks the Kubernetes REST API for the objects perfsync and the
//! k6-operator use, and fails where a real kube-apiserver fails: create, get, list (label and
//! field selectors), update (409 on a stale resourceVersion), merge and server-side apply
//! patches (field ownership, conflicts, force), the status subresource, delete with
//! owner-reference cascade, pod logs, Events, and watch streams with bookmarks and `410 Gone`
//! for versions compacted away. Writes are admitted as the apiserver admits them: custom
//! resources pruned and validated against their CRD's structural schema, built-in kinds
//! validated (names, labels, quantities, ConfigMap size), `422` with the real messages.
//! Requests can be authorized against a Role (`403` as RBAC answers). Faults can be injected:
//! a share of requests answered 500, 429 or 409, latency, watch streams cut mid-way. Clients
//! reach it through a kubeconfig with a bearer token, as they would a real cluster.
//!
//! Files: `store.rs` (objects, versions, admission of writes), `apply.rs` (merge patch,
//! server-side apply), `routes.rs` (paths, verbs, authorization, faults), `watch.rs`,
//! `kubelet.rs` (pod logs, Events), `rbac.rs`, `validate.rs` (built-in kinds), `names.rs`
//! (DNS names, label keys and values), `schema.rs` (CRD structural schemas), `select.rs`
//! (label and field selectors), `regex.rs` (the RE2 subset CRD `pattern`s use).
//!
//! API beyond `KubeApi::{start, install_crd, kubeconfig}` and the Store's
//! `get, list, create, update, merge, apply, delete, set_log, compact, set_faults, accesses`:
//! - `KubeApi::enforce_role(&self, role_yaml: &str)`: from then on requests are authorized
//!   against that Role (or ClusterRole); `Store::set_role(Option<Role>)` does it in-process.
//! - `KubeApi::install_crd` replaces an installed CRD of the same name (as `kubectl apply`).
//! - `Store::new() -> Arc<Store>`: a Store without a server (admission included).
//! - `Store::denied() -> BTreeSet<(group, resource, verb)>`: the requests the Role refused.
//! - `Store::requests_by_verb() -> BTreeMap<(verb, resource), u64>`,
//!   `Store::open_watches() -> usize`, `Store::max_open_watches() -> usize`.
//! - `Store::record_event(ns, involved_kind, involved_name, reason, message, type_) -> Value`.
//! - `Store::fail_log(ns, pod, message)` (empty message: [`kubelet_unreachable`]),
//!   `Store::heal_log(ns, pod)`, `Store::read_log(ns, pod, &LogQuery)`.
//! - `Store::list_fields(coll, ns, labels, &FieldSelector)`, `FieldSelector::parse(coll, s)`.
//! - `Store::register_crd(&Value)`, `Store::schema(coll) -> Option<CrdSchema>`;
//!   `CrdSchema::{from_yaml, from_crd, prune, default, validate}` to check an object against a
//!   CRD without a server; `FieldError`, `Regex`, `parse_quantity`.

#![allow(dead_code, unused_imports)]

mod apply;
mod kubelet;
mod names;
pub mod rbac;
mod regex;
mod routes;
pub mod schema;
mod select;
mod store;
pub mod validate;
mod watch;

pub use apply::merge_patch;
pub use kubelet::{kubelet_unreachable, LogQuery};
pub use rbac::Role;
pub use regex::Regex;
pub use schema::CrdSchema;
pub use select::{selector_matches, FieldSelector};
pub use store::Store;
pub use validate::{parse_quantity, FieldError};

use bytes::Bytes;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Which collection an object belongs to: API group ("" for core) and plural resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coll {
    pub group: String,
    pub resource: String,
}

impl Coll {
    pub fn new(group: &str, resource: &str) -> Coll {
        Coll {
            group: group.into(),
            resource: resource.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub coll: Coll,
    pub ns: String,
    pub name: String,
}

impl Key {
    fn new(coll: &Coll, ns: &str, name: &str) -> Key {
        Key {
            coll: coll.clone(),
            ns: ns.into(),
            name: name.into(),
        }
    }
}

/// A change to an object, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: &'static str, // ADDED, MODIFIED, DELETED
    pub coll: Coll,
    pub ns: String,
    pub object: Value,
}

/// What fails, and how often. Shares are 0.0..=1.0 of the requests perfsync makes.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub error_500: f64,
    pub throttle_429: f64,
    /// Share of writes (PUT, PATCH) answered `409 Conflict`.
    pub conflict_409: f64,
    pub latency: Duration,
    /// Watch streams end after this long (a cut connection).
    pub cut_watch_after: Option<Duration>,
}

/// One request as RBAC sees it: verb, API group, resource (with subresource).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

/// The parsed path of a request.
#[derive(Debug)]
struct Target {
    coll: Coll,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn kind_of(resource: &str) -> &'static str {
    match resource {
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "pods" => "Pod",
        "services" => "Service",
        "events" => "Event",
        "jobs" => "Job",
        "leases" => "Lease",
        "testruns" => "TestRun",
        "perftests" => "PerfTest",
        "customresourcedefinitions" => "CustomResourceDefinition",
        "namespaces" => "Namespace",
        _ => "Object",
    }
}

fn api_version(coll: &Coll) -> String {
    match coll.group.as_str() {
        "" => "v1".into(),
        "batch" => "batch/v1".into(),
        "coordination.k8s.io" => "coordination.k8s.io/v1".into(),
        "apiextensions.k8s.io" => "apiextensions.k8s.io/v1".into(),
        g => format!("{g}/v1alpha1"),
    }
}

fn not_found(coll: &Coll, name: &str) -> (u16, Value) {
    let msg = format!("{} \"{name}\" not found", coll.resource);
    (404, status(404, "NotFound", &msg))
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub struct KubeApi {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let store = Store::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = format!("test-token-{}", fastrand::u64(..));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (st, tok) = (store.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = &mut stop_rx => return,
                };
                let Ok((stream, _)) = conn else { continue };
                let (st, tok) = (st.clone(), tok.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, tok) = (st.clone(), tok.clone());
                        async move { Ok::<_, Infallible>(routes::handle(st, &tok, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        KubeApi {
            addr,
            store,
            token,
            stop: Some(stop_tx),
        }
    }

    /// Installs a CustomResourceDefinition (YAML), as `kubectl apply -f` would: one already
    /// installed under that name is replaced, and its schema applies from then on.
    pub fn install_crd(&self, yaml: &str) {
        let crd: Value = serde_yaml::from_str(yaml).expect("CRD YAML");
        let coll = Coll::new("apiextensions.k8s.io", "customresourcedefinitions");
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.store.register_crd(&crd);
        let done = match self.store.get(&coll, "", &name) {
            Some(_) => self.store.update(&coll, "", &name, crd, false),
            None => self.store.create(&coll, "", crd),
        };
        done.expect("CRD installed");
    }

    /// From now on, requests with this server's token are authorized against `role_yaml` (a
    /// Role, granting in its namespace only, or a ClusterRole), as the ServiceAccount
    /// `perfsync` bound to it.
    pub fn enforce_role(&self, role_yaml: &str) {
        self.store.set_role(Some(Role::parse(role_yaml)));
    }

    /// A kubeconfig for this server, with the token and the default namespace.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\nusers:\n- name: perfsync\n  user:\n    token: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: perfsync\n    namespace: {namespace}\ncurrent-context: test\n",
                self.addr, self.token
            ),
        )
        .expect("write kubeconfig");
        path
    }
}
