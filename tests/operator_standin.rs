//! The k6-operator stand-in (`tests/support/operator/`) against the real k6: each test creates
//! objects in the Kubernetes API test server's store directly (no perfsync involved) and checks
//! that the stand-in does what the real operator and cluster do, failures included.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::kube_api::{Coll, KubeApi, Store};
use support::operator::{
    argv, expand, parse_cli, Operator, OperatorOptions, SyntheticRunners, Version, UNPULLABLE,
};
use support::parts::{demo_target, k6_available};

const NS: &str = "loadtests";

struct Ground {
    api: KubeApi,
    op: Operator,
    _dir: tempfile::TempDir,
}

fn crd(version: &str) -> Option<String> {
    let path = format!(
        "{}/../shared/reference/k6-operator/k6.io_testruns.{version}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).ok()
}

async fn ground(opts: OperatorOptions) -> Ground {
    let api = KubeApi::start().await;
    match crd("v1.6.0") {
        Some(yaml) => api.install_crd(&yaml),
        None => eprintln!("no TestRun CRD beside the repository: TestRuns are not pruned"),
    }
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::start_with(api.store.clone(), dir.path().join("operator"), opts);
    Ground { api, op, _dir: dir }
}

fn skip() -> bool {
    if k6_available() {
        return false;
    }
    eprintln!("k6 is not installed: skipping");
    true
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", fastrand::u32(10000..99999))
}

impl Ground {
    fn store(&self) -> &Arc<Store> {
        &self.api.store
    }

    fn configmap(&self, name: &str, files: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = files.iter().copied().collect();
        self.store()
            .create(
                &Coll::new("", "configmaps"),
                NS,
                json!({"metadata": {"name": name}, "data": data}),
            )
            .expect("ConfigMap");
    }

    fn secret(&self, name: &str, data: &[(&str, &str)]) {
        use base64::Engine;
        let data: BTreeMap<&str, String> = data
            .iter()
            .map(|(k, v)| (*k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        self.store()
            .create(
                &Coll::new("", "secrets"),
                NS,
                json!({"metadata": {"name": name}, "data": data}),
            )
            .expect("Secret");
    }

    /// A TestRun running `script.js` of ConfigMap `cm`; `spec` is merged over that.
    fn testrun(&self, name: &str, cm: &str, spec: Value) {
        let mut full =
            json!({"script": {"configMap": {"name": cm, "file": "script.js"}}, "parallelism": 1});
        support::kube_api::merge_patch(&mut full, &spec);
        self.store()
            .create(
                &Coll::new("k6.io", "testruns"),
                NS,
                json!({"apiVersion": "k6.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name}, "spec": full}),
            )
            .expect("TestRun");
    }

    fn stage(&self, name: &str) -> String {
        self.store()
            .get(&Coll::new("k6.io", "testruns"), NS, name)
            .and_then(|t| {
                t.pointer("/status/stage")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    fn list(&self, group: &str, resource: &str, selector: &str) -> Vec<Value> {
        self.store()
            .list(&Coll::new(group, resource), Some(NS), selector)
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.list("", "pods", selector)
    }

    fn pod(&self, job: &str) -> Option<Value> {
        self.pods(&format!("job-name={job}")).into_iter().next()
    }

    fn log(&self, pod: &Value) -> String {
        let name = pod["metadata"]["name"].as_str().unwrap();
        std::fs::read_to_string(self.op.pod_dir(NS, name).join("log")).unwrap_or_default()
    }

    fn events_about(&self, pod: &Value) -> Vec<(String, String)> {
        let name = pod["metadata"]["name"].as_str().unwrap();
        self.list("", "events", "")
            .iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Every stage the TestRun goes through, in order, from now on.
    fn record_stages(&self, name: &str) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let (mut events, out, name) = (
            self.store().events.subscribe(),
            seen.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if e.coll.resource != "testruns" || e.object["metadata"]["name"] != name.as_str() {
                    continue;
                }
                let stage = e
                    .object
                    .pointer("/status/stage")
                    .and_then(|s| s.as_str())
                    .unwrap_or("");
                let mut v = out.lock().unwrap();
                if !stage.is_empty() && v.last().map(String::as_str) != Some(stage) {
                    v.push(stage.to_string());
                }
            }
        });
        seen
    }
}

/// Polls `check` until it gives a value, or panics after `secs` with `what`.
async fn until<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(|p| p.as_str())
        .unwrap_or("")
}

fn waiting(pod: &Value) -> (String, String) {
    let w = pod
        .pointer("/status/containerStatuses/0/state/waiting")
        .cloned()
        .unwrap_or_default();
    (
        w["reason"].as_str().unwrap_or("").to_string(),
        w["message"].as_str().unwrap_or("").to_string(),
    )
}

fn exit_code(pod: &Value) -> Option<i64> {
    pod.pointer("/status/containerStatuses/0/state/terminated/exitCode")
        .and_then(|c| c.as_i64())
}

/// The TestRun's status says nothing but its stage and conditions, all without a message.
fn no_message(g: &Ground, name: &str) {
    let tr = g
        .store()
        .get(&Coll::new("k6.io", "testruns"), NS, name)
        .unwrap();
    let status = tr["status"].as_object().unwrap();
    assert!(
        status.keys().all(|k| k == "stage" || k == "conditions"),
        "{status:?}"
    );
    for c in tr["status"]["conditions"].as_array().into_iter().flatten() {
        assert_eq!(c["message"], "", "{c}");
    }
}

/// k6's REST API of a runner pod: `paused`, or `None` when it does not answer.
async fn k6_paused(pod: &Value) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = pod.pointer("/status/podIP")?.as_str()?;
    let mut c = tokio::net::TcpStream::connect((ip, 6565)).await.ok()?;
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: {ip}:6565\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (_, body) = text.split_once("\r\n\r\n")?;
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/data/attributes/paused")?.as_bool()
}

fn script_for(target: &str, options: &str) -> String {
    format!(
        "import http from 'k6/http';\nexport const options = {options};\nexport default function () {{ http.get('http://{target}/standin'); }}\n"
    )
}

const SMALL: &str = "{ vus: 1, iterations: 1 }";

#[test]
fn arguments_and_expansion_as_the_operator_has_them() {
    let spec = json!({"arguments": "--vus 2 --user-agent x -o cloud --tag a=b;touch /tmp/x"});
    let (cli, err) = parse_cli(&spec, Version::V1_6);
    assert_eq!(err, None);
    assert!(cli.has_cloud_out);
    assert_eq!(
        cli.archive_args,
        ["--vus", "2", "--tag", "a=b;touch", "/tmp/x"]
    );
    let (_, err) = parse_cli(&json!({"arguments": "script.js --vus 2"}), Version::V1_6);
    assert!(err.is_some_and(|e| e.contains("script.js")));
    let spec = json!({"arguments": "--tag  a", "args": ["--tag", "x (y)"]});
    assert_eq!(argv(&spec, Version::V1_6), ["--tag", "x (y)"]);
    assert_eq!(argv(&spec, Version::V1_5), ["--tag", "", "a"]);
    // kubelet's `$(VAR)`: defined names replaced, others kept, `$$` a literal `$`.
    let vars: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
    assert_eq!(
        expand("$(A)-$(B)-$$(A)-${A}-$(", &vars),
        "x-$(B)-$(A)-${A}-$("
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_trend_stats_with_parentheses_break_the_initializer_shell() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap("cm", &[("script.js", &script_for(&target, SMALL))]);
    g.testrun(
        "trend",
        "cm",
        json!({"arguments": "--summary-trend-stats=avg,p(95)"}),
    );
    let end = until(60, "an end", || {
        let st = g.stage("trend");
        matches!(st.as_str(), "error" | "started" | "finished").then_some(st)
    })
    .await;
    assert_eq!(end, "error");
    let pod = g.pod("trend-initializer").expect("initializer pod");
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(exit_code(&pod), Some(2), "dash exits 2 on a syntax error");
    let log = g.log(&pod);
    assert!(log.contains("Syntax error: \"(\" unexpected"), "{log}");
    no_message(&g, "trend");
    assert!(
        g.list("batch", "jobs", "runner=true").is_empty(),
        "no runner Job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_pasted_into_the_initializer_shell() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap("cm", &[("script.js", &script_for(&target, SMALL))]);
    let marker = unique("PWNED");
    g.testrun(
        "inject",
        "cm",
        json!({"arguments": format!("--tag note=x;touch /tmp/{marker}")}),
    );
    let pod = until(60, "initializer ended", || {
        g.pod("inject-initializer")
            .filter(|p| matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await;
    let name = pod["metadata"]["name"].as_str().unwrap();
    let planted = g.op.pod_dir(NS, name).join("tmp").join(&marker);
    assert!(
        planted.exists(),
        "the injected command ran in the pod: {}",
        planted.display()
    );
    assert!(
        !PathBuf::from("/tmp").join(&marker).exists(),
        "the pod's /tmp is its own"
    );
    let cmd = pod["spec"]["containers"][0]["command"].clone();
    assert!(cmd[2]
        .as_str()
        .unwrap()
        .contains(&format!("--tag note=x;touch /tmp/{marker}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_goes_through_every_stage_paused_until_the_starter() {
    if skip() {
        return;
    }
    // One node's CPU is taken by a pod of someone else: runner 2 waits for it, runner 1 is
    // Running and paused meanwhile.
    let g = ground(OperatorOptions::default()).await;
    g.store()
        .create(
            &Coll::new("", "pods"),
            NS,
            json!({"metadata": {"name": "blocker"}, "spec": {"containers": [{"name": "c", "image": "busybox",
                "command": ["sleep", "60"], "resources": {"requests": {"cpu": "6"}}}]}}),
        )
        .unwrap();
    until(10, "blocker running", || {
        g.pods("")
            .iter()
            .find(|p| p["metadata"]["name"] == "blocker" && phase(p) == "Running")
            .cloned()
    })
    .await;
    let target = demo_target().await.to_string();
    g.configmap("cm", &[("script.js", &format!("import http from 'k6/http';\nexport const options = {{ vus: 2, iterations: 4 }};\nexport default function () {{ http.get(__ENV.TARGET); }}\n"))]);
    let stages = g.record_stages("clean");
    g.testrun(
        "clean",
        "cm",
        json!({"parallelism": 2, "arguments": "--tag kind=clean",
            "runner": {"env": [{"name": "TARGET", "value": format!("http://{target}/clean")}],
                "resources": {"requests": {"cpu": "6"}}, "metadata": {"labels": {"team": "qa"}}}}),
    );
    let first = until(60, "runner 1 running", || {
        g.pod("clean-1").filter(|p| phase(p) == "Running")
    })
    .await;
    let mut paused = None;
    for _ in 0..100 {
        paused = k6_paused(&first).await;
        if paused.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(paused, Some(true), "runner 1 waits paused");
    let second = g.pod("clean-2").expect("runner 2's pod");
    assert_eq!(second["status"]["conditions"][0]["reason"], "Unschedulable");
    assert_eq!(g.stage("clean"), "created");
    assert!(g
        .list("batch", "jobs", "")
        .iter()
        .all(|j| j["metadata"]["name"] != "clean-starter"));
    assert_eq!(first["metadata"]["labels"]["team"], "qa");
    assert_eq!(first["metadata"]["labels"]["runner"], "true");
    assert_eq!(first["metadata"]["labels"]["k6_cr"], "clean");
    let cmd: Vec<String> =
        serde_json::from_value(first["spec"]["containers"][0]["command"].clone()).unwrap();
    assert_eq!(
        cmd,
        [
            "k6",
            "run",
            "--quiet",
            "--execution-segment=0:1/2",
            "--execution-segment-sequence=0,1/2,1",
            "--tag",
            "kind=clean",
            "/test/script.js",
            "--address=0.0.0.0:6565",
            "--paused",
            "--tag",
            "instance_id=1",
            "--tag",
            "testrun_name=clean"
        ]
    );
    // The blocker goes: runner 2 is placed, the starter resumes both.
    g.store()
        .delete(&Coll::new("", "pods"), NS, "blocker", false)
        .unwrap();
    until(90, "stage finished", || {
        (g.stage("clean") == "finished").then_some(())
    })
    .await;
    assert_eq!(
        *stages.lock().unwrap(),
        [
            "initialization",
            "initialized",
            "created",
            "started",
            "stopped",
            "finished"
        ]
    );
    for job in ["clean-1", "clean-2"] {
        let pod = g.pod(job).unwrap();
        assert_eq!(phase(&pod), "Succeeded", "{pod}");
        assert_eq!(exit_code(&pod), Some(0));
        let svc = g
            .list("", "services", "")
            .into_iter()
            .find(|s| s["spec"]["selector"]["job-name"] == job);
        assert_eq!(svc.unwrap()["spec"]["clusterIP"], pod["status"]["podIP"]);
    }
    let starter = g.pod("clean-starter").unwrap();
    assert_eq!(phase(&starter), "Succeeded");
    assert_eq!(
        g.log(&starter).matches("\"http_code\":200").count(),
        2,
        "{}",
        g.log(&starter)
    );
    let init = g.pod("clean-initializer").unwrap();
    let inspect: Value = serde_json::from_str(&g.log(&init)).expect("inspect's JSON alone");
    assert_eq!(inspect["maxVUs"], 2);
    assert_eq!(*g.op.started.lock().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_throws_at_init_fails_the_initializer() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let boom = unique("boom");
    g.configmap(
        "cm",
        &[(
            "script.js",
            &format!("throw new Error('{boom}');\nexport default function () {{}}\n"),
        )],
    );
    g.testrun("throws", "cm", json!({}));
    until(60, "stage error", || {
        (g.stage("throws") == "error").then_some(())
    })
    .await;
    let pod = g.pod("throws-initializer").unwrap();
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(exit_code(&pod), Some(1));
    assert!(g.log(&pod).contains(&boom), "{}", g.log(&pod));
    no_message(&g, "throws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_runners_than_vus_is_an_error() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap("cm", &[("script.js", &script_for(&target, SMALL))]);
    g.testrun("wide", "cm", json!({"parallelism": 2}));
    until(60, "stage error", || {
        (g.stage("wide") == "error").then_some(())
    })
    .await;
    assert_eq!(phase(&g.pod("wide-initializer").unwrap()), "Succeeded");
    assert!(g.list("batch", "jobs", "runner=true").is_empty());
    assert!(g
        .op
        .log()
        .iter()
        .any(|l| l.contains("number of instances > number of VUs")));
    no_message(&g, "wide");
    // `cleanup: post`: the TestRun goes at `error`, and everything it owns with it.
    let stages = g.record_stages("tidy");
    g.testrun("tidy", "cm", json!({"parallelism": 2, "cleanup": "post"}));
    until(60, "TestRun deleted", || {
        let gone = g
            .store()
            .get(&Coll::new("k6.io", "testruns"), NS, "tidy")
            .is_none();
        (gone && !stages.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        stages.lock().unwrap().last().map(String::as_str),
        Some("error")
    );
    assert!(g.pods("k6_cr=tidy").is_empty());
    assert!(g.list("batch", "jobs", "k6_cr=tidy").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_too_long_for_its_jobs_leaves_the_run_stuck() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    g.configmap("cm", &[("script.js", "export default function () {}\n")]);
    let name = "a".repeat(60);
    g.testrun(&name, "cm", json!({}));
    until(10, "stage initialization", || {
        (g.stage(&name) == "initialization").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        g.stage(&name),
        "initialization",
        "the operator waits for an initializer that never comes"
    );
    assert!(g.pods(&format!("k6_cr={name}")).is_empty());
    let log = g.op.log();
    assert!(
        log.iter()
            .any(|l| l.contains("Failed to launch k6 test initializer")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_cannot_start_wait_as_in_a_cluster() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap("cm", &[("script.js", &script_for(&target, SMALL))]);
    g.secret("partial", &[("other", "x")]);
    let secret_env = |name: &str, key: &str| json!({"runner": {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]}});
    g.testrun("pull", "cm", json!({"runner": {"image": UNPULLABLE}}));
    g.testrun("nosecret", "cm", secret_env("absent", "token"));
    g.testrun("nokey", "cm", secret_env("partial", "token"));
    g.testrun("nocm", "absent-cm", json!({}));
    // The initializer copies the runner: it is the pod that waits.
    let pull = until(30, "image pull back-off", || {
        g.pod("pull-initializer")
            .filter(|p| waiting(p).0 == "ImagePullBackOff")
    })
    .await;
    assert_eq!(
        waiting(&pull).1,
        format!("Back-off pulling image \"{UNPULLABLE}\"")
    );
    let ev = g.events_about(&pull);
    assert!(ev.iter().any(|(r, _)| r == "BackOff"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Failed" && m.contains("Failed to pull image")),
        "{ev:?}"
    );
    let nosecret = until(30, "secret wait", || {
        g.pod("nosecret-initializer")
            .filter(|p| waiting(p).0 == "CreateContainerConfigError")
    })
    .await;
    assert_eq!(waiting(&nosecret).1, "secret \"absent\" not found");
    let nokey = until(30, "key wait", || {
        g.pod("nokey-initializer")
            .filter(|p| waiting(p).0 == "CreateContainerConfigError")
    })
    .await;
    assert_eq!(
        waiting(&nokey).1,
        format!("couldn't find key token in Secret {NS}/partial")
    );
    let nocm = until(30, "mount wait", || {
        g.pod("nocm-initializer")
            .filter(|p| waiting(p).0 == "ContainerCreating")
    })
    .await;
    let ev = g.events_about(&nocm);
    assert!(
        ev.contains(&("FailedMount".into(), "MountVolume.SetUp failed for volume \"k6-test-volume\" : configmap \"absent-cm\" not found".into())),
        "{ev:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in ["pull", "nosecret", "nokey", "nocm"] {
        assert_eq!(g.stage(name), "initialization", "{name} waits");
        assert_eq!(
            phase(&g.pod(&format!("{name}-initializer")).unwrap()),
            "Pending"
        );
    }
    // The Secret arrives: kubelet retries and the run goes on.
    g.secret("absent", &[("token", "sekret")]);
    until(60, "nosecret finished", || {
        (g.stage("nosecret") == "finished").then_some(())
    })
    .await;
    assert_eq!(*g.op.started.lock().unwrap(), 1);

    // With an initializer of its own, the runners are the ones that wait.
    g.testrun(
        "runnerpull",
        "cm",
        json!({"runner": {"image": UNPULLABLE}, "initializer": {"image": "grafana/k6:latest"}}),
    );
    let runner = until(60, "runner back-off", || {
        g.pod("runnerpull-1")
            .filter(|p| waiting(p).0 == "ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&runner), "Pending");
    assert_eq!(g.stage("runnerpull"), "created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpullable_starter_leaves_the_runners_paused() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap(
        "cm",
        &[(
            "script.js",
            &script_for(&target, "{ vus: 2, duration: '60s' }"),
        )],
    );
    g.testrun(
        "nostart",
        "cm",
        json!({"parallelism": 2, "starter": {"image": UNPULLABLE}}),
    );
    let starter = until(60, "starter back-off", || {
        g.pod("nostart-starter")
            .filter(|p| waiting(p).0 == "ImagePullBackOff")
    })
    .await;
    assert_eq!(starter["metadata"]["labels"]["k6_cr"], "nostart");
    assert!(starter["metadata"]["labels"].get("runner").is_none());
    assert_eq!(g.stage("nostart"), "started");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for job in ["nostart-1", "nostart-2"] {
        let pod = g.pod(job).unwrap();
        assert_eq!(phase(&pod), "Running");
        assert_eq!(k6_paused(&pod).await, Some(true), "{job} never resumed");
    }
    // Deleting the TestRun takes everything with it, processes included.
    g.store()
        .delete(&Coll::new("k6.io", "testruns"), NS, "nostart", false)
        .unwrap();
    assert!(g.pods("k6_cr=nostart").is_empty());
    until(15, "runner processes gone", || {
        g.op.processes.lock().unwrap().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_cannot_be_placed_leaves_the_others_paused() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    g.configmap(
        "cm",
        &[(
            "script.js",
            &script_for(&target, "{ vus: 3, iterations: 3 }"),
        )],
    );
    g.testrun(
        "big",
        "cm",
        json!({"parallelism": 3, "runner": {"resources": {"requests": {"cpu": "6"}}}}),
    );
    let unplaced = until(60, "an unschedulable runner", || {
        g.pods("k6_cr=big,runner=true")
            .into_iter()
            .find(|p| p.pointer("/status/conditions/0/reason") == Some(&json!("Unschedulable")))
    })
    .await;
    let cond = &unplaced["status"]["conditions"][0];
    assert_eq!(cond["type"], "PodScheduled");
    assert_eq!(cond["status"], "False");
    assert_eq!(
        cond["message"],
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    assert_eq!(phase(&unplaced), "Pending");
    assert!(unplaced["status"].get("containerStatuses").is_none());
    let ev = g.events_about(&unplaced);
    assert!(
        ev.contains(&(
            "FailedScheduling".into(),
            "0/2 nodes are available: 2 Insufficient cpu.".into()
        )),
        "{ev:?}"
    );
    let running = until(60, "two runners running", || {
        let r: Vec<Value> = g
            .pods("k6_cr=big,runner=true")
            .into_iter()
            .filter(|p| phase(p) == "Running")
            .collect();
        (r.len() == 2).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for pod in &running {
        assert_eq!(k6_paused(pod).await, Some(true));
    }
    assert_eq!(g.stage("big"), "created");
    let nodes: std::collections::BTreeSet<&str> = running
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "one runner per node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_args_are_passed_positionally() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions::default()).await;
    let target = demo_target().await.to_string();
    let script = format!(
        "import http from 'k6/http';\nif (__ENV.TOKEN !== 'sekret') {{ throw new Error('TOKEN is ' + __ENV.TOKEN); }}\nexport const options = {SMALL};\nexport default function () {{ http.get('http://{target}/args'); }}\n"
    );
    g.configmap("cm", &[("script.js", &script)]);
    g.secret("token", &[("token", "sekret")]);
    g.testrun(
        "args",
        "cm",
        json!({"args": ["--tag", "note=a (b); c", "--summary-trend-stats=avg,p(95)"],
            "runner": {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}}]}}),
    );
    until(60, "stage finished", || {
        (g.stage("args") == "finished").then_some(())
    })
    .await;
    let tr = g
        .store()
        .get(&Coll::new("k6.io", "testruns"), NS, "args")
        .unwrap();
    assert!(tr["spec"]["args"].is_array(), "stored under the v1.6 CRD");
    let init = g.pod("args-initializer").unwrap();
    assert_eq!(phase(&init), "Succeeded", "{}", g.log(&init));
    let cmd: Vec<String> =
        serde_json::from_value(init["spec"]["containers"][0]["command"].clone()).unwrap();
    assert!(cmd.contains(&"TOKEN=$(TOKEN)".to_string()), "{cmd:?}");
    assert!(cmd.contains(&"note=a (b); c".to_string()), "{cmd:?}");
    let runner = g.pod("args-1").unwrap();
    assert_eq!(exit_code(&runner), Some(0), "{}", g.log(&runner));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_5_gives_the_initializer_literal_env_values_only() {
    if skip() {
        return;
    }
    let g = ground(OperatorOptions {
        version: Version::V1_5,
        ..OperatorOptions::default()
    })
    .await;
    g.configmap(
        "cm",
        &[("script.js", "if (__ENV.TOKEN !== 'sekret') { throw new Error('TOKEN is [' + __ENV.TOKEN + ']'); }\nexport default function () {}\n")],
    );
    g.secret("token", &[("token", "sekret")]);
    let env = json!([{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}}]);
    g.testrun("old", "cm", json!({"runner": {"env": env}}));
    until(60, "stage error", || {
        (g.stage("old") == "error").then_some(())
    })
    .await;
    let init = g.pod("old-initializer").unwrap();
    let script = init["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .to_string();
    assert!(script.contains(" -e TOKEN=\"\" "), "{script}");
    assert!(g.log(&init).contains("TOKEN is []"), "{}", g.log(&init));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_runners_for_benchmarks() {
    let opts = OperatorOptions {
        synthetic: Some(SyntheticRunners {
            duration: Duration::from_millis(500),
        }),
        node_gone_after_end: [1].into(),
        ..OperatorOptions::default()
    };
    let g = ground(opts).await;
    g.configmap("cm", &[("script.js", "export default function () {}\n")]);
    let started = Instant::now();
    let names: Vec<String> = (0..100).map(|i| format!("syn-{i}")).collect();
    for name in &names {
        g.testrun(name, "cm", json!({"parallelism": 10}));
    }
    until(120, "all finished", || {
        names.iter().all(|n| g.stage(n) == "finished").then_some(())
    })
    .await;
    eprintln!(
        "100 TestRuns x 10 synthetic runners: {:?}",
        started.elapsed()
    );
    assert_eq!(*g.op.started.lock().unwrap(), 1000);
    let runners = g.pods("runner=true");
    assert_eq!(runners.len(), 1000);
    for pod in runners.iter().take(20) {
        assert_eq!(exit_code(pod), Some(0));
        let summary = g.log(pod);
        let line = summary
            .lines()
            .find_map(|l| l.strip_prefix("PERFSYNC_SUMMARY "))
            .expect("summary line");
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.pointer("/metrics/http_reqs/values/count").is_some());
        assert!(v.pointer("/state/testRunDurationMs").is_some());
    }
    // Runner 1's node is gone: its log cannot be read any more; runner 2's can.
    let q = support::kube_api::LogQuery::default();
    let one = g.pod("syn-0-1").unwrap();
    let two = g.pod("syn-0-2").unwrap();
    let gone = g
        .store()
        .read_log(NS, one["metadata"]["name"].as_str().unwrap(), &q);
    assert_eq!(gone.map_err(|e| e.0), Err(500));
    let kept = g
        .store()
        .read_log(NS, two["metadata"]["name"].as_str().unwrap(), &q);
    assert!(kept.unwrap().contains("PERFSYNC_SUMMARY"));
}
