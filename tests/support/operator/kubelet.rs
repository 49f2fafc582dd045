//! The kubelet of every node: for a pod placed on a node it mounts the volumes
//! (`FailedMount`), pulls the image (`ImagePullBackOff`), builds the environment
//! (`CreateContainerConfigError`), expands `$(VAR)` in command and args, then runs the
//! container (a real process, or a synthetic one) and reports its state and exit code.
//! What it waits for (a ConfigMap, a Secret) is retried, as kubelet does; an image that
//! cannot be pulled is never pulled.

use super::cluster::{self, event};
use super::env::{environment, expand, volume_files};
use super::{lock, now, process, pullable, s, synthetic, Shared};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    pods: BTreeMap<String, PodRun>,
    ips: BTreeSet<String>,
}

/// What the kubelet knows of one pod it was given.
#[derive(Debug, Clone)]
pub struct PodRun {
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub ip: String,
    pub host_ip: String,
    pub start: String,
    pub started_at: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
    /// The waiting reason and message last written, and events already recorded.
    waiting: String,
    events: BTreeSet<String>,
}

/// A free address in 127.0.0.0/8 (not 127.0.0.x): nothing listens on its port 6565.
fn allocate_ip(st: &mut State) -> String {
    loop {
        let ip = format!(
            "127.{}.{}.{}",
            fastrand::u8(1..=254),
            fastrand::u8(0..=255),
            fastrand::u8(1..=254)
        );
        if st.ips.contains(&ip) {
            continue;
        }
        let Ok(addr) = format!("{ip}:6565").parse::<std::net::SocketAddr>() else {
            continue;
        };
        if std::net::TcpListener::bind(addr).is_ok() {
            st.ips.insert(ip.clone());
            return ip;
        }
    }
}

/// A pod was placed on a node: take it up (once).
pub fn admit(sh: &Arc<Shared>, pod: &Value) {
    let uid = s(pod, "/metadata/uid").to_string();
    if matches!(s(pod, "/status/phase"), "Succeeded" | "Failed") {
        return;
    }
    {
        let mut st = lock(&sh.kubelet);
        if st.pods.contains_key(&uid) {
            return;
        }
        let node = s(pod, "/spec/nodeName");
        let index = sh
            .opts
            .nodes
            .iter()
            .position(|n| n.name == node)
            .unwrap_or(0);
        let ip = allocate_ip(&mut st);
        st.pods.insert(
            uid.clone(),
            PodRun {
                ns: s(pod, "/metadata/namespace").to_string(),
                name: s(pod, "/metadata/name").to_string(),
                uid: uid.clone(),
                ip,
                host_ip: format!("10.0.0.{}", index + 10),
                start: now(),
                started_at: String::new(),
                running: false,
                labels: pod["metadata"]["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                waiting: String::new(),
                events: BTreeSet::new(),
            },
        );
    }
    try_start(sh, pod);
}

/// Pods still waiting: try again.
pub fn tick(sh: &Arc<Shared>) {
    let waiting: Vec<(String, String, String)> = lock(&sh.kubelet)
        .pods
        .values()
        .filter(|r| !r.running)
        .map(|r| (r.uid.clone(), r.ns.clone(), r.name.clone()))
        .collect();
    for (uid, ns, name) in waiting {
        match sh.store.get(&super::pods(), &ns, &name) {
            Some(pod) => try_start(sh, &pod),
            None => {
                lock(&sh.kubelet).pods.remove(&uid);
            }
        }
    }
}

/// A pod was deleted: stop its container.
pub fn deleted(sh: &Arc<Shared>, pod: &Value) {
    let uid = s(pod, "/metadata/uid");
    let run = lock(&sh.kubelet).pods.remove(uid);
    if let Some(run) = run {
        lock(&sh.kubelet).ips.remove(&run.ip);
    }
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30)
        .min(5);
    process::kill_pod(sh, s(pod, "/metadata/name"), grace);
    synthetic::deleted(sh, uid);
}

/// The IP of a running pod in `ns` whose labels `selector` matches.
pub fn ip_of(sh: &Arc<Shared>, ns: &str, selector: &BTreeMap<String, String>) -> Option<String> {
    let st = lock(&sh.kubelet);
    st.pods
        .values()
        .find(|r| {
            r.running && r.ns == ns && selector.iter().all(|(k, v)| r.labels.get(k) == Some(v))
        })
        .map(|r| r.ip.clone())
}

pub fn run_of(sh: &Arc<Shared>, uid: &str) -> Option<PodRun> {
    lock(&sh.kubelet).pods.get(uid).cloned()
}

/// The pod status kubelet writes, with one container in `state`.
pub fn status(run: &PodRun, pod: &Value, phase: &str, state: Value, ready: bool) -> Value {
    let c = &pod["spec"]["containers"][0];
    let t = now();
    let cond = |ty: &str, ok: bool, reason: &str| {
        let mut v = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": t});
        if !ok && !reason.is_empty() {
            v["reason"] = json!(reason);
        }
        v
    };
    let ended = matches!(phase, "Succeeded" | "Failed");
    let not_ready = if ended {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let started = state.get("running").is_some();
    json!({"status": {"phase": phase, "hostIP": run.host_ip, "podIP": run.ip, "podIPs": [{"ip": run.ip}],
        "startTime": run.start,
        "conditions": [cond("PodReadyToStartContainers", !ended, ""), cond("Initialized", true, ""),
            cond("Ready", ready, not_ready), cond("ContainersReady", ready, not_ready), cond("PodScheduled", true, "")],
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
            "restartCount": 0, "started": started, "state": state}]}})
}

/// Records an event about the pod once.
fn event_once(sh: &Arc<Shared>, run: &PodRun, reason: &str, message: &str, type_: &str) {
    let key = format!("{reason}\n{message}");
    let first = lock(&sh.kubelet)
        .pods
        .get_mut(&run.uid)
        .is_some_and(|r| r.events.insert(key));
    if first {
        event(sh, &run.ns, "Pod", &run.name, reason, message, type_);
    }
}

/// The container waits (`ContainerCreating`, `ImagePullBackOff`, …): written when it changes.
fn wait(sh: &Arc<Shared>, run: &PodRun, pod: &Value, reason: &str, message: &str) {
    let key = format!("{reason}\n{message}");
    let changed = lock(&sh.kubelet)
        .pods
        .get_mut(&run.uid)
        .is_some_and(|r| std::mem::replace(&mut r.waiting, key.clone()) != key);
    if changed {
        let mut waiting = json!({"reason": reason});
        if !message.is_empty() {
            waiting["message"] = json!(message);
        }
        let st = status(run, pod, "Pending", json!({ "waiting": waiting }), false);
        let _ = sh
            .store
            .merge(&super::pods(), &run.ns, &run.name, &st, true);
    }
}

/// Mounts, image, environment; then the container starts.
fn try_start(sh: &Arc<Shared>, pod: &Value) {
    let uid = s(pod, "/metadata/uid");
    let Some(run) = run_of(sh, uid) else { return };
    if run.running {
        return;
    }
    let ns = run.ns.clone();
    let c = pod["spec"]["containers"][0].clone();
    let image = s(&c, "/image").to_string();
    // 1. Volumes.
    let mut files: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>> = BTreeMap::new();
    for vol in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let vname = s(vol, "/name").to_string();
        match volume_files(sh, &ns, vol) {
            Ok(f) => {
                files.insert(vname, f);
            }
            Err(why) => {
                wait(sh, &run, pod, "ContainerCreating", "");
                let msg = format!("MountVolume.SetUp failed for volume \"{vname}\" : {why}");
                event_once(sh, &run, "FailedMount", &msg, "Warning");
                return;
            }
        }
    }
    // 2. The image.
    if !pullable(&image) {
        event_once(
            sh,
            &run,
            "Pulling",
            &format!("Pulling image \"{image}\""),
            "Normal",
        );
        let failed = format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found");
        event_once(sh, &run, "Failed", &failed, "Warning");
        event_once(sh, &run, "Failed", "Error: ErrImagePull", "Warning");
        let back_off = format!("Back-off pulling image \"{image}\"");
        event_once(sh, &run, "BackOff", &back_off, "Normal");
        event_once(sh, &run, "Failed", "Error: ImagePullBackOff", "Warning");
        wait(sh, &run, pod, "ImagePullBackOff", &back_off);
        return;
    }
    // 3. The environment.
    let env = match environment(sh, &run, pod, &c) {
        Ok(env) => env,
        Err(why) => {
            event_once(sh, &run, "Failed", &format!("Error: {why}"), "Warning");
            wait(sh, &run, pod, "CreateContainerConfigError", &why);
            return;
        }
    };
    // 4. The command, expanded, with the pod's own address for k6's REST API.
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let mut argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .map(|a| expand(a.as_str().unwrap_or(""), &vars))
        .collect();
    for (i, a) in argv.clone().iter().enumerate() {
        if let Some(port) = a.strip_prefix("--address=0.0.0.0:") {
            argv[i] = format!("--address={}:{port}", run.ip);
        } else if a == "--address" && argv.get(i + 1).is_some_and(|n| n.starts_with("0.0.0.0:")) {
            argv[i + 1] = argv[i + 1].replacen("0.0.0.0", &run.ip, 1);
        }
    }
    {
        let mut st = lock(&sh.kubelet);
        let Some(r) = st.pods.get_mut(uid) else {
            return;
        };
        r.running = true;
        r.started_at = now();
    }
    let Some(run) = run_of(sh, uid) else { return };
    if pod["metadata"]["labels"]["runner"] == "true" {
        *lock(&sh.started) += 1;
    }
    if sh.opts.synthetic.is_some() {
        running(sh, &run, pod);
        synthetic::start(sh, &run, pod, &argv);
        return;
    }
    let dir = process::pod_dir(&sh.work, &ns, &run.name);
    let mut mounts = Vec::new();
    for vm in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = s(vm, "/name");
        let Some(content) = files.get(vname) else {
            continue;
        };
        let vdir = dir.join("volumes").join(vname);
        if !vdir.exists() {
            if let Err(e) = process::write_files(&vdir, content.as_ref()) {
                return start_error(sh, &run, pod, &e);
            }
        }
        let sub = s(vm, "/subPath");
        mounts.push(process::Mount {
            src: if sub.is_empty() {
                vdir.clone()
            } else {
                vdir.join(sub)
            },
            target: PathBuf::from(s(vm, "/mountPath")),
            read_only: vm["readOnly"].as_bool() == Some(true) || content.is_some(),
        });
    }
    let mut env = env;
    let host = match s(pod, "/spec/hostname") {
        "" => run.name.clone(),
        h => h.to_string(),
    };
    env.insert(0, ("HOSTNAME".into(), host));
    match process::spawn(sh, &ns, &run.name, &dir, &argv, &env, &mounts) {
        Ok(child) => {
            running(sh, &run, pod);
            process::wait(sh, child, run, pod.clone());
        }
        Err(e) => start_error(sh, &run, pod, &e),
    }
}

fn running(sh: &Arc<Shared>, run: &PodRun, pod: &Value) {
    let st = status(
        run,
        pod,
        "Running",
        json!({"running": {"startedAt": run.started_at}}),
        true,
    );
    let _ = sh
        .store
        .merge(&super::pods(), &run.ns, &run.name, &st, true);
    if sh.opts.synthetic.is_none() {
        let c = &pod["spec"]["containers"][0];
        let (image, name) = (s(c, "/image"), s(c, "/name"));
        let pulled = format!("Container image \"{image}\" already present on machine");
        event_once(sh, run, "Pulled", &pulled, "Normal");
        event_once(
            sh,
            run,
            "Created",
            &format!("Created container: {name}"),
            "Normal",
        );
        event_once(
            sh,
            run,
            "Started",
            &format!("Started container {name}"),
            "Normal",
        );
    }
    if let Some(run) = run_of(sh, &run.uid) {
        cluster::pod_has_ip(sh, &run);
    }
}

/// The container could not start (an executable that is not there): exit code 128.
fn start_error(sh: &Arc<Shared>, run: &PodRun, pod: &Value, why: &str) {
    let state = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": why,
        "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now()}});
    let st = status(run, pod, "Failed", state, false);
    let _ = sh
        .store
        .merge(&super::pods(), &run.ns, &run.name, &st, true);
    event_once(sh, run, "Failed", &format!("Error: {why}"), "Warning");
    cluster::pod_ended(sh, pod, false);
}

/// The container ended with `code`: the pod's final status, the Job's, and (if the options
/// say so) the node gone with the pod's log.
pub fn finished(sh: &Arc<Shared>, run: &PodRun, pod: &Value, code: i32) {
    if sh.store.get(&super::pods(), &run.ns, &run.name).is_none() {
        return;
    }
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let state = json!({"terminated": {"exitCode": code, "reason": reason,
        "startedAt": run.started_at, "finishedAt": now(), "containerID": format!("containerd://{}", run.uid)}});
    let st = status(run, pod, phase, state, false);
    // The node goes with the pod's end: its log is unreadable by the time anyone sees it end.
    let testrun = s(pod, "/metadata/labels/k6_cr");
    let index = s(pod, "/metadata/labels/job-name")
        .strip_prefix(testrun)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|i| i.parse::<u32>().ok());
    if pod["metadata"]["labels"]["runner"] == "true"
        && index.is_some_and(|i| sh.opts.node_gone_after_end.contains(&i))
    {
        sh.store.fail_log(
            &run.ns,
            &run.name,
            &format!("Get \"https://{}:10250/containerLogs/{}/{}/k6\": dial tcp {}:10250: connect: no route to host", run.host_ip, run.ns, run.name, run.host_ip),
        );
    }
    let _ = sh
        .store
        .merge(&super::pods(), &run.ns, &run.name, &st, true);
    cluster::pod_ended(sh, pod, code == 0);
}
