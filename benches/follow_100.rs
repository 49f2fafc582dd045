//! `cargo bench --bench follow_100`: `perfsync serve` (release, kubernetes executor) follows
//! 100 concurrent runs of 10 runners each to their end, against the Kubernetes API test
//! server and the k6-operator stand-in with synthetic runners (no k6 processes: the figure
//! is perfsync's load on the apiserver and its own cost, not k6's). Reports the requests
//! perfsync made by verb, the watches it held open, and the daemon's CPU time and peak
//! memory. Needs PostgreSQL (127.0.0.1:5432).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::kube_api::KubeApi;
use support::operator::{Operator, OperatorOptions, SyntheticRunners};
use support::{free_port, github_push, Remote, TestDb};

const RUNS: usize = 100;
const RUNNERS: u32 = 10;
const RUN_FOR: Duration = Duration::from_secs(20);

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime), counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn spec(name: &str) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:9]\n  parallelism: {RUNNERS}\n  load: {{vus: {RUNNERS}, duration: 20s}}\n  timeout: 10m\n")
}

const SCRIPT: &str = "import http from 'k6/http';\nexport default function () { http.get('http://127.0.0.1:9/'); }\n";

#[tokio::main]
async fn main() {
    let api = KubeApi::start().await;
    api.install_crd(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/perftest.yaml"))
            .unwrap(),
    );
    api.install_crd(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/k6-operator/k6.io_testruns.v1.6.0.yaml"
        ))
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let _op = Operator::start_with(
        api.store.clone(),
        dir.path().join("operator"),
        OperatorOptions {
            synthetic: Some(SyntheticRunners { duration: RUN_FOR }),
            ..OperatorOptions::default()
        },
    );
    let kubeconfig = api.kubeconfig(dir.path(), "perfsync");
    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("bench"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let port = free_port();
    let cfg = dir.path().join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {url}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\nwebhooks:\n  github: {{env: BENCH_SECRET}}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n  maxConcurrentRuns: {RUNS}\n  maxParallelism: {RUNNERS}\nexecutor:\n  kind: kubernetes\n  namespace: perfsync\n  kubeconfig: {}\n  leaderElection: {{enabled: false}}\nresults:\n  writeBack: false\n",
            dir.path().join("state").display(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("PERFSYNC_DATABASE_URL", &db.url)
        .env("BENCH_SECRET", "s")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    support::daemon::wait_baseline(&pool).await;
    let mut files = Vec::new();
    for i in 0..RUNS {
        files.push((
            format!("tests/t{i:03}/perftest.yaml"),
            spec(&format!("t{i:03}")),
        ));
        files.push((format!("tests/t{i:03}/script.js"), SCRIPT.to_string()));
    }
    let f: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), Some(b.as_str())))
        .collect();
    let head = remote.commit(&f, "100 tests");
    let requests_before = api.store.requests_by_verb();
    let cpu_before = cpu_secs(pid);
    let t = Instant::now();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _) = github_push(addr, "s", &head).await;
    assert_eq!(status, 202);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        if done as usize >= RUNS {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "runs did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = t.elapsed();
    let cpu = cpu_secs(pid) - cpu_before;
    let after = api.store.requests_by_verb();
    let mut made: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &after {
        let d = v - requests_before.get(k).copied().unwrap_or(0);
        if d > 0 {
            made.insert(format!("{} {}", k.0, k.1), d);
        }
    }
    let total: u64 = made.values().sum();
    let verdicts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM test_results GROUP BY status")
            .fetch_all(&pool)
            .await
            .unwrap();
    println!("{RUNS} runs x {RUNNERS} runners, each {}s, followed to their end by perfsync serve (release):", RUN_FOR.as_secs());
    println!(
        "  push -> last result recorded: {:.1} s; verdicts {verdicts:?}",
        wall.as_secs_f64()
    );
    println!(
        "  requests perfsync made in that time: {total} ({:.1} per run)",
        total as f64 / RUNS as f64
    );
    for (k, v) in &made {
        println!("    {k}: {v}");
    }
    println!(
        "  watch streams open at most: {} (now {})",
        api.store.max_open_watches(),
        api.store.open_watches()
    );
    println!(
        "  daemon CPU in that time: {cpu:.2} s ({:.1} % of one core)",
        100.0 * cpu / wall.as_secs_f64()
    );
    println!(
        "  daemon memory: {:.1} MiB RSS now, {:.1} MiB peak",
        status_kib(pid, "VmRSS:") / 1024.0,
        status_kib(pid, "VmHWM:") / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    db.drop_schema().await;
}
