//! A stand-in for the k6-operator, inside the Kubernetes API test server: for each TestRun it
//! walks the stages, creates the runner Jobs and pods with the operator's names and labels,
//! runs the real k6 binary once per runner with the operator's execution-segment arguments,
//! and gives each pod k6's real exit code and log. Each runner gets a mount namespace of its
//! own in which the ConfigMap volumes are bind-mounted where the pod spec mounts them
//! (`/test/` for the script, the runner's `volumeMounts` for the rest), as kubelet would.

#![allow(dead_code)]

use super::kube_api::{Coll, Store};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runner images the stand-in cannot "pull": their pods wait in `ImagePullBackOff`.
pub const UNPULLABLE: &str = "registry.invalid/k6:none";

pub struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    /// Runner processes by pod name (process group ids).
    pub processes: Arc<Mutex<BTreeMap<String, i32>>>,
    /// How many runner processes were ever started.
    pub started: Arc<Mutex<u32>>,
    /// How many times a TestRun of each name was taken up (a duplicate run shows as 2).
    pub testruns: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for pgid in self
            .processes
            .lock()
            .map(|p| p.values().copied().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            // SAFETY: kills the runner's own process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn testruns() -> Coll {
    Coll::new("k6.io", "testruns")
}
fn pods() -> Coll {
    Coll::new("", "pods")
}
fn jobs() -> Coll {
    Coll::new("batch", "jobs")
}

fn set_stage(store: &Store, ns: &str, name: &str, stage: &str, message: Option<&str>) -> bool {
    let mut patch = json!({"status": {"stage": stage}});
    if let Some(m) = message {
        patch["status"]["conditions"] = json!([{"type": "TestRunRunning", "status": "False", "reason": "Error", "message": m, "lastTransitionTime": now()}]);
    }
    store.merge(&testruns(), ns, name, &patch, true).is_ok()
}

fn owner(obj: &Value, kind: &str, api_version: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

/// The execution segments the operator hands its runners.
fn segments(n: u32) -> Vec<(String, String)> {
    let at = |i: u32| match i {
        0 => "0".to_string(),
        i if i == n => "1".to_string(),
        i => format!("{i}/{n}"),
    };
    let seq = (0..=n).map(at).collect::<Vec<_>>().join(",");
    (0..n)
        .map(|i| (format!("{}:{}", at(i), at(i + 1)), seq.clone()))
        .collect()
}

impl Operator {
    pub fn start(store: Arc<Store>, work: PathBuf) -> Operator {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let processes: Arc<Mutex<BTreeMap<String, i32>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let started = Arc::new(Mutex::new(0));
        let taken_up: Arc<Mutex<BTreeMap<String, u32>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let (procs, st, count, taken) = (
            processes.clone(),
            store.clone(),
            started.clone(),
            taken_up.clone(),
        );
        let mut events = store.events.subscribe();
        tokio::spawn(async move {
            let mut handled: BTreeSet<String> = BTreeSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    e = events.recv() => {
                        if let Ok(e) = e {
                            // A deleted runner pod: kubelet stops its container.
                            if e.kind == "DELETED" && e.coll == pods() {
                                let name = e.object["metadata"]["name"].as_str().unwrap_or("").to_string();
                                if let Some(pgid) = procs.lock().ok().and_then(|mut p| p.remove(&name)) {
                                    // SAFETY: signals the runner's own process group.
                                    unsafe { libc::kill(-pgid, libc::SIGTERM) };
                                    tokio::spawn(async move {
                                        tokio::time::sleep(Duration::from_secs(3)).await;
                                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                                    });
                                }
                            }
                        }
                    }
                    _ = tick.tick() => {}
                }
                for tr in st.list(&testruns(), None, "") {
                    let uid = tr["metadata"]["uid"].as_str().unwrap_or("").to_string();
                    if tr.pointer("/status/stage").is_some() || !handled.insert(uid) {
                        continue;
                    }
                    if let (Some(name), Ok(mut t)) = (tr["metadata"]["name"].as_str(), taken.lock())
                    {
                        *t.entry(name.to_string()).or_default() += 1;
                    }
                    let (st, procs, work, count) =
                        (st.clone(), procs.clone(), work.clone(), count.clone());
                    tokio::spawn(async move { run_testrun(st, tr, procs, work, count).await });
                }
            }
        });
        Operator {
            stop,
            processes,
            started,
            testruns: taken_up,
        }
    }
}

fn configmap_files(
    store: &Store,
    ns: &str,
    name: &str,
    items: Option<&Vec<Value>>,
    dir: &Path,
) -> Result<(), String> {
    let cm = store
        .get(&Coll::new("", "configmaps"), ns, name)
        .ok_or_else(|| format!("ConfigMap {name} not found"))?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(d) = cm["data"].as_object() {
        for (k, v) in d {
            files.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
        }
    }
    if let Some(d) = cm["binaryData"].as_object() {
        for (k, v) in d {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .map_err(|e| format!("binaryData {k}: {e}"))?;
            files.insert(k.clone(), bytes);
        }
    }
    let placed: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("").to_string(),
                    i["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        None => files.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in placed {
        let bytes = files
            .get(&key)
            .ok_or_else(|| format!("ConfigMap {name} has no key {key}"))?;
        if path.contains("..") {
            return Err(format!("item path {path} escapes the volume"));
        }
        let target = dir.join(&path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn env_of(store: &Store, ns: &str, runner: &Value) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for e in runner["env"].as_array().cloned().unwrap_or_default() {
        let name = e["name"].as_str().unwrap_or("").to_string();
        if let Some(v) = e["value"].as_str() {
            out.push((name, v.to_string()));
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            let (sn, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            let secret = store
                .get(&Coll::new("", "secrets"), ns, sn)
                .ok_or_else(|| format!("CreateContainerConfigError: secret \"{sn}\" not found"))?;
            let v = secret["data"][key]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .ok_or_else(|| {
                    format!(
                        "CreateContainerConfigError: couldn't find key {key} in Secret {ns}/{sn}"
                    )
                })?;
            out.push((name, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(out)
}

/// Sets a pod waiting in `Pending` for `reason`.
fn pod_waiting(store: &Store, ns: &str, pod: &str, reason: &str, message: Option<&str>) {
    let mut waiting = json!({"reason": reason});
    if let Some(m) = message {
        waiting["message"] = json!(m);
    }
    let _ = store.merge(
        &pods(),
        ns,
        pod,
        &pod_status("Pending", json!({"waiting": waiting})),
        true,
    );
}

fn pod_status(phase: &str, state: Value) -> Value {
    json!({"status": {"phase": phase, "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": phase == "Running", "restartCount": 0, "state": state}]}})
}

async fn run_testrun(
    store: Arc<Store>,
    tr: Value,
    procs: Arc<Mutex<BTreeMap<String, i32>>>,
    work: PathBuf,
    count: Arc<Mutex<u32>>,
) {
    let ns = tr["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = tr["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = tr["spec"].clone();
    let step = Duration::from_millis(150);
    set_stage(&store, &ns, &name, "initialization", None);
    tokio::time::sleep(step).await;
    let n = spec["parallelism"].as_u64().unwrap_or(1).max(1) as u32;
    let cm_name = spec
        .pointer("/script/configMap/name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let file = spec
        .pointer("/script/configMap/file")
        .and_then(|v| v.as_str())
        .unwrap_or("test.js")
        .to_string();
    if store
        .get(&Coll::new("", "configmaps"), &ns, &cm_name)
        .is_none()
    {
        set_stage(
            &store,
            &ns,
            &name,
            "error",
            Some(&format!("ConfigMap {cm_name} not found")),
        );
        return;
    }
    // The operator refuses more runners than VUs.
    let args_now: Vec<&str> = spec["arguments"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let vus = args_now
        .windows(2)
        .find(|w| w[0] == "--vus")
        .and_then(|w| w[1].parse::<u32>().ok());
    if vus.is_some_and(|v| n > v) {
        set_stage(
            &store,
            &ns,
            &name,
            "error",
            Some("number of instances > number of VUs"),
        );
        return;
    }
    if file.contains('/') {
        set_stage(
            &store,
            &ns,
            &name,
            "error",
            Some("script file must be a bare file name"),
        );
        return;
    }
    set_stage(&store, &ns, &name, "initialized", None);
    tokio::time::sleep(step).await;
    let runner = spec["runner"].clone();
    let mut pod_names = Vec::new();
    for i in 1..=n {
        let Some(tr_now) = store.get(&testruns(), &ns, &name) else {
            return;
        };
        let labels = json!({"app": "k6", "k6_cr": name, "runner": "true"});
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("{name}-{i}"), "labels": labels, "ownerReferences": owner(&tr_now, "TestRun", "k6.io/v1alpha1")},
            "spec": {"backoffLimit": 0}});
        let Ok(job) = store.create(&jobs(), &ns, job) else {
            return;
        };
        let mut pod_labels = labels.clone();
        pod_labels["job-name"] = json!(format!("{name}-{i}"));
        if let Some(extra) = runner
            .pointer("/metadata/labels")
            .and_then(|l| l.as_object())
        {
            for (k, v) in extra {
                pod_labels[k] = v.clone();
            }
        }
        let pod_name = format!("{name}-{i}-{}", fastrand::u32(10000..99999));
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "labels": pod_labels, "ownerReferences": owner(&job, "Job", "batch/v1")},
            "spec": {"containers": [{"name": "k6", "image": runner["image"]}]}});
        if store.create(&pods(), &ns, pod).is_err() {
            return;
        }
        pod_waiting(&store, &ns, &pod_name, "ContainerCreating", None);
        pod_names.push((i, pod_name));
    }
    set_stage(&store, &ns, &name, "created", None);
    tokio::time::sleep(step).await;
    if runner["image"].as_str() == Some(UNPULLABLE) {
        for (_, p) in &pod_names {
            pod_waiting(
                &store,
                &ns,
                p,
                "ImagePullBackOff",
                Some("Back-off pulling image"),
            );
        }
        return;
    }
    let env = match env_of(&store, &ns, &runner) {
        Ok(e) => e,
        Err(why) => {
            for (_, p) in &pod_names {
                pod_waiting(&store, &ns, p, "CreateContainerConfigError", Some(&why));
            }
            return;
        }
    };
    let args: Vec<String> = spec["arguments"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let segs = segments(n);
    let mut handles = Vec::new();
    for (i, pod_name) in pod_names {
        let root = work.join(&pod_name);
        let test_dir = root.join("test");
        let mut mounts = vec![(test_dir.clone(), PathBuf::from("/test"))];
        if let Err(e) = configmap_files(&store, &ns, &cm_name, None, &test_dir) {
            set_stage(&store, &ns, &name, "error", Some(&e));
            return;
        }
        let volumes = runner["volumes"].as_array().cloned().unwrap_or_default();
        for vm in runner["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let vname = vm["name"].as_str().unwrap_or("");
            let Some(vol) = volumes.iter().find(|v| v["name"].as_str() == Some(vname)) else {
                continue;
            };
            let Some(cm) = vol.pointer("/configMap/name").and_then(|v| v.as_str()) else {
                continue;
            };
            let dir = root.join("volumes").join(vname);
            let _ = std::fs::create_dir_all(&dir);
            if let Err(e) = configmap_files(
                &store,
                &ns,
                cm,
                vol.pointer("/configMap/items").and_then(|v| v.as_array()),
                &dir,
            ) {
                pod_waiting(
                    &store,
                    &ns,
                    &pod_name,
                    "CreateContainerConfigError",
                    Some(&e),
                );
                return;
            }
            mounts.push((
                dir,
                PathBuf::from(vm["mountPath"].as_str().unwrap_or("/mnt")),
            ));
        }
        let mut script = String::new();
        for (src, dst) in &mounts {
            script.push_str(&format!(
                "mkdir -p '{}' && mount --bind '{}' '{}' && ",
                dst.display(),
                src.display(),
                dst.display()
            ));
        }
        script.push_str("exec \"$@\"");
        let log = root.join("log");
        let Ok(out) = std::fs::File::create(&log) else {
            return;
        };
        let Ok(err) = out.try_clone() else { return };
        store.set_log(&ns, &pod_name, &log);
        let (seg, seq) = segs[(i - 1) as usize].clone();
        let mut cmd = std::process::Command::new("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            "k6",
            "run",
            "--quiet",
            "--no-usage-report",
            "--no-color",
        ])
        .args(&args)
        .arg(format!("/test/{file}"))
        .args([
            "--tag",
            &format!("instance_id={i}"),
            "--tag",
            &format!("testrun_name={name}"),
        ]);
        if n > 1 {
            cmd.args([
                "--execution-segment",
                &seg,
                "--execution-segment-sequence",
                &seq,
            ]);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &root)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&root)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = match tokio::process::Command::from(cmd).spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = store.merge(&pods(), &ns, &pod_name, &pod_status("Failed", json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}})), true);
                continue;
            }
        };
        if let (Some(pid), Ok(mut p)) = (child.id(), procs.lock()) {
            p.insert(pod_name.clone(), pid as i32);
        }
        if let Ok(mut c) = count.lock() {
            *c += 1;
        }
        let _ = store.merge(
            &pods(),
            &ns,
            &pod_name,
            &pod_status("Running", json!({"running": {"startedAt": now()}})),
            true,
        );
        let (store, ns, procs) = (store.clone(), ns.clone(), procs.clone());
        let job_name = format!("{name}-{i}");
        handles.push(tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().or_else(|| s.signal().map(|sig| 128 + sig))
            });
            let _ = procs.lock().map(|mut p| p.remove(&pod_name));
            let code = code.unwrap_or(137);
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            let reason = if code == 0 { "Completed" } else { "Error" };
            let _ = store.merge(&pods(), &ns, &pod_name, &pod_status(phase, json!({"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}})), true);
            let js = if code == 0 { json!({"status": {"succeeded": 1}}) } else { json!({"status": {"failed": 1}}) };
            let _ = store.merge(&jobs(), &ns, &job_name, &js, true);
        }));
    }
    set_stage(&store, &ns, &name, "started", None);
    for h in handles {
        let _ = h.await;
    }
    if set_stage(&store, &ns, &name, "stopped", None) {
        tokio::time::sleep(step).await;
        set_stage(&store, &ns, &name, "finished", None);
    }
}
