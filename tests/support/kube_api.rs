//! An HTTP server that speaks the Kubernetes REST API for the objects perfsync and the
//! k6-operator use: create, get, list (label selectors), update (409 on a stale
//! resourceVersion), merge and server-side apply patches (field ownership, conflicts, force),
//! the status subresource, delete with owner-reference cascade, pod logs, and watch streams
//! with bookmarks and `410 Gone` for versions compacted away. Faults can be injected: a share
//! of requests answered 500, 429 or 409, latency, watch streams cut mid-way. Clients reach it
//! through a kubeconfig with a bearer token, as they would a real cluster.

#![allow(dead_code)]

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

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

/// One request as RBAC sees it: verb, API group, resource (with subresource), namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    events: VecDeque<Event>,
    /// Watches from a version below this get `410 Gone`.
    oldest: u64,
    keep_events: usize,
    /// Pod logs: files the operator stand-in writes.
    logs: BTreeMap<(String, String), PathBuf>,
    status_subresource: BTreeSet<Coll>,
}

pub struct Store {
    inner: Mutex<Inner>,
    pub events: broadcast::Sender<Event>,
    pub faults: Mutex<Faults>,
    pub accesses: Mutex<Vec<Access>>,
    pub requests: Mutex<u64>,
    pub injected: Mutex<u64>,
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

/// `a=b,c!=d,e,!f` against an object's labels.
pub fn selector_matches(selector: &str, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(|l| l.as_object());
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(term).is_some()
            }
        })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Leaf paths of an applied configuration (arrays count as leaves), as field ownership.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(
                    x,
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn remove_path(v: &mut Value, path: &str) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    if let Some(Value::Object(m)) = target {
        m.remove(&last);
    }
}

/// Fields a manager applied, kept beside the object (not in it, to keep objects small).
fn owned_fields(obj: &Value) -> BTreeMap<String, BTreeSet<String>> {
    obj.pointer("/metadata/annotations/test.k8s.io~1managed")
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

impl Store {
    fn new() -> Arc<Store> {
        let (events, _) = broadcast::channel(4096);
        let mut status_subresource = BTreeSet::new();
        for c in [
            Coll::new("", "pods"),
            Coll::new("batch", "jobs"),
            Coll::new("k6.io", "testruns"),
        ] {
            status_subresource.insert(c);
        }
        Arc::new(Store {
            inner: Mutex::new(Inner {
                rv: 1000,
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                oldest: 0,
                keep_events: 500,
                logs: BTreeMap::new(),
                status_subresource,
            }),
            events,
            faults: Mutex::new(Faults::default()),
            accesses: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
            injected: Mutex::new(0),
        })
    }

    fn record(&self, inner: &mut Inner, kind: &'static str, key: &Key, object: Value) {
        let ev = Event {
            rv: inner.rv,
            kind,
            coll: key.coll.clone(),
            ns: key.ns.clone(),
            object,
        };
        inner.events.push_back(ev.clone());
        while inner.events.len() > inner.keep_events {
            if let Some(old) = inner.events.pop_front() {
                inner.oldest = old.rv + 1;
            }
        }
        let _ = self.events.send(ev);
    }

    /// Forgets every event so far: a watch resuming from an earlier version gets 410.
    pub fn compact(&self) {
        let mut inner = lock(&self.inner);
        inner.events.clear();
        inner.oldest = inner.rv + 1;
    }

    pub fn set_faults(&self, f: Faults) {
        *lock(&self.faults) = f;
    }

    pub fn get(&self, coll: &Coll, ns: &str, name: &str) -> Option<Value> {
        let inner = lock(&self.inner);
        inner
            .objects
            .get(&Key {
                coll: coll.clone(),
                ns: ns.into(),
                name: name.into(),
            })
            .cloned()
    }

    pub fn list(&self, coll: &Coll, ns: Option<&str>, selector: &str) -> Vec<Value> {
        let inner = lock(&self.inner);
        inner
            .objects
            .iter()
            .filter(|(k, v)| {
                k.coll == *coll && ns.is_none_or(|n| k.ns == n) && selector_matches(selector, v)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn create(&self, coll: &Coll, ns: &str, mut obj: Value) -> Result<Value, (u16, Value)> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| {
                let prefix = obj.pointer("/metadata/generateName")?.as_str()?.to_string();
                Some(format!("{prefix}{}", fastrand::u32(10000..99999)))
            })
            .ok_or_else(|| (422, status(422, "Invalid", "metadata.name: Required value")))?;
        let mut inner = lock(&self.inner);
        let key = Key {
            coll: coll.clone(),
            ns: ns.into(),
            name: name.clone(),
        };
        if inner.objects.contains_key(&key) {
            let msg = format!("{} \"{name}\" already exists", coll.resource);
            return Err((409, status(409, "AlreadyExists", &msg)));
        }
        inner.rv += 1;
        let rv = inner.rv;
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = json!(api_version(coll));
        }
        if obj.get("kind").is_none() {
            obj["kind"] = json!(kind_of(&coll.resource));
        }
        let meta = obj["metadata"]
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut meta = Value::Object(meta);
        meta["name"] = json!(name);
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("uid-{rv}-{}", fastrand::u32(..)));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        obj["metadata"] = meta;
        inner.objects.insert(key.clone(), obj.clone());
        self.record(&mut inner, "ADDED", &key, obj.clone());
        Ok(obj)
    }

    /// Replaces an object: its `metadata.resourceVersion` must match when given (409 otherwise). With
    /// `status_only` only `.status` changes; otherwise `.status` is kept for collections with
    /// a status subresource.
    pub fn update(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
    ) -> Result<Value, (u16, Value)> {
        let mut inner = lock(&self.inner);
        let key = Key {
            coll: coll.clone(),
            ns: ns.into(),
            name: name.into(),
        };
        let Some(old) = inner.objects.get(&key).cloned() else {
            return Err(not_found(coll, name));
        };
        let current = old["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
        {
            if !rv.is_empty() && rv != current {
                let msg = format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    coll.resource
                );
                return Err((409, status(409, "Conflict", &msg)));
            }
        }
        if coll.resource == "configmaps"
            && old.get("immutable") == Some(&json!(true))
            && (obj.get("data") != old.get("data")
                || obj.get("binaryData") != old.get("binaryData"))
        {
            return Err((422, status(422, "Invalid", &format!("ConfigMap \"{name}\" is invalid: data: Forbidden: field is immutable when `immutable` is set"))));
        }
        let has_status = inner.status_subresource.contains(coll);
        let mut new = if status_only {
            let mut n = old.clone();
            n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            if has_status {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            // Identity and bookkeeping stay the server's.
            for f in ["uid", "creationTimestamp", "namespace", "name"] {
                obj["metadata"][f] = old["metadata"][f].clone();
            }
            obj["apiVersion"] = old["apiVersion"].clone();
            obj["kind"] = old["kind"].clone();
            obj
        };
        if new == old {
            return Ok(old);
        }
        inner.rv += 1;
        new["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.objects.insert(key.clone(), new.clone());
        self.record(&mut inner, "MODIFIED", &key, new.clone());
        Ok(new)
    }

    /// Deletes an object and, unless orphaning, everything it owns (owner references).
    pub fn delete(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        orphan: bool,
    ) -> Result<Value, (u16, Value)> {
        let mut inner = lock(&self.inner);
        let key = Key {
            coll: coll.clone(),
            ns: ns.into(),
            name: name.into(),
        };
        let Some(obj) = inner.objects.remove(&key) else {
            return Err(not_found(coll, name));
        };
        inner.rv += 1;
        self.record(&mut inner, "DELETED", &key, obj.clone());
        let mut uids = vec![obj["metadata"]["uid"].as_str().unwrap_or("").to_string()];
        while let (false, Some(uid)) = (orphan, uids.pop()) {
            let owned: Vec<Key> = inner
                .objects
                .iter()
                .filter(|(_, v)| {
                    v.pointer("/metadata/ownerReferences")
                        .and_then(|o| o.as_array())
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in owned {
                if let Some(child) = inner.objects.remove(&k) {
                    inner.rv += 1;
                    uids.push(child["metadata"]["uid"].as_str().unwrap_or("").to_string());
                    self.record(&mut inner, "DELETED", &k, child);
                }
            }
        }
        Ok(obj)
    }

    /// Merge patch (`status_only`: of `.status` alone).
    pub fn merge(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<Value, (u16, Value)> {
        let Some(mut obj) = self.get(coll, ns, name) else {
            return Err(not_found(coll, name));
        };
        merge_patch(&mut obj, patch);
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.update(coll, ns, name, obj, status_only)
    }

    /// Server-side apply: creates, or sets the fields `manager` applies and removes those it
    /// applied before and no longer does; another manager's field with a different value is a
    /// conflict unless `force`.
    pub fn apply(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        body: &Value,
        manager: &str,
        force: bool,
        status_only: bool,
    ) -> Result<Value, (u16, Value)> {
        let mut applied = BTreeMap::new();
        let mut cfg = body.clone();
        if let Some(m) = cfg["metadata"].as_object_mut() {
            m.retain(|k, _| k == "labels" || k == "annotations");
        }
        for f in ["apiVersion", "kind"] {
            if let Some(m) = cfg.as_object_mut() {
                m.remove(f);
            }
        }
        leaves(&cfg, "", &mut applied);
        let Some(mut obj) = self.get(coll, ns, name) else {
            if status_only {
                return Err(not_found(coll, name));
            }
            let mut obj = body.clone();
            obj["metadata"]["name"] = json!(name);
            let mut owners = BTreeMap::new();
            owners.insert(
                manager.to_string(),
                applied.keys().cloned().collect::<BTreeSet<_>>(),
            );
            obj["metadata"]["annotations"]["test.k8s.io/managed"] =
                json!(serde_json::to_string(&owners).unwrap_or_default());
            return self.create(coll, ns, obj);
        };
        let mut owners = owned_fields(&obj);
        if !force {
            for (other, fields) in owners.iter().filter(|(m, _)| m.as_str() != manager) {
                for (path, value) in &applied {
                    if fields.contains(path) && obj.pointer(path) != Some(value) {
                        let msg = format!(
                            "Apply failed with 1 conflict: conflict with \"{other}\": {path}"
                        );
                        return Err((409, status(409, "Conflict", &msg)));
                    }
                }
            }
        }
        let before = owners.remove(manager).unwrap_or_default();
        for path in before.iter().filter(|p| !applied.contains_key(*p)) {
            remove_path(&mut obj, path);
        }
        for (path, value) in &applied {
            for fields in owners.values_mut() {
                fields.remove(path);
            }
            let mut patch = Value::Null;
            // Build {a: {b: value}} for /a/b.
            let parts: Vec<String> = path
                .trim_start_matches('/')
                .split('/')
                .map(|p| p.replace("~1", "/").replace("~0", "~"))
                .collect();
            let mut v = value.clone();
            for p in parts.iter().rev() {
                let mut m = Map::new();
                m.insert(p.clone(), v);
                v = Value::Object(m);
            }
            std::mem::swap(&mut patch, &mut v);
            merge_patch(&mut obj, &patch);
        }
        owners.insert(manager.to_string(), applied.keys().cloned().collect());
        obj["metadata"]["annotations"]["test.k8s.io/managed"] =
            json!(serde_json::to_string(&owners).unwrap_or_default());
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.update(coll, ns, name, obj, status_only)
    }

    pub fn set_log(&self, ns: &str, pod: &str, path: &Path) {
        lock(&self.inner)
            .logs
            .insert((ns.into(), pod.into()), path.to_path_buf());
    }

    fn log(&self, ns: &str, pod: &str) -> Option<String> {
        let path = lock(&self.inner)
            .logs
            .get(&(ns.to_string(), pod.to_string()))
            .cloned()?;
        Some(std::fs::read_to_string(path).unwrap_or_default())
    }

    fn current_rv(&self) -> u64 {
        lock(&self.inner).rv
    }

    /// Requests recorded as RBAC sees them.
    pub fn accesses(&self) -> BTreeSet<(String, String, String)> {
        lock(&self.accesses)
            .iter()
            .map(|a| (a.group.clone(), a.resource.clone(), a.verb.clone()))
            .collect()
    }
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

/// The parsed path of a request.
#[derive(Debug)]
struct Target {
    coll: Coll,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Target {
        coll: Coll::new(group, resource),
        ns,
        name,
        sub,
    })
}

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn full(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_default()
}

fn answer(r: Result<Value, (u16, Value)>, ok: u16) -> Response<Body> {
    match r {
        Ok(v) => full(ok, &v),
        Err((code, s)) => full(code, &s),
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
                        async move { Ok::<_, Infallible>(handle(st, &tok, req).await) }
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

    /// Installs a CustomResourceDefinition (YAML), as `kubectl apply -f` would.
    pub fn install_crd(&self, yaml: &str) {
        let crd: Value = serde_yaml::from_str(yaml).expect("CRD YAML");
        register_crd(&self.store, &crd);
        self.store
            .create(
                &Coll::new("apiextensions.k8s.io", "customresourcedefinitions"),
                "",
                crd,
            )
            .expect("CRD created");
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

fn verb(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

async fn handle(
    store: Arc<Store>,
    token: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let expected = format!("Bearer {token}");
    let authed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authed {
        return full(401, &status(401, "Unauthorized", "Unauthorized"));
    }
    let (parts, body) = req.into_parts();
    let q = query(&parts.uri);
    let Some(t) = parse_path(parts.uri.path()) else {
        return full(
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.coll.resource),
        None => t.coll.resource.clone(),
    };
    lock(&store.accesses).push(Access {
        verb: verb(&parts.method, &t, watch).into(),
        group: t.coll.group.clone(),
        resource,
    });
    *lock(&store.requests) += 1;
    let faults = lock(&store.faults).clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let roll = fastrand::f64();
    if roll < faults.error_500 {
        *lock(&store.injected) += 1;
        return full(
            500,
            &status(
                500,
                "InternalError",
                "injected: etcdserver: request timed out",
            ),
        );
    }
    if roll < faults.error_500 + faults.throttle_429 {
        *lock(&store.injected) += 1;
        let mut r = full(
            429,
            &status(429, "TooManyRequests", "injected: too many requests"),
        );
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
        return r;
    }
    let is_write = matches!(parts.method, Method::PUT | Method::PATCH);
    if is_write && fastrand::f64() < faults.conflict_409 {
        *lock(&store.injected) += 1;
        return full(409, &status(409, "Conflict", "injected: the object has been modified; please apply your changes to the latest version and try again"));
    }
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes)
            .ok()
            .or_else(|| serde_yaml::from_slice(&bytes).ok())
    };
    let ns = t.ns.clone();
    let coll = t.coll.clone();
    let status_only = t.sub.as_deref() == Some("status");
    match (parts.method.clone(), &t.name, t.sub.as_deref()) {
        (Method::GET, None, _) if watch => watch_stream(store, &t, &q, faults.cut_watch_after),
        (Method::GET, None, _) => {
            let selector = q.get("labelSelector").cloned().unwrap_or_default();
            let items = store.list(&coll, (!ns.is_empty()).then_some(ns.as_str()), &selector);
            full(
                200,
                &json!({
                    "kind": format!("{}List", kind_of(&coll.resource)),
                    "apiVersion": api_version(&coll),
                    "metadata": {"resourceVersion": store.current_rv().to_string()},
                    "items": items,
                }),
            )
        }
        (Method::GET, Some(name), Some("log")) => match store.log(&ns, name) {
            Some(text) => Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(text)).boxed())
                .unwrap_or_default(),
            None if store.get(&coll, &ns, name).is_some() => full(
                400,
                &status(
                    400,
                    "BadRequest",
                    &format!(
                        "container \"k6\" in pod \"{name}\" is waiting to start: ContainerCreating"
                    ),
                ),
            ),
            None => full(
                404,
                &status(404, "NotFound", &format!("pods \"{name}\" not found")),
            ),
        },
        (Method::GET, Some(name), _) => match store.get(&coll, &ns, name) {
            Some(v) => full(200, &v),
            None => full(
                404,
                &status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", coll.resource),
                ),
            ),
        },
        (Method::POST, None, _) => match parsed {
            Some(obj) => {
                if coll.resource == "customresourcedefinitions" {
                    register_crd(&store, &obj);
                }
                answer(store.create(&coll, &ns, obj), 201)
            }
            None => full(400, &status(400, "BadRequest", "empty body")),
        },
        (Method::PUT, Some(name), _) => match parsed {
            Some(obj) => answer(store.update(&coll, &ns, name, obj, status_only), 200),
            None => full(400, &status(400, "BadRequest", "empty body")),
        },
        (Method::PATCH, Some(name), _) => {
            let ct = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let Some(patch) = parsed else {
                return full(400, &status(400, "BadRequest", "empty patch"));
            };
            if ct.starts_with("application/apply-patch") {
                let Some(manager) = q.get("fieldManager") else {
                    return full(
                        400,
                        &status(400, "BadRequest", "PATCH with apply requires fieldManager"),
                    );
                };
                let force = q.get("force").is_some_and(|f| f == "true");
                answer(
                    store.apply(&coll, &ns, name, &patch, manager, force, status_only),
                    200,
                )
            } else if ct.starts_with("application/merge-patch")
                || ct.starts_with("application/strategic-merge-patch")
            {
                answer(store.merge(&coll, &ns, name, &patch, status_only), 200)
            } else {
                full(415, &status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml; got {ct}")))
            }
        }
        (Method::DELETE, Some(name), _) => {
            let orphan = q.get("propagationPolicy").is_some_and(|p| p == "Orphan")
                || parsed
                    .as_ref()
                    .and_then(|b| b.get("propagationPolicy"))
                    .is_some_and(|p| p == "Orphan");
            answer(store.delete(&coll, &ns, name, orphan), 200)
        }
        (Method::DELETE, None, _) => {
            let selector = q.get("labelSelector").cloned().unwrap_or_default();
            let items = store.list(&coll, Some(&ns), &selector);
            for o in &items {
                if let Some(n) = o.pointer("/metadata/name").and_then(|v| v.as_str()) {
                    let _ = store.delete(&coll, &ns, n, false);
                }
            }
            full(
                200,
                &json!({"kind": format!("{}List", kind_of(&coll.resource)), "apiVersion": api_version(&coll), "metadata": {}, "items": items}),
            )
        }
        _ => full(405, &status(405, "MethodNotAllowed", "method not allowed")),
    }
}

fn register_crd(store: &Store, crd: &Value) {
    let group = crd
        .pointer("/spec/group")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let has_status = crd
        .pointer("/spec/versions")
        .and_then(|v| v.as_array())
        .is_some_and(|vs| {
            vs.iter()
                .any(|v| v.pointer("/subresources/status").is_some())
        });
    if has_status {
        lock(&store.inner)
            .status_subresource
            .insert(Coll::new(group, plural));
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// A watch: the events after the given version (all current objects as ADDED when none is
/// given), then live ones; bookmarks every second when asked for; `410` as an ERROR event
/// when the version is older than what is kept.
fn watch_stream(
    store: Arc<Store>,
    t: &Target,
    q: &BTreeMap<String, String>,
    cut: Option<Duration>,
) -> Response<Body> {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let end_after = cut.map_or(timeout, |c| c.min(timeout));
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .filter(|v| *v > 0);
    let (coll, ns) = (t.coll.clone(), t.ns.clone());
    let mut live = store.events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let matches = {
        let (coll, ns, selector) = (coll.clone(), ns.clone(), selector.clone());
        move |e: &Event| {
            e.coll == coll
                && (ns.is_empty() || e.ns == ns)
                && selector_matches(&selector, &e.object)
        }
    };
    let mut backlog: Vec<Bytes> = Vec::new();
    let mut last: u64;
    {
        let inner = lock(&store.inner);
        match from {
            Some(v) if v + 1 < inner.oldest => {
                backlog.push(event_line(
                    "ERROR",
                    &status(
                        410,
                        "Expired",
                        &format!("too old resource version: {v} ({})", inner.oldest),
                    ),
                ));
                last = u64::MAX;
            }
            Some(v) => {
                for e in inner.events.iter().filter(|e| e.rv > v && matches(e)) {
                    backlog.push(event_line(e.kind, &e.object));
                }
                last = inner.rv;
            }
            None => {
                for (k, o) in inner.objects.iter() {
                    if k.coll == coll
                        && (ns.is_empty() || k.ns == ns)
                        && selector_matches(&selector, o)
                    {
                        backlog.push(event_line("ADDED", o));
                    }
                }
                last = inner.rv;
            }
        }
    }
    let kind = kind_of(&coll.resource);
    let api_version = api_version(&coll);
    tokio::spawn(async move {
        for b in backlog {
            if tx.send(Ok(Frame::data(b))).await.is_err() {
                return;
            }
        }
        if last == u64::MAX {
            return;
        }
        let deadline = tokio::time::Instant::now() + end_after;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) if e.rv > last && matches(&e) => {
                        last = e.rv;
                        if tx.send(Ok(Frame::data(event_line(e.kind, &e.object)))).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    // Fell behind: end the stream; the client resumes or lists again.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let rv = store.current_rv();
                    let b = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(Ok(Frame::data(event_line("BOOKMARK", &b)))).await.is_err() { return; }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
