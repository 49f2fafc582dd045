//! The statistical gate end to end on the local executor with real k6: a series of runs
//! against the demo target, whose latency is then stepped up; the step is flagged as a
//! regression at the run where it happened, the next run too (it is compared with the old
//! level), the team acknowledges it through the API, and the runs after are unchanged. The
//! change point names the first run of the new level.

mod support;

use serde_json::Value;
use support::daemon::*;
use support::parts::*;
use support::*;

const SECRET: &str = "hook-secret-regress";
const TOKEN: &str = "api-token-regress";

async fn serve_target(delay: perfsync::demo::Delay) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        warp::serve(perfsync::demo::routes_with(delay))
            .incoming(listener)
            .run(),
    );
    addr
}

async fn api(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = http(addr, method, path, &[("Authorization", &auth)], body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Queues a run of `test` and returns its summary once it has ended.
async fn run_once(addr: std::net::SocketAddr, test: &str) -> Value {
    let (status, queued) = api(addr, "POST", &format!("/api/v1/tests/{test}/runs"), b"").await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["run"].as_str().unwrap().to_string();
    for _ in 0..6 {
        let (status, run) = api(addr, "GET", &format!("/api/v1/runs/{id}?wait=30s"), b"").await;
        assert_eq!(status, 200, "{run}");
        if run["ended"] == true {
            return run;
        }
    }
    panic!("run {id} did not end");
}

fn verdict(run: &Value, metric: &str) -> String {
    run["summary"]["regression"]["metrics"][metric]["verdict"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_step_is_flagged_at_its_run_acknowledged_and_then_unchanged() {
    if !k6_available() {
        return;
    }
    let delay = perfsync::demo::Delay::default();
    delay.set(20);
    let target = serve_target(delay.clone()).await;
    let (grafana, grafana_addr) = Receiver::start().await;
    let mut remote = Remote::new();
    let url = remote.serve(None);
    let spec = format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: steady\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 2, duration: 2s}}\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n  trackedTrends: [items_time]\n");
    remote.commit(
        &[
            ("tests/steady/perftest.yaml", Some(spec.as_str())),
            ("tests/steady/script.js", Some("import http from 'k6/http';\nimport { Trend } from 'k6/metrics';\nconst itemsTime = new Trend('items_time', true);\nexport default function () { itemsTime.add(http.get(`${__ENV.BASE_URL}/api/items`).timings.duration); }\n")),
        ],
        "a steady test",
    );
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = local_config(
        dir.path(),
        &url,
        port,
        "  regressionTolerance: {p95Percent: 30, errorRatePoints: 1}\n  regression:\n    gate: {minRuns: 2, window: 6}\n    changePoints: {window: 10, maxPValue: 0.01, minMagnitude: 0.3}\n",
        &format!("grafana:\n  url: http://{grafana_addr}\n  token: {{env: E2E_GRAFANA_TOKEN}}\n"),
    );
    let d = start_daemon(
        &cfg,
        &db.url,
        port,
        &[
            ("E2E_HOOK_SECRET", SECRET),
            ("E2E_API_TOKEN", TOKEN),
            ("E2E_GRAFANA_TOKEN", "grafana-token-regress"),
        ],
    );
    wait_baseline(&pool).await;

    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(run_once(d.addr, "steady").await);
    }
    assert_eq!(verdict(&runs[0], "p95"), "inconclusive", "{}", runs[0]);
    for r in &runs[2..4] {
        assert_eq!(
            verdict(r, "p95"),
            "unchanged",
            "{}",
            r["summary"]["regression"]
        );
    }
    // The target gets 60 ms slower: the run that sees it first is flagged, and so is the
    // next one, which is still compared with the old level.
    delay.set(80);
    let stepped = run_once(d.addr, "steady").await;
    assert_eq!(
        verdict(&stepped, "p95"),
        "regressed",
        "{}",
        stepped["summary"]["regression"]
    );
    assert_eq!(stepped["summary"]["regression"]["regressed"], true);
    // The script's own Trend, named in `trackedTrends`, is judged too.
    assert_eq!(verdict(&stepped, "items_time:p95"), "regressed");
    assert_eq!(verdict(&runs[3], "items_time:p95"), "unchanged");
    // `flag` (the default): the verdict stays; the run is marked.
    assert_eq!(stepped["status"], "succeeded");
    let base: Vec<&str> = stepped["summary"]["regression"]["metrics"]["p95"]["baselineRuns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let earlier: Vec<&str> = runs.iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(base.iter().all(|b| earlier.contains(b)), "{base:?}");
    let again = run_once(d.addr, "steady").await;
    assert_eq!(verdict(&again, "p95"), "regressed");

    let stepped_id = stepped["id"].as_str().unwrap();
    let (status, body) = api(
        d.addr,
        "POST",
        &format!("/api/v1/runs/{stepped_id}/acknowledge"),
        br#"{"reason": "the new search index costs 60 ms"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = api(d.addr, "POST", "/api/v1/runs/no-such-run/acknowledge", b"").await;
    assert_eq!(status, 404);
    for _ in 0..2 {
        let after = run_once(d.addr, "steady").await;
        assert_eq!(
            verdict(&after, "p95"),
            "unchanged",
            "{}",
            after["summary"]["regression"]
        );
    }

    // The same through the repository: a reviewed file names the second flagged run, and a
    // broken file elsewhere is reported and skipped.
    let again_id = again["id"].as_str().unwrap();
    remote.commit(
        &[
            (
                "results/steady/acknowledged.yaml",
                Some(
                    format!("acknowledged:\n  - run: {again_id}\n    reason: accepted in review\n")
                        .as_str(),
                ),
            ),
            (
                "results/other/acknowledged.yaml",
                Some("acknowledged:\n  - runs: nope\n"),
            ),
        ],
        "acknowledge in the repository",
    );
    let (status, _) = api(d.addr, "POST", "/api/v1/sync", b"").await;
    assert_eq!(status, 202);
    let (actor, source): (String, String) = wait_for("the file's acknowledgement", 30, || async {
        sqlx::query_as("SELECT actor, source FROM acknowledgements WHERE run_id = $1")
            .bind(again_id)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(source, "repository");
    assert!(
        actor.contains("results/steady/acknowledged.yaml"),
        "{actor}"
    );
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("results/other/acknowledged.yaml:2:") && log.contains("runs"),
        "the broken file is named with its line"
    );

    // The change point: p95's shift begins at the stepped run.
    let (status, changes) = api(d.addr, "GET", "/api/v1/changes?test=steady", b"").await;
    assert_eq!(status, 200, "{changes}");
    let p95: Vec<&Value> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["metric"] == "p95")
        .collect();
    assert_eq!(p95.len(), 1, "{changes}");
    assert_eq!(p95[0]["runId"], stepped_id);
    assert!(
        p95[0]["changePercent"].as_f64().unwrap() > 100.0,
        "{changes}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["runs", "changes", "--test", "steady"])
        .env("PERFSYNC_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(stepped_id),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Grafana got the shift as an annotation, and the test's README in the repository lists it.
    let annotations: Vec<String> = grafana
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, path, _, body)| path == "/api/annotations" && body.contains("change-point"))
        .map(|(.., body)| body.clone())
        .collect();
    assert!(
        annotations
            .iter()
            .any(|b| b.contains(stepped_id) && b.contains("p95")),
        "{annotations:?}"
    );
    let readme = wait_for("the README with the shift", 30, || async {
        let out = std::process::Command::new("git")
            .args(["show", "main:results/steady/README.md"])
            .current_dir(&remote.bare)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("Shifts in the history").then_some(text)
    })
    .await;
    assert!(readme.contains(stepped_id), "{readme}");
    assert!(readme.contains("⚠ regressed: "), "{readme}");
    // The status page's p95 history marks where the shift began.
    let (status, page) = http(d.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<line class=\"shift\"").count(), 1, "{page}");
    let (status, page) = http(d.addr, "GET", &format!("/runs/{stepped_id}"), &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Statistical gate") && page.contains("<td class=\"bad\">regressed</td>"),
        "{page}"
    );
}
