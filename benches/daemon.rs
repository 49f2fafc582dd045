//! `cargo bench --bench daemon`: the daemon with 10,000 tests in its repository: idle memory,
//! time from a signed webhook to k6's first request for a one-test change (local executor),
//! and the daemon's overhead on top of a plain `k6 run` of the same script.
//! Needs PostgreSQL (127.0.0.1:5432) and k6 on PATH.

mod generate;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{free_port, git, github_push, Remote, TestDb};
use warp::Filter;

const TESTS: usize = 10_000;
const ROUNDS: usize = 5;

/// Heap and stacks (anonymous) against mapped files (binary, libraries, git packs).
fn rss_split(pid: u32) -> String {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    format!(
        "{:.1} MiB anonymous, {:.1} MiB file-backed",
        field("Anonymous:"),
        field("Rss:") - field("Anonymous:")
    )
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn spec(name: &str, target: std::net::SocketAddr) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 1, duration: 3s}}\n  env: {{BASE_URL: http://{target}}}\n")
}

const SCRIPT: &str = "import http from 'k6/http';\nexport default function () { http.get(`${__ENV.BASE_URL}/hit`); }\n";

#[tokio::main]
async fn main() {
    // A target that notes when its first request arrives.
    let first_hit: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let hits = first_hit.clone();
    let route = warp::path!("hit").map(move || {
        let mut g = hits.lock().unwrap();
        if g.is_none() {
            *g = Some(Instant::now());
        }
        "ok"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let mut remote = Remote::new();
    generate::write_repo(&remote.work, TESTS).unwrap();
    git(&remote.work, &["add", "-A"]);
    git(&remote.work, &["commit", "-q", "-m", "10k tests"]);
    git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
    let url = remote.serve(None);
    let db = TestDb::new().await;
    let _ = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {url}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\nwebhooks:\n  github: {{env: BENCH_SECRET}}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\nresults:\n  writeBack: false\n",
            dir.path().join("state").display()
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
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let started = Instant::now();
    loop {
        let c: Option<String> = sqlx::query_scalar("SELECT last_commit FROM sync_state")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .flatten();
        if c.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "daemon start to first sync of {TESTS} tests (clone, validate, record): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "idle memory with {TESTS} tests: {:.1} MiB RSS ({})",
        rss_mib(child.id()),
        rss_split(child.id())
    );

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut latencies = Vec::new();
    let mut daemon_walls = Vec::new();
    for i in 0..ROUNDS {
        let name = format!("test-{i}");
        let d = format!("tests/group-{:02}/test-{i}", i % 100);
        let (spec_text, script_text) = (spec(&name, target), format!("{SCRIPT}// {i}\n"));
        let (spec_path, script_path) = (format!("{d}/perftest.yaml"), format!("{d}/script.js"));
        let head = remote.commit(
            &[
                (spec_path.as_str(), Some(spec_text.as_str())),
                (script_path.as_str(), Some(script_text.as_str())),
            ],
            &format!("point {name} at the bench target"),
        );
        *first_hit.lock().unwrap() = None;
        let t = Instant::now();
        let (status, _) = github_push(addr, "s", &head).await;
        assert_eq!(status, 202);
        loop {
            if let Some(hit) = *first_hit.lock().unwrap() {
                latencies.push(hit - t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        loop {
            let done: Option<String> =
                sqlx::query_scalar("SELECT status FROM test_results WHERE test_id = $1")
                    .bind(&name)
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            if done.is_some() {
                daemon_walls.push(t.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    latencies.sort();
    println!(
        "signed webhook -> first k6 request, one-test change, {TESTS} tests (local executor): median {:.0} ms (min {:.0}, max {:.0}) over {ROUNDS}",
        latencies[ROUNDS / 2].as_secs_f64() * 1000.0,
        latencies[0].as_secs_f64() * 1000.0,
        latencies[ROUNDS - 1].as_secs_f64() * 1000.0
    );
    // The same 3 s script under a plain `k6 run`.
    let plain_dir = tempfile::tempdir().unwrap();
    std::fs::write(plain_dir.path().join("script.js"), SCRIPT).unwrap();
    let mut plain = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let ok = std::process::Command::new("k6")
            .args([
                "run",
                "--quiet",
                "--no-usage-report",
                "--vus",
                "1",
                "--duration",
                "3s",
                "script.js",
            ])
            .env("BASE_URL", format!("http://{target}"))
            .current_dir(plain_dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        plain.push(t.elapsed());
    }
    plain.sort();
    daemon_walls.sort();
    let (p, d) = (
        plain[ROUNDS / 2].as_secs_f64(),
        daemon_walls[ROUNDS / 2].as_secs_f64(),
    );
    println!("plain `k6 run` of the 3 s script: median {p:.2} s; through perfsync (webhook to recorded result): median {d:.2} s; overhead {:.2} s", d - p);
    let _ = child.kill();
    let _ = child.wait();
    db.drop_schema().await;
}
