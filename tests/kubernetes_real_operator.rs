//! The kubernetes executor against what the real k6-operator and a real apiserver do: runs
//! that cannot start (missing Secret or key, unpullable runner or starter image, a runner that
//! never fits) end as `error` within the stall timeout naming the pod and its reason; names
//! stay valid for the longest test name, ten runners and attempt 10,000; shell-special values
//! stay inert; the v1.5 CRD prunes nothing perfsync sends, and a CRD that would is caught;
//! a runner whose node is gone ends with its exit code and a note. The ground authorizes
//! every request under `manifests/base/role.yaml`.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::daemon::*;
use support::kube_api::Coll;
use support::kube_ground::*;
use support::operator::{OperatorOptions, UNPULLABLE};
use support::parts::*;
use support::*;

/// A ground and one daemon past its baseline sync, with `extra` in its executor config.
async fn daemon_on(g: &Ground, extra: &str) -> Daemon {
    let port = free_port();
    let cfg = g.config("a", port, extra);
    let d = g.start(&cfg, port);
    g.baseline().await;
    d
}

fn reason_of(r: &(String, String, Option<String>)) -> String {
    r.2.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_cannot_start_end_within_the_stall_timeout_naming_pod_and_reason() {
    if !k6_available() {
        return;
    }
    let g = ground().await;
    let d = daemon_on(&g, "").await;
    let t = g.target;
    g.api.store.create(
        &Coll::new("", "secrets"),
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "present"}, "data": {"other": "eA=="}}),
    ).unwrap();
    // A timeout far beyond the test's patience: only stall detection ends these in time.
    let slow = |name| Spec {
        timeout: "30m",
        ..Spec::new(name)
    };
    let mut all = files(
        &Spec {
            extra: "  secretEnv:\n    - {name: API_TOKEN, secret: absent, key: token}\n",
            ..slow("nosecret")
        },
        t,
        SCRIPT,
    );
    all.extend(files(
        &Spec {
            extra: "  secretEnv:\n    - {name: API_TOKEN, secret: present, key: token}\n",
            ..slow("nokey")
        },
        t,
        SCRIPT,
    ));
    let image = format!("  runner:\n    image: {UNPULLABLE}\n");
    all.extend(files(
        &Spec {
            extra: &image,
            ..slow("noimage")
        },
        t,
        SCRIPT,
    ));
    // Two nodes of 8 CPU: two runners asking for 6 fit, the third never does.
    all.extend(files(
        &Spec {
            vus: 3,
            parallelism: 3,
            extra: "  runner:\n    resources: {requests: {cpu: \"6\"}}\n",
            ..slow("crowded")
        },
        t,
        SCRIPT,
    ));
    let head = g.push(&all, "four runs that cannot start");
    github_push(d.addr, SECRET, &head).await;

    // A Secret that is not there, or lacks the key, is found before any TestRun exists.
    let r = g.result("nosecret", 90).await;
    assert_eq!(r.1, "error", "{r:?}");
    let why = reason_of(&r);
    assert!(
        why.contains("Secret `absent`") && why.contains("not in namespace `perfsync-runs`"),
        "{why}"
    );
    let why = reason_of(&g.result("nokey", 60).await);
    assert!(
        why.contains("key `token` of Secret `present`") && why.contains("does not hold"),
        "{why}"
    );
    for test in ["nosecret", "nokey"] {
        assert!(
            g.objects("k6.io", "testruns", &format!("perfsync.dev/test={test}"))
                .is_empty(),
            "{test} started nothing"
        );
    }
    let why = reason_of(&g.result("noimage", 60).await);
    assert!(
        why.contains("pod") && why.contains("ImagePullBackOff") && why.contains(UNPULLABLE),
        "{why}"
    );
    let r = g.result("crowded", 90).await;
    assert_eq!(r.1, "error", "{r:?}");
    let why = reason_of(&r);
    assert!(
        why.contains("runner") && why.contains("Unschedulable") && why.contains("Insufficient cpu"),
        "{why}"
    );
    // The two runners that fitted were never resumed: no k6 of this run made a request.
    let s = g.summary(&r.0).await;
    assert!(
        s["metrics"]["http_reqs"].is_null()
            || s["metrics"]["http_reqs"]["values"]["count"].as_f64() == Some(0.0),
        "{s}"
    );
    wait_for("the TestRuns to be deleted", 30, || async {
        g.objects("k6.io", "testruns", "").is_empty().then_some(())
    })
    .await;
    assert!(
        g.api.store.denied().is_empty(),
        "{:?}",
        g.api.store.denied()
    );
    g.db.drop_schema().await;
}

/// A DNS-1123 name is valid for a Job; a Service also needs a letter first.
fn label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_name_ten_runners_attempt_ten_thousand_and_inert_shell_values() {
    if !k6_available() {
        return;
    }
    let g = ground().await;
    let d = daemon_on(&g, "").await;
    let t = g.target;
    // 40 characters, starting with a digit: neither a Service name nor short enough as is.
    let long = "9-checkout-peak-load-with-a-very-long-na";
    assert_eq!(long.len(), 40);
    let mut all = files(
        &Spec {
            vus: 10,
            parallelism: 10,
            duration: "1s",
            ..Spec::new(long)
        },
        t,
        SCRIPT,
    );
    // Values the initializer's shell would run, were they pasted into it.
    let marker = format!("/tmp/perfsync-pwned-{}", fastrand::u32(..));
    let weird = format!("$(touch {marker});`touch {marker}`;'\\\" | & # * ( ) > {marker}");
    let yaml_value = serde_json::to_string(&weird).unwrap();
    let extra = format!("  env:\n    WEIRD: {yaml_value}\n");
    let mut shell = files(
        &Spec {
            extra: &extra,
            ..Spec::new("shell")
        },
        t,
        &format!(
            "import http from 'k6/http';\nconst want = {yaml_value};\nif (__ENV.WEIRD !== want) {{ throw new Error('env changed: ' + __ENV.WEIRD); }}\nexport default function () {{ http.get('http://{t}/api/items'); }}\n"
        ),
    );
    // `files` writes `env:` once with BASE_URL; this spec has its own env block instead.
    let spec = &mut shell[0].1;
    if let Some(s) = spec.as_mut() {
        *s = s.replace(&format!("  env:\n    BASE_URL: http://{t}\n"), "");
    }
    all.extend(shell);
    // Bundles near the 1 MiB a ConfigMap holds: one just under runs (the apiserver takes
    // its ConfigMap), one just over is refused at validation and never reaches the cluster.
    const LIMIT: usize = 1_048_576;
    all.extend(files(&Spec::new("bulky"), t, SCRIPT));
    all.push((
        "tests/bulky/data.txt".into(),
        Some("x".repeat(LIMIT - 4_000)),
    ));
    all.extend(files(&Spec::new("toobulky"), t, SCRIPT));
    all.push((
        "tests/toobulky/data.txt".into(),
        Some("x".repeat(LIMIT + 10)),
    ));
    // Every run's egress policy, as the apiserver stored it.
    let mut events = g.api.store.events.subscribe();
    let policies = tokio::spawn(async move {
        let mut seen: Vec<Value> = Vec::new();
        while let Ok(e) = events.recv().await {
            if e.kind == "ADDED" && e.coll == Coll::new("networking.k8s.io", "networkpolicies") {
                seen.push(e.object);
                if seen.len() == 3 {
                    break;
                }
            }
        }
        seen
    });
    let head = g.push(&all, "a long name, shell-special values, big bundles");
    github_push(d.addr, SECRET, &head).await;

    let (run, verdict, reason) = g.result(long, 120).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    let s = g.summary(&run).await;
    assert_eq!(s["runners"].as_array().map(|r| r.len()), Some(10), "{s}");
    let (_, verdict, reason) = g.result("shell", 60).await;
    assert_eq!(
        verdict, "succeeded",
        "the value reached k6 unchanged: {reason:?}"
    );
    assert!(
        !std::path::Path::new(&marker).exists(),
        "nothing ran in a shell"
    );
    // One NetworkPolicy per run, selecting the run's pods by the label only perfsync sets:
    // DNS, the run's own pods' REST API, and the policy's 127.0.0.1, nothing else.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), policies)
        .await
        .expect("three egress policies")
        .unwrap();
    let runs: BTreeSet<String> = seen
        .iter()
        .map(|p| {
            p["spec"]["podSelector"]["matchLabels"]["perfsync.dev/run"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(runs.contains(&run), "{runs:?}");
    for p in &seen {
        assert_eq!(
            p["spec"]["policyTypes"],
            serde_json::json!(["Egress"]),
            "{p}"
        );
        let blocks: Vec<&str> = p["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["to"][0]["ipBlock"]["cidr"].as_str())
            .collect();
        assert_eq!(blocks, vec!["127.0.0.1/32"], "{p}");
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"], "TestRun",
            "{p}"
        );
    }
    // The runner never gets an API token.
    let (_, verdict, reason) = g.result("bulky", 60).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    let bulky = g.objects("", "configmaps", "perfsync.dev/test=bulky");
    assert_eq!(bulky.len(), 1);
    let size: usize = bulky[0]["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| k.len() + v.as_str().unwrap_or("").len())
        .sum();
    assert!(size > LIMIT - 8_000 && size <= LIMIT, "{size}");
    assert!(g
        .objects("", "configmaps", "perfsync.dev/test=toobulky")
        .is_empty());
    assert!(g.results("toobulky").await.is_empty());

    // Attempt 10,000 of the same revision: 9,998 earlier attempts on record.
    let revision: String = sqlx::query_scalar("SELECT revision FROM test_runs WHERE id = $1")
        .bind(&run)
        .fetch_one(&g.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status) SELECT 'filler-' || n, $1, $2, n, 'manual', 'manual', 'superseded' FROM generate_series(2, 9999) n",
    )
    .bind(long)
    .bind(&revision)
    .execute(&g.pool)
    .await
    .unwrap();
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http(
        d.addr,
        "POST",
        &format!("/api/v1/tests/{long}/runs"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let queued: Value = serde_json::from_str(&body).unwrap();
    let id = queued["run"].as_str().unwrap().to_string();
    assert!(id.ends_with("-10000"), "{id}");
    // Every object the operator derived from the TestRun's name was accepted by the
    // apiserver (which refuses invalid names with 422), and the run finished.
    let mut names = BTreeSet::new();
    let pods = wait_for("the 10,000th attempt's runners", 90, || async {
        let pods = g.objects("", "pods", &format!("perfsync.dev/run={id}"));
        (pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["runner"] == "true")
            .count()
            == 10)
            .then_some(pods)
    })
    .await;
    for p in &pods {
        names.insert(
            p["metadata"]["labels"]["job-name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    let svcs = g.objects("", "services", "");
    let svc_names: Vec<String> = svcs
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(svc_names.len() >= 10, "{svc_names:?}");
    for n in names.iter().chain(&svc_names) {
        assert!(label_ok(n), "{n}");
    }
    assert!(svc_names
        .iter()
        .all(|n| n.starts_with(|c: char| c.is_ascii_lowercase())));
    let r = wait_for("the 10,000th attempt's result", 120, || async {
        g.results(long).await.into_iter().find(|r| r.0 == id)
    })
    .await;
    assert_eq!(r.1, "succeeded", "{r:?}");
    assert!(
        g.api.store.denied().is_empty(),
        "{:?}",
        g.api.store.denied()
    );
    // Each policy went with its TestRun.
    wait_for("the egress policies to go with their runs", 30, || async {
        g.objects("networking.k8s.io", "networkpolicies", "")
            .is_empty()
            .then_some(())
    })
    .await;
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_v1_5_crd_nothing_is_pruned_and_a_lost_node_leaves_exit_code_and_note() {
    if !k6_available() {
        return;
    }
    let g = ground_with(
        "v1.5.0",
        OperatorOptions {
            node_gone_after_end: BTreeSet::from([2]),
            ..OperatorOptions::default()
        },
    )
    .await;
    let d = daemon_on(&g, "").await;
    let t = g.target;
    let mut all = files(
        &Spec {
            extra: "  tags: {service: order}\n",
            ..Spec::new("plain")
        },
        t,
        SCRIPT,
    );
    all.extend(files(
        &Spec {
            vus: 2,
            parallelism: 2,
            ..Spec::new("lostnode")
        },
        t,
        SCRIPT,
    ));
    let head = g.push(&all, "two tests on an older operator");
    github_push(d.addr, SECRET, &head).await;
    let (run, verdict, reason) = g.result("plain", 120).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    // VUs, duration and tags reached k6 (the v1.5 CRD keeps `arguments`).
    let s = g.summary(&run).await;
    assert!(
        s["metrics"]["http_reqs"]["values"]["count"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    let (run, verdict, reason) = g.result("lostnode", 90).await;
    let s = g.summary(&run).await;
    let runners = s["runners"].as_array().cloned().unwrap_or_default();
    let lost = runners
        .iter()
        .find(|r| r["index"] == 2)
        .cloned()
        .unwrap_or_default();
    assert_eq!(lost["exitCode"], 0, "its exit code stands: {s}");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap_or("")
            .contains("log could not be read"),
        "{s}"
    );
    assert!(
        !reason.clone().unwrap_or_default().contains("no progress"),
        "never a stall: {verdict} {reason:?}"
    );
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpullable_starter_leaves_runners_paused_and_ends_as_error() {
    if !k6_available() {
        return;
    }
    let g = ground().await;
    let d = daemon_on(&g, "  starterImage: registry.invalid/starter:none\n").await;
    let head = g.push(
        &files(
            &Spec {
                vus: 2,
                parallelism: 2,
                timeout: "30m",
                ..Spec::new("unstarted")
            },
            g.target,
            SCRIPT,
        ),
        "a run whose starter cannot be pulled",
    );
    github_push(d.addr, SECRET, &head).await;
    let r = g.result("unstarted", 90).await;
    assert_eq!(r.1, "error", "{r:?}");
    let why = reason_of(&r);
    assert!(
        why.contains("starter pod") && why.contains("ImagePullBackOff"),
        "{why}"
    );
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_that_drops_a_field_perfsync_sends_fails_the_run_naming_it() {
    if !k6_available() {
        return;
    }
    // An operator whose CRD lacks `spec.starter`: the apiserver prunes it silently.
    let mut crd: Value = serde_yaml::from_str(&testrun_crd("v1.6.0")).unwrap();
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        if let Some(props) = v
            .pointer_mut("/schema/openAPIV3Schema/properties/spec/properties")
            .and_then(|p| p.as_object_mut())
        {
            props.remove("starter");
        }
    }
    let g = ground_with_crd(
        &serde_yaml::to_string(&crd).unwrap(),
        OperatorOptions::default(),
    )
    .await;
    let d = daemon_on(&g, "").await;
    let head = g.push(&files(&Spec::new("older"), g.target, SCRIPT), "one test");
    github_push(d.addr, SECRET, &head).await;
    let r = g.result("older", 60).await;
    assert_eq!(r.1, "error", "{r:?}");
    assert!(reason_of(&r).contains("dropped spec.starter"), "{r:?}");
    assert_eq!(*g.op.started.lock().unwrap(), 0, "nothing ran without it");
    g.db.drop_schema().await;
}
