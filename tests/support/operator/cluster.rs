//! The cluster around the operator: the Job controller (one pod per Job, since every Job here
//! has `backoffLimit: 0`; the Job's status from its pod), the scheduler (nodes with
//! allocatable CPU and memory, node selectors, `PodScheduled=False` / `Unschedulable`), Service
//! cluster IPs (see the deviation in `mod.rs`), and Events.

use super::kube_api::Event;
use super::{jobs, kubelet, lock, now, pods, s, services, Shared};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    /// Jobs (by uid) whose pod was created.
    with_pod: BTreeSet<String>,
    /// Pods (by uid) placed on a node and not ended: node, CPU (millicores), memory (bytes).
    bound: BTreeMap<String, (String, u64, u64)>,
    /// Pods (by uid, with namespace and name) the scheduler could not place yet, and why.
    unschedulable: BTreeMap<String, (String, String, String)>,
    /// Services (namespace, name) waiting for a pod to take the IP of, with their selector.
    services_waiting: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// The pod of each Job (namespace, Job name).
    pod_of_job: BTreeMap<(String, String), String>,
}

/// The pod the Job controller created for a Job.
pub fn pod_of_job(sh: &Arc<Shared>, ns: &str, job: &str) -> Option<Value> {
    let name = lock(&sh.cluster)
        .pod_of_job
        .get(&(ns.to_string(), job.to_string()))
        .cloned()?;
    sh.store.get(&pods(), ns, &name)
}

/// Records an Event about an object, as kubelet, the scheduler or a controller would.
/// With synthetic runners (hundreds of pods) the routine ones are left out: each Event costs
/// the store a scan of all Events.
pub fn event(
    sh: &Arc<Shared>,
    ns: &str,
    kind: &str,
    name: &str,
    reason: &str,
    message: &str,
    type_: &str,
) {
    let routine = matches!(
        reason,
        "Scheduled" | "SuccessfulCreate" | "Completed" | "Pulled" | "Created" | "Started"
    );
    if routine && sh.opts.synthetic.is_some() {
        return;
    }
    sh.store
        .record_event(ns, kind, name, reason, message, type_);
}

/// A Kubernetes CPU quantity in millicores (`"2"`, `"500m"`, `"1.5"`).
pub fn cpu_milli(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as u64);
    }
    q.parse::<f64>().ok().map(|v| (v * 1000.0).ceil() as u64)
}

/// A Kubernetes memory quantity in bytes (`"32Gi"`, `"512M"`, `"1e3"`, `"1000"`).
pub fn bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let units: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * factor).ceil() as u64);
        }
    }
    q.parse::<f64>().ok().map(|v| v.ceil() as u64)
}

fn quantity(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The pod's requests (a request left out defaults to the limit, as the apiserver does).
pub fn requests(pod: &Value) -> (u64, u64) {
    let (mut cpu, mut mem) = (0, 0);
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"];
        let get = |k: &str| {
            let v = &r["requests"][k];
            if v.is_null() {
                quantity(&r["limits"][k])
            } else {
                quantity(v)
            }
        };
        cpu += cpu_milli(&get("cpu")).unwrap_or(0);
        mem += bytes(&get("memory")).unwrap_or(0);
    }
    (cpu, mem)
}

pub fn on_event(sh: &Arc<Shared>, e: &Event) {
    match (e.coll.resource.as_str(), e.kind) {
        ("jobs", "ADDED") => ensure_pod(sh, &e.object),
        ("jobs", "DELETED") => {
            let mut st = lock(&sh.cluster);
            st.with_pod.remove(s(&e.object, "/metadata/uid"));
            st.pod_of_job
                .remove(&(e.ns.clone(), s(&e.object, "/metadata/name").to_string()));
        }
        ("pods", "ADDED") => schedule(sh, &e.object),
        ("pods", "DELETED") => {
            let uid = s(&e.object, "/metadata/uid");
            {
                let mut st = lock(&sh.cluster);
                st.bound.remove(uid);
                st.unschedulable.remove(uid);
            }
            kubelet::deleted(sh, &e.object);
        }
        ("services", "ADDED") => service_ip(sh, &e.object),
        ("services", "DELETED") => {
            let key = (e.ns.clone(), s(&e.object, "/metadata/name").to_string());
            lock(&sh.cluster).services_waiting.remove(&key);
        }
        _ => {}
    }
}

/// Everything again: Jobs without a pod, pods not placed, Services without an IP.
pub fn resync(sh: &Arc<Shared>) {
    for job in sh.store.list(&jobs(), None, "") {
        ensure_pod(sh, &job);
    }
    for pod in sh.store.list(&pods(), None, "") {
        if pod.pointer("/spec/nodeName").is_none() {
            schedule(sh, &pod);
        } else {
            kubelet::admit(sh, &pod);
        }
    }
    for svc in sh.store.list(&services(), None, "") {
        let key = (
            s(&svc, "/metadata/namespace").to_string(),
            s(&svc, "/metadata/name").to_string(),
        );
        if s(&svc, "/spec/clusterIP").is_empty()
            && !lock(&sh.cluster).services_waiting.contains_key(&key)
        {
            service_ip(sh, &svc);
        }
    }
}

/// Retries what waits: pods the scheduler could not place (something may have ended), and the
/// kubelet's pods waiting for a ConfigMap or Secret.
pub fn tick(sh: &Arc<Shared>) {
    let waiting: Vec<(String, String)> = lock(&sh.cluster)
        .unschedulable
        .values()
        .map(|(ns, name, _)| (ns.clone(), name.clone()))
        .collect();
    for (ns, name) in waiting {
        if let Some(pod) = sh.store.get(&pods(), &ns, &name) {
            schedule(sh, &pod);
        }
    }
    kubelet::tick(sh);
}

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The Job controller: the Job's pod, from its template, named `<job>-<5 random>`.
fn ensure_pod(sh: &Arc<Shared>, job: &Value) {
    let uid = s(job, "/metadata/uid").to_string();
    if job.pointer("/status/completionTime").is_some()
        || !lock(&sh.cluster).with_pod.insert(uid.clone())
    {
        return;
    }
    let (ns, name) = (s(job, "/metadata/namespace"), s(job, "/metadata/name"));
    let suffix: String = (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in [
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("job-name", name),
        ("batch.kubernetes.io/job-name", name),
    ] {
        labels[k] = json!(v);
    }
    let mut spec = template["spec"].clone();
    if spec.get("terminationGracePeriodSeconds").is_none() {
        spec["terminationGracePeriodSeconds"] = json!(30);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-{suffix}"), "generateName": format!("{name}-"),
            "labels": labels, "annotations": template["metadata"]["annotations"].clone(),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec});
    match sh.store.create(&pods(), ns, pod) {
        Ok(_) => {
            lock(&sh.cluster).pod_of_job.insert(
                (ns.to_string(), name.to_string()),
                format!("{name}-{suffix}"),
            );
            let _ = sh.store.merge(
                &jobs(),
                ns,
                name,
                &json!({"status": {"active": 1, "ready": 0, "startTime": now()}}),
                true,
            );
            event(
                sh,
                ns,
                "Job",
                name,
                "SuccessfulCreate",
                &format!("Created pod: {name}-{suffix}"),
                "Normal",
            );
        }
        Err((_, status)) => {
            lock(&sh.cluster).with_pod.remove(&uid);
            let msg = s(&status, "/message").to_string();
            event(
                sh,
                ns,
                "Job",
                name,
                "FailedCreate",
                &format!("Error creating: {msg}"),
                "Warning",
            );
        }
    }
}

/// The Job controller, when its pod ended: counts it and marks the Job complete or failed.
pub fn pod_ended(sh: &Arc<Shared>, pod: &Value, succeeded: bool) {
    let uid = s(pod, "/metadata/uid").to_string();
    lock(&sh.cluster).bound.remove(&uid);
    let ns = s(pod, "/metadata/namespace");
    let Some(job) = pod["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|r| r["kind"] == "Job"))
        .and_then(|r| r["name"].as_str())
    else {
        return;
    };
    let t = now();
    let status = if succeeded {
        json!({"active": null, "ready": 0, "succeeded": 1, "completionTime": t,
            "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": t, "lastTransitionTime": t}]})
    } else {
        json!({"active": null, "ready": 0, "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit", "lastProbeTime": t, "lastTransitionTime": t}]})
    };
    let _ = sh
        .store
        .merge(&jobs(), ns, job, &json!({ "status": status }), true);
    if succeeded {
        event(sh, ns, "Job", job, "Completed", "Job completed", "Normal");
    } else {
        event(
            sh,
            ns,
            "Job",
            job,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "Warning",
        );
    }
}

/// The scheduler: the first node whose labels match the pod's `nodeSelector` and whose
/// allocatable CPU and memory, less what the pods placed there and not ended request, fit.
fn schedule(sh: &Arc<Shared>, pod: &Value) {
    let phase = s(pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed") {
        return;
    }
    if !s(pod, "/spec/nodeName").is_empty() {
        kubelet::admit(sh, pod);
        return;
    }
    let (ns, name, uid) = (
        s(pod, "/metadata/namespace").to_string(),
        s(pod, "/metadata/name").to_string(),
        s(pod, "/metadata/uid").to_string(),
    );
    let (cpu, mem) = requests(pod);
    let selector = pod["spec"]["nodeSelector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut reasons: BTreeMap<&str, u32> = BTreeMap::new();
    let mut chosen = None;
    {
        let st = lock(&sh.cluster);
        for node in &sh.opts.nodes {
            if !selector
                .iter()
                .all(|(k, v)| node.labels.get(k).map(String::as_str) == v.as_str())
            {
                *reasons
                    .entry("node(s) didn't match Pod's node affinity/selector")
                    .or_default() += 1;
                continue;
            }
            let (used_cpu, used_mem) = st
                .bound
                .values()
                .filter(|(n, _, _)| *n == node.name)
                .fold((0, 0), |(c, m), (_, pc, pm)| (c + pc, m + pm));
            let mut fits = true;
            if used_cpu + cpu > node.cpu_milli {
                *reasons.entry("Insufficient cpu").or_default() += 1;
                fits = false;
            }
            if used_mem + mem > node.memory {
                *reasons.entry("Insufficient memory").or_default() += 1;
                fits = false;
            }
            if fits && chosen.is_none() {
                chosen = Some(node.name.clone());
            }
        }
    }
    let t = now();
    let Some(node) = chosen else {
        let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        let message = format!(
            "0/{} nodes are available: {}.",
            sh.opts.nodes.len(),
            parts.join(", ")
        );
        let before = lock(&sh.cluster)
            .unschedulable
            .insert(uid.clone(), (ns.clone(), name.clone(), message.clone()));
        if before.is_none_or(|(_, _, m)| m != message) {
            let _ = sh.store.merge(&pods(), &ns, &name, &json!({"status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": message, "lastProbeTime": null, "lastTransitionTime": t}]}}), true);
            event(
                sh,
                &ns,
                "Pod",
                &name,
                "FailedScheduling",
                &message,
                "Warning",
            );
        }
        return;
    };
    {
        let mut st = lock(&sh.cluster);
        st.unschedulable.remove(&uid);
        st.bound.insert(uid.clone(), (node.clone(), cpu, mem));
    }
    let Ok(bound) = sh.store.merge(
        &pods(),
        &ns,
        &name,
        &json!({"spec": {"nodeName": node}}),
        false,
    ) else {
        lock(&sh.cluster).bound.remove(&uid);
        return;
    };
    event(
        sh,
        &ns,
        "Pod",
        &name,
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {node}"),
        "Normal",
    );
    kubelet::admit(sh, &bound);
}

/// Gives a Service the IP of the pod its selector picks (see `mod.rs`: no kube-proxy here),
/// now or once that pod runs.
pub fn service_ip(sh: &Arc<Shared>, svc: &Value) {
    let selector: BTreeMap<String, String> = svc["spec"]["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    if selector.is_empty() || !s(svc, "/spec/clusterIP").is_empty() {
        return;
    }
    let (ns, name) = (s(svc, "/metadata/namespace"), s(svc, "/metadata/name"));
    match kubelet::ip_of(sh, ns, &selector) {
        Some(ip) => set_cluster_ip(sh, ns, name, &ip),
        None => {
            lock(&sh.cluster)
                .services_waiting
                .insert((ns.to_string(), name.to_string()), selector);
        }
    }
}

fn set_cluster_ip(sh: &Arc<Shared>, ns: &str, name: &str, ip: &str) {
    lock(&sh.cluster)
        .services_waiting
        .remove(&(ns.to_string(), name.to_string()));
    let _ = sh.store.merge(
        &services(),
        ns,
        name,
        &json!({"spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP"}}),
        false,
    );
}

/// A pod runs: the Services waiting for it get its IP.
pub fn pod_has_ip(sh: &Arc<Shared>, run: &kubelet::PodRun) {
    let ready: Vec<String> = lock(&sh.cluster)
        .services_waiting
        .iter()
        .filter(|((ns, _), sel)| {
            *ns == run.ns && sel.iter().all(|(k, v)| run.labels.get(k) == Some(v))
        })
        .map(|((_, name), _)| name.clone())
        .collect();
    for name in ready {
        set_cluster_ip(sh, &run.ns, &name, &run.ip);
    }
}
