//! Synthetic containers, for benchmarks of perfsync itself (`OperatorOptions::synthetic`): no
//! process at all. The initializer prints a fixed `k6 inspect` output and succeeds; a runner
//! is Running and paused until the starter "resumes" the addresses its `curl` command names,
//! then after `duration` ends with exit code 0 and a log holding one `PERFSYNC_SUMMARY` line
//! with a small valid k6 summary. Everything else the stand-in does (stages, Jobs, Services,
//! scheduling, image and Secret failures) is the same as with real k6.

use super::kubelet::{self, PodRun};
use super::{lock, process, s, Shared};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
pub struct State {
    /// Paused runners by pod IP.
    paused: BTreeMap<String, Arc<Notify>>,
    tasks: BTreeMap<String, tokio::task::AbortHandle>,
    stopped: bool,
}

/// What the synthetic initializer prints: `k6 inspect --execution-requirements` of a script
/// with up to 1000 VUs.
pub fn inspect_output(duration: Duration) -> String {
    json!({"paused": null, "vus": 1000, "scenarios": {"default": {"executor": "constant-vus",
        "vus": 1000, "duration": format!("{}ms", duration.as_millis())}},
        "totalDuration": format!("{}ms", duration.as_millis() + 30_000), "maxVUs": 1000})
    .to_string()
}

/// A small k6 end-of-test summary, as perfsync's entry script prints it.
pub fn summary(duration: Duration, instance: u32) -> Value {
    let secs = duration.as_secs_f64().max(0.001);
    let count = 100 + u64::from(instance);
    let rate = count as f64 / secs;
    let trend =
        json!({"avg": 12.5, "min": 1.0, "med": 11.0, "max": 48.0, "p(90)": 20.0, "p(95)": 25.0});
    json!({
        "metrics": {
            "http_reqs": {"type": "counter", "contains": "default", "values": {"count": count, "rate": rate}},
            "iterations": {"type": "counter", "contains": "default", "values": {"count": count, "rate": rate}},
            "http_req_duration": {"type": "trend", "contains": "time", "values": trend},
            "http_req_duration{expected_response:true}": {"type": "trend", "contains": "time", "values": trend},
            "http_req_failed": {"type": "rate", "contains": "default", "values": {"rate": 0.0, "passes": 0, "fails": count}},
            "checks": {"type": "rate", "contains": "default", "values": {"rate": 1.0, "passes": count, "fails": 0}},
            "vus_max": {"type": "gauge", "contains": "default", "values": {"value": 1, "min": 1, "max": 1}},
            "data_sent": {"type": "counter", "contains": "data", "values": {"count": count * 80, "rate": rate * 80.0}},
            "data_received": {"type": "counter", "contains": "data", "values": {"count": count * 900, "rate": rate * 900.0}}
        },
        "root_group": {"name": "", "path": "", "id": "d41d8cd98f00b204e9800998ecf8427e", "groups": [], "checks": []},
        "options": {"summaryTrendStats": ["avg", "min", "med", "max", "p(90)", "p(95)"], "summaryTimeUnit": "", "noColor": true},
        "state": {"isStdOutTTY": false, "isStdErrTTY": false, "testRunDurationMs": duration.as_millis() as f64}
    })
}

fn write_log(sh: &Arc<Shared>, run: &PodRun, text: &str) {
    let dir = process::pod_dir(&sh.work, &run.ns, &run.name);
    let _ = std::fs::create_dir_all(&dir);
    let log = dir.join("log");
    let _ = std::fs::write(&log, text);
    sh.store.set_log(&run.ns, &run.name, &log);
}

/// Runs the synthetic container of `pod` (its role from its labels).
pub fn start(sh: &Arc<Shared>, run: &PodRun, pod: &Value, argv: &[String]) {
    let duration = sh
        .opts
        .synthetic
        .as_ref()
        .map(|o| o.duration)
        .unwrap_or_default();
    let testrun = s(pod, "/metadata/labels/k6_cr");
    let job = s(pod, "/metadata/labels/job-name");
    let (sh2, run2, pod2) = (sh.clone(), run.clone(), pod.clone());
    let task = if pod["metadata"]["labels"]["runner"] == "true" {
        let instance = job
            .strip_prefix(testrun)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|i| i.parse().ok())
            .unwrap_or(1);
        let resume = Arc::new(Notify::new());
        lock(&sh.synthetic)
            .paused
            .insert(run.ip.clone(), resume.clone());
        write_log(sh, run, "");
        tokio::spawn(async move {
            resume.notified().await;
            tokio::time::sleep(duration).await;
            let line = format!("PERFSYNC_SUMMARY {}\n", summary(duration, instance));
            end(&sh2, &run2, &pod2, &line);
        })
    } else if job == format!("{testrun}-initializer") {
        let out = inspect_output(duration);
        tokio::spawn(async move { end(&sh2, &run2, &pod2, &out) })
    } else {
        // The starter (or anything else): resume every address its command names.
        let script = argv.join(" ");
        let mut out = String::new();
        for part in script.split("http://").skip(1) {
            let host = part.split(':').next().unwrap_or("");
            let resumed = lock(&sh.synthetic).paused.remove(host);
            let code = match resumed {
                Some(n) => {
                    n.notify_one();
                    200
                }
                None => 0,
            };
            out.push_str(&format!(
                "{{\"http_code\":{code},\"url\":\"http://{host}:6565/v1/status\"}}\n"
            ));
        }
        tokio::spawn(async move { end(&sh2, &run2, &pod2, &out) })
    };
    lock(&sh.synthetic)
        .tasks
        .insert(run.uid.clone(), task.abort_handle());
}

fn end(sh: &Arc<Shared>, run: &PodRun, pod: &Value, log: &str) {
    {
        let mut st = lock(&sh.synthetic);
        st.tasks.remove(&run.uid);
        if st.stopped {
            return;
        }
    }
    write_log(sh, run, log);
    kubelet::finished(sh, run, pod, 0);
}

/// A deleted pod: its synthetic container stops.
pub fn deleted(sh: &Arc<Shared>, uid: &str) {
    if let Some(t) = lock(&sh.synthetic).tasks.remove(uid) {
        t.abort();
    }
}

pub fn stop_all(sh: &Arc<Shared>) {
    let mut st = lock(&sh.synthetic);
    st.stopped = true;
    for (_, t) in std::mem::take(&mut st.tasks) {
        t.abort();
    }
}
