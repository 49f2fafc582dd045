//! The TestRun reconciler, stage by stage as the operator's (`testrun_controller.go`,
//! `k6_initialize.go`, `k6_create.go`, `k6_start.go`, `k6_finish.go`): its conditions, its rule
//! for which stage may follow which, and its silences (no message on `error`; a failed create
//! is logged and the stage stays).

use super::args::parse_cli;
use super::kube_api::Event;
use super::{
    cluster, initializer, jobs, lock, now, process, runners, s, services, starter, testruns, Shared,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct State {
    /// TestRuns (by uid) taken up, and deleted by `cleanup: post`.
    taken: BTreeSet<String>,
    cleaned: BTreeSet<String>,
}

/// Which TestRun an event concerns: its own, or the `k6_cr` label of a pod, Job or Service.
pub fn key_of(e: &Event) -> Option<(String, String)> {
    let name = match e.coll.resource.as_str() {
        "testruns" => s(&e.object, "/metadata/name"),
        "pods" | "jobs" | "services" => s(&e.object, "/metadata/labels/k6_cr"),
        _ => "",
    };
    (!name.is_empty()).then(|| (e.ns.clone(), name.to_string()))
}

/// Reconciles the TestRuns named (all when `None`), one at a time as the operator does.
pub async fn reconcile(sh: &Arc<Shared>, which: Option<BTreeSet<(String, String)>>) {
    let trs: Vec<Value> = match which {
        None => sh.store.list(&testruns(), None, ""),
        Some(keys) => keys
            .iter()
            .filter_map(|(ns, name)| sh.store.get(&testruns(), ns, name))
            .collect(),
    };
    for tr in trs {
        reconcile_one(sh, &tr).await;
    }
}

fn condition_reason(ty: &str, status: &str) -> String {
    match (ty, status) {
        ("TestRunRunning", "Unknown") | ("TeardownExecuted", "Unknown") => {
            "TestRunPreparation".into()
        }
        ("CloudTestRun", "Unknown") => "TestRunTypeUnknown".into(),
        _ => format!("{ty}{status}"),
    }
}

fn condition(status: &Value, ty: &str) -> Option<Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

fn is(status: &Value, ty: &str, value: &str) -> bool {
    condition(status, ty).is_some_and(|c| c["status"] == value)
}

/// Which stage may follow which (the operator's `SetIfNewer`).
fn may_follow(current: &str, proposed: &str) -> bool {
    match current {
        "" | "initialization" => true,
        "initialized" => !proposed.starts_with("init"),
        "created" => matches!(proposed, "started" | "finished" | "error" | "stopped"),
        "started" => matches!(proposed, "stopped" | "finished" | "error"),
        "stopped" => matches!(proposed, "finished" | "error"),
        _ => false,
    }
}

/// The operator's `UpdateStatus`: re-reads the TestRun, applies the proposed conditions and
/// stage where they are newer, and patches the status. Whether anything changed.
fn update_status(
    sh: &Shared,
    tr: &Value,
    stage: Option<&str>,
    conditions: &[(&str, &str)],
) -> bool {
    let (ns, name) = (s(tr, "/metadata/namespace"), s(tr, "/metadata/name"));
    let Some(current) = sh.store.get(&testruns(), ns, name) else {
        return false;
    };
    if current["metadata"]["uid"] != tr["metadata"]["uid"] {
        return false;
    }
    let mut status = match current.get("status") {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({}),
    };
    let mut changed = false;
    let t = now();
    for (ty, value) in conditions {
        let mut list = status["conditions"].as_array().cloned().unwrap_or_default();
        match list.iter_mut().find(|c| c["type"] == *ty) {
            Some(c) if c["status"] == *value || *value == "Unknown" => {}
            Some(c) => {
                *c = json!({"type": ty, "status": value, "lastTransitionTime": t, "reason": condition_reason(ty, value), "message": ""});
                changed = true;
            }
            None => {
                list.push(json!({"type": ty, "status": value, "lastTransitionTime": t, "reason": condition_reason(ty, value), "message": ""}));
                changed = true;
            }
        }
        status["conditions"] = Value::Array(list);
    }
    if let Some(stage) = stage {
        let now_stage = s(&status, "/stage").to_string();
        if now_stage != stage && may_follow(&now_stage, stage) {
            status["stage"] = json!(stage);
            changed = true;
        }
    }
    if !changed {
        return false;
    }
    match sh
        .store
        .merge(&testruns(), ns, name, &json!({ "status": status }), true)
    {
        Ok(_) => true,
        Err((_, e)) => {
            sh.say(format!(
                "{ns}/{name}: could not update status of custom resource: {}",
                s(&e, "/message")
            ));
            false
        }
    }
}

async fn reconcile_one(sh: &Arc<Shared>, tr: &Value) {
    let (ns, name, uid) = (
        s(tr, "/metadata/namespace").to_string(),
        s(tr, "/metadata/name").to_string(),
        s(tr, "/metadata/uid").to_string(),
    );
    let spec = &tr["spec"];
    let n = spec["parallelism"].as_i64().unwrap_or(0);
    if n < 1 {
        return;
    }
    let n = n as u32;
    let version = sh.opts.version;
    match s(tr, "/status/stage") {
        "" => {
            if !lock(&sh.controller).taken.insert(uid) {
                return;
            }
            *lock(&sh.testruns).entry(name.clone()).or_default() += 1;
            let (cli, invalid) = parse_cli(spec, version);
            if let Some(why) = invalid {
                sh.say(format!("{ns}/{name}: invalid TestRun: {why}"));
                update_status(sh, tr, Some("error"), &[]);
                return;
            }
            update_status(
                sh,
                tr,
                None,
                &[
                    ("CloudTestRun", "Unknown"),
                    ("TestRunRunning", "Unknown"),
                    ("TeardownExecuted", "False"),
                    ("CloudTestRunAborted", "False"),
                    ("CloudPLZTestRun", "False"),
                ],
            );
            let disabled = spec
                .pointer("/initializer/disabled")
                .and_then(|d| d.as_bool())
                == Some(true);
            if disabled && !cli.has_cloud_out {
                update_status(sh, tr, Some("initialized"), &[]);
                return;
            }
            if !update_status(sh, tr, Some("initialization"), &[]) {
                return;
            }
            let job = match initializer::job(tr, version, &cli) {
                Ok(j) => j,
                Err(e) => return sh.say(format!("{ns}/{name}: {e}")),
            };
            if let Err((_, e)) = sh.store.create(&jobs(), &ns, job) {
                sh.say(format!(
                    "{ns}/{name}: Failed to launch k6 test initializer: {}",
                    s(&e, "/message")
                ));
            }
        }
        "initialization" => {
            let Some(pod) = cluster::pod_of_job(sh, &ns, &initializer::job_name(&name)) else {
                return;
            };
            match s(&pod, "/status/phase") {
                "Failed" => {
                    sh.say(format!("{ns}/{name}: initializer job has failed"));
                    update_status(sh, tr, Some("error"), &[]);
                    return;
                }
                "Succeeded" => {}
                _ => return,
            }
            let pod_name = s(&pod, "/metadata/name");
            let log = process::pod_dir(&sh.work, &ns, pod_name).join("log");
            let inspect = std::fs::read_to_string(&log)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    serde_json::from_str::<Value>(&t)
                        .map_err(|e| format!("unable to unmarshal `{t}`: {e}"))
                });
            let inspect = match inspect {
                Ok(v) => v,
                Err(e) => {
                    sh.say(format!("{ns}/{name}: {e}"));
                    update_status(sh, tr, Some("error"), &[]);
                    return;
                }
            };
            let max_vus = inspect["maxVUs"].as_u64().unwrap_or(0);
            if max_vus < u64::from(n) {
                sh.say(format!("{ns}/{name}: number of instances > number of VUs (maxVUs {max_vus}, parallelism {n})"));
                update_status(sh, tr, Some("error"), &[]);
                return;
            }
            update_status(sh, tr, None, &[("CloudTestRun", "False")]);
            update_status(sh, tr, Some("initialized"), &[]);
        }
        "initialized" => create_runners(sh, tr, &ns, &name, n),
        "created" => start_runners(sh, tr, &ns, &name, n).await,
        "started" => {
            let finished = runner_jobs(sh, &ns, &name, n)
                .iter()
                .filter(|j| {
                    j.pointer("/status/active")
                        .and_then(|a| a.as_u64())
                        .unwrap_or(0)
                        == 0
                })
                .count();
            if finished < n as usize {
                return;
            }
            let status = tr.get("status").cloned().unwrap_or_default();
            if is(&status, "TestRunRunning", "True") {
                update_status(sh, tr, Some("stopped"), &[("TestRunRunning", "False")]);
            }
        }
        "stopped" => {
            update_status(sh, tr, Some("finished"), &[]);
        }
        "error" | "finished" => {
            if spec["cleanup"] == "post" && lock(&sh.controller).cleaned.insert(uid) {
                let _ = sh.store.delete(&testruns(), &ns, &name, false);
            }
        }
        other => sh.say(format!("{ns}/{name}: invalid status {other}")),
    }
}

/// The runner Jobs (the operator lists them by label `app=k6,k6_cr=<testrun>,runner=true`;
/// here they are read by name, which finds the same objects without scanning the store).
fn runner_jobs(sh: &Shared, ns: &str, name: &str, n: u32) -> Vec<Value> {
    (1..=n)
        .filter_map(|i| sh.store.get(&jobs(), ns, &runners::job_name(name, i)))
        .collect()
}

/// `CreateJobs`: a Job and a Service per runner, then `created`; a failed create stops there.
fn create_runners(sh: &Arc<Shared>, tr: &Value, ns: &str, name: &str, n: u32) {
    if sh
        .store
        .get(&jobs(), ns, &runners::job_name(name, 1))
        .is_some()
    {
        let status = tr.get("status").cloned().unwrap_or_default();
        let recent = condition(&status, "CloudTestRun")
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .is_some_and(|t| chrono::Utc::now().signed_duration_since(t).num_seconds() <= 30);
        if !is(&status, "CloudTestRun", "False") && !is(&status, "CloudTestRun", "True") || recent {
            return;
        }
        sh.say(format!(
            "{ns}/{name}: job with the name {} exists; make sure you've deleted your previous run",
            runners::job_name(name, 1)
        ));
        return;
    }
    for i in 1..=n {
        let job = match runners::job(tr, i, sh.opts.version) {
            Ok(j) => j,
            Err(e) => return sh.say(format!("{ns}/{name}: Failed to generate k6 test job: {e}")),
        };
        if let Err((_, e)) = sh.store.create(&jobs(), ns, job) {
            return sh.say(format!(
                "{ns}/{name}: Failed to launch k6 test: {}",
                s(&e, "/message")
            ));
        }
        if let Err((_, e)) = sh.store.create(&services(), ns, runners::service(tr, i)) {
            return sh.say(format!(
                "{ns}/{name}: Failed to launch k6 test services: {}",
                s(&e, "/message")
            ));
        }
    }
    update_status(sh, tr, Some("created"), &[]);
}

/// k6's REST API answers on `host`: `GET /v1/status` below 400.
async fn status_ok(host: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut c = tokio::net::TcpStream::connect((host, 6565)).await.ok()?;
        let req =
            format!("GET /v1/status HTTP/1.1\r\nHost: {host}:6565\r\nConnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64];
        let n = c.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        head.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(code)) if code < 400)
}

/// `StartJobs` (which lists runner pods and Services by label; here: by name, see
/// [`runner_jobs`]): once every runner pod is Running and every runner Service answers, the
/// starter Job, and `started` at once.
async fn start_runners(sh: &Arc<Shared>, tr: &Value, ns: &str, name: &str, n: u32) {
    let running = (1..=n)
        .filter_map(|i| cluster::pod_of_job(sh, ns, &runners::job_name(name, i)))
        .filter(|p| s(p, "/status/phase") == "Running")
        .count();
    if running != n as usize {
        return;
    }
    let mut hosts = Vec::new();
    let services = (1..=n).filter_map(|i| {
        sh.store
            .get(&services(), ns, &runners::service_name(name, i))
    });
    for svc in services.collect::<Vec<_>>() {
        let ip = s(&svc, "/spec/clusterIP").to_string();
        let ready = !ip.is_empty() && (sh.opts.synthetic.is_some() || status_ok(&ip).await);
        if !ready {
            sh.say(format!(
                "{ns}/{name}: {} service is not ready",
                s(&svc, "/metadata/name")
            ));
            return;
        }
        hosts.push(ip);
    }
    let starter_name = starter::job_name(name);
    if sh.store.get(&jobs(), ns, &starter_name).is_none() {
        let job = starter::job(tr, &hosts, sh.opts.version);
        match sh.store.create(&jobs(), ns, job) {
            Ok(_) => {}
            Err((409, _)) => {}
            Err((_, e)) => {
                return sh.say(format!(
                    "{ns}/{name}: Failed to launch k6 test starter: {}",
                    s(&e, "/message")
                ));
            }
        }
    }
    update_status(sh, tr, Some("started"), &[("TestRunRunning", "True")]);
}
