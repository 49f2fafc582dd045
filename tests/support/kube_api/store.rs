//! The objects, their versions and the event log, and every write's admission: custom
//! resources pruned, defaulted and validated against their CRD, built-in kinds validated, in
//! the Store itself so that writes made in-process (the operator stand-in) are checked too.

use super::rbac::Role;
use super::schema::CrdSchema;
use super::select::{selector_matches, FieldSelector};
use super::{api_version, kind_of, lock, not_found, now, status, validate, Access, Coll, Event};
use super::{Faults, Key};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub(super) struct Inner {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub events: VecDeque<Event>,
    /// Watches from a version below this get `410 Gone`.
    pub oldest: u64,
    pub keep_events: usize,
    /// Pod logs: files the operator stand-in writes.
    pub logs: BTreeMap<(String, String), PathBuf>,
    /// Pods whose log reads fail (the kubelet is gone), with the message.
    pub log_failures: BTreeMap<(String, String), String>,
    pub status_subresource: BTreeSet<Coll>,
    pub crds: BTreeMap<Coll, CrdSchema>,
    pub role: Option<Role>,
}

pub struct Store {
    pub(super) inner: Mutex<Inner>,
    pub events: broadcast::Sender<Event>,
    pub faults: Mutex<Faults>,
    pub accesses: Mutex<Vec<Access>>,
    denials: Mutex<Vec<Access>>,
    by_verb: Mutex<BTreeMap<(String, String), u64>>,
    pub requests: Mutex<u64>,
    pub injected: Mutex<u64>,
    pub(super) watches_open: AtomicUsize,
    pub(super) watches_max: AtomicUsize,
}

impl Store {
    pub fn new() -> Arc<Store> {
        let (events, _) = broadcast::channel(4096);
        let status_subresource = [
            Coll::new("", "pods"),
            Coll::new("batch", "jobs"),
            Coll::new("k6.io", "testruns"),
        ]
        .into_iter()
        .collect();
        Arc::new(Store {
            inner: Mutex::new(Inner {
                rv: 1000,
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                oldest: 0,
                keep_events: 500,
                logs: BTreeMap::new(),
                log_failures: BTreeMap::new(),
                status_subresource,
                crds: BTreeMap::new(),
                role: None,
            }),
            events,
            faults: Mutex::new(Faults::default()),
            accesses: Mutex::new(Vec::new()),
            denials: Mutex::new(Vec::new()),
            by_verb: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(0),
            injected: Mutex::new(0),
            watches_open: AtomicUsize::new(0),
            watches_max: AtomicUsize::new(0),
        })
    }

    pub(super) fn record(&self, inner: &mut Inner, kind: &'static str, key: &Key, object: Value) {
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

    /// From now on, requests over HTTP are authorized against `role` (`None`: all allowed).
    pub fn set_role(&self, role: Option<Role>) {
        lock(&self.inner).role = role;
    }

    /// Registers a CRD: its storage version's schema and whether it has a status subresource.
    pub fn register_crd(&self, crd: &Value) {
        let Some(schema) = CrdSchema::from_crd(crd) else {
            return;
        };
        let coll = Coll::new(&schema.group, &schema.plural);
        let mut inner = lock(&self.inner);
        if schema.status_subresource {
            inner.status_subresource.insert(coll.clone());
        }
        inner.crds.insert(coll, schema);
    }

    pub fn schema(&self, coll: &Coll) -> Option<CrdSchema> {
        lock(&self.inner).crds.get(coll).cloned()
    }

    pub(super) fn kind(&self, coll: &Coll) -> String {
        kind_in(&lock(&self.inner), coll)
    }

    pub(super) fn api_version(&self, coll: &Coll) -> String {
        api_version_in(&lock(&self.inner), coll)
    }

    pub fn get(&self, coll: &Coll, ns: &str, name: &str) -> Option<Value> {
        let inner = lock(&self.inner);
        inner.objects.get(&Key::new(coll, ns, name)).cloned()
    }

    pub fn list(&self, coll: &Coll, ns: Option<&str>, selector: &str) -> Vec<Value> {
        self.list_fields(coll, ns, selector, &FieldSelector::default())
    }

    /// A list by label selector and field selector.
    pub fn list_fields(
        &self,
        coll: &Coll,
        ns: Option<&str>,
        selector: &str,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        let inner = lock(&self.inner);
        in_coll(&inner, coll, ns)
            .filter(|(_, v)| selector_matches(selector, v) && fields.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Prunes, defaults and validates `obj` as the apiserver would before storing it.
    fn admit(
        &self,
        inner: &Inner,
        coll: &Coll,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), (u16, Value)> {
        let mut errs = Vec::new();
        if let Some(crd) = inner.crds.get(coll) {
            crd.prune(obj);
            crd.default(obj);
            errs.extend(crd.validate(obj));
        }
        let kind = kind_in(inner, coll);
        match validate::builtin(&coll.resource, &kind, obj, old) {
            Ok(e) => errs.extend(e),
            Err(msg) => return Err((400, status(400, "BadRequest", &msg))),
        }
        if errs.is_empty() {
            return Ok(());
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        Err(validate::invalid(&kind, &coll.group, name, &errs))
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
        let key = Key::new(coll, ns, &name);
        if inner.objects.contains_key(&key) {
            let msg = format!("{} \"{name}\" already exists", coll.resource);
            return Err((409, status(409, "AlreadyExists", &msg)));
        }
        let rv = inner.rv + 1;
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = json!(api_version_in(&inner, coll));
        }
        if obj.get("kind").is_none() {
            obj["kind"] = json!(kind_in(&inner, coll));
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
        let uid = format!("uid-{rv}-{}", fastrand::u32(..));
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        obj["metadata"] = meta;
        if *coll == Coll::new("batch", "jobs") {
            job_labels(&mut obj, &name, &uid);
        }
        self.admit(&inner, coll, &mut obj, None)?;
        inner.rv = rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
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
        let key = Key::new(coll, ns, name);
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
        new["metadata"]["resourceVersion"] = json!(current);
        self.admit(&inner, coll, &mut new, Some(&old))?;
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
        let key = Key::new(coll, ns, name);
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

    pub(super) fn current_rv(&self) -> u64 {
        lock(&self.inner).rv
    }

    /// Counts one request by (verb, resource) as RBAC's filter sees it.
    pub(super) fn count_request(&self, a: &Access) {
        *lock(&self.requests) += 1;
        *lock(&self.by_verb)
            .entry((a.verb.clone(), a.resource.clone()))
            .or_default() += 1;
    }

    /// Records an access and decides it against the enforced Role, if any.
    pub(super) fn authorize(
        &self,
        a: &Access,
        ns: &str,
        name: Option<&str>,
    ) -> Result<(), (u16, Value)> {
        lock(&self.accesses).push(a.clone());
        let denied = match &lock(&self.inner).role {
            Some(role) if !role.allows(a, ns, name) => Some(role.forbidden(a, ns, name)),
            _ => None,
        };
        match denied {
            None => Ok(()),
            Some(answer) => {
                lock(&self.denials).push(a.clone());
                Err(answer)
            }
        }
    }

    /// Requests recorded as RBAC sees them: (group, resource, verb), granted or not.
    pub fn accesses(&self) -> BTreeSet<(String, String, String)> {
        triples(&lock(&self.accesses))
    }

    /// The requests the enforced Role refused: (group, resource, verb).
    pub fn denied(&self) -> BTreeSet<(String, String, String)> {
        triples(&lock(&self.denials))
    }

    /// Requests per (verb, resource): `("list", "pods")`, `("get", "pods/log")`, ….
    pub fn requests_by_verb(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.by_verb).clone()
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.watches_open.load(Ordering::SeqCst)
    }

    /// The most watch streams open at once so far.
    pub fn max_open_watches(&self) -> usize {
        self.watches_max.load(Ordering::SeqCst)
    }
}

/// The objects of one collection (in one namespace), by range rather than a scan of all.
pub(super) fn in_coll<'a>(
    inner: &'a Inner,
    coll: &'a Coll,
    ns: Option<&'a str>,
) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
    let start = Key::new(coll, ns.unwrap_or(""), "");
    inner
        .objects
        .range(start..)
        .take_while(move |(k, _)| k.coll == *coll && ns.is_none_or(|n| k.ns == n))
}

fn triples(list: &[Access]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|a| (a.group.clone(), a.resource.clone(), a.verb.clone()))
        .collect()
}

fn kind_in(inner: &Inner, coll: &Coll) -> String {
    match inner.crds.get(coll) {
        Some(crd) => crd.kind.clone(),
        None => kind_of(&coll.resource).to_string(),
    }
}

fn api_version_in(inner: &Inner, coll: &Coll) -> String {
    match inner.crds.get(coll) {
        Some(crd) => format!("{}/{}", crd.group, crd.version),
        None => api_version(coll),
    }
}

/// The labels the Job strategy gives a Job's pod template (and so its pods), as a real
/// apiserver does on create: they carry the Job's name, which must therefore be a label value.
fn job_labels(job: &mut Value, name: &str, uid: &str) {
    let Some(template) = job.pointer_mut("/spec/template").filter(|t| t.is_object()) else {
        return;
    };
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        template["metadata"]["labels"][k] = json!(v);
    }
    if job.pointer("/spec/selector").is_none() {
        job["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
}
