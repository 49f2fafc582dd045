//! `perfsync run TEST --wait` as a CD pipeline runs it: against a daemon on the local executor
//! with real k6, it exits 0 on a passing test, 1 on a failing one, 2 on a wrong token or an
//! unknown test; the API's long-poll answers once the run has ended.

mod support;

use std::process::{Command, Output};
use support::daemon::*;
use support::parts::*;
use support::*;

const SECRET: &str = "hook-secret-gate";
const TOKEN: &str = "api-token-gate";

fn test_files(name: &str, target: std::net::SocketAddr, threshold: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("tests/{name}/perftest.yaml"),
            format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 1, duration: 1s}}\n  thresholds:\n    http_req_duration: ['{threshold}']\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n"),
        ),
        (
            format!("tests/{name}/script.js"),
            "import http from 'k6/http';\nexport default function () { http.get(`${__ENV.BASE_URL}/api/items`); }\n".into(),
        ),
    ]
}

async fn gate(args: Vec<String>, token: &str) -> Output {
    let token = token.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_perfsync"))
            .arg("run")
            .args(&args)
            .env("PERFSYNC_API_TOKEN", token)
            .env_remove("PERFSYNC_SERVER")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_exits_by_the_verdict_and_two_on_a_wrong_token() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let mut remote = Remote::new();
    let url = remote.serve(None);
    let mut files = test_files("passes", target, "p(95)<5000");
    files.extend(test_files("fails", target, "p(95)<0"));
    let f: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    remote.commit(&f, "two tests");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = local_config(dir.path(), &url, port, "  maxConcurrentRuns: 2\n", "");
    let d = start_daemon(
        &cfg,
        &db.url,
        port,
        &[("E2E_HOOK_SECRET", SECRET), ("E2E_API_TOKEN", TOKEN)],
    );
    wait_baseline(&pool).await;
    let server = format!("http://{}", d.addr);
    let args = |test: &str, extra: &[&str]| {
        let mut a = vec![
            test.to_string(),
            "--server".into(),
            server.clone(),
            "--timeout".into(),
            "2m".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let out = gate(args("passes", &["--wait"]), TOKEN).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("of test passes: succeeded") && stdout.contains("p95:"),
        "{stdout}"
    );

    let out = gate(args("fails", &["--wait", "--format", "json"]), TOKEN).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["ended"], true, "{v}");
    assert_eq!(v["test"], "fails");

    let out = gate(args("passes", &["--wait"]), "not-the-token").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = gate(args("nosuchtest", &["--wait"]), TOKEN).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchtest"));
    let out = gate(
        vec![
            "passes".into(),
            "--server".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ],
        TOKEN,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "an unreachable daemon");

    // The long-poll: queued without --wait, then one request that answers at the run's end.
    let out = gate(args("passes", &[]), TOKEN).await;
    assert_eq!(out.status.code(), Some(0));
    let run = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http(
        d.addr,
        "GET",
        &format!("/api/v1/runs/{run}?wait=55s"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ended"], true, "one long-poll saw the end: {v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    let (status, body) = http(
        d.addr,
        "GET",
        &format!("/api/v1/runs/{run}?wait=soon"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("wait"), "{body}");
}
