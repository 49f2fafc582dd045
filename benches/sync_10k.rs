//! `cargo bench --bench sync_10k`: on a 10,000-test repository, the first sync, planning a push
//! that changes one test (excluding the fetch), and signed webhook → finished plan on loopback.
//! Needs the PostgreSQL of this machine (127.0.0.1:5432, database `test`).

mod generate;
#[path = "../tests/support/mod.rs"]
mod support;

use perfsync::config::{Config, Layout};
use perfsync::metrics::Metrics;
use perfsync::server::{routes, AppState, Health};
use perfsync::source::git::{GitAuth, GitSource};
use perfsync::sync::run::sync_loop;
use perfsync::sync::triggers::Triggers;
use perfsync::sync::Syncer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{git, github_push, Remote, TestDb};

const TESTS: usize = 10_000;
const ROUNDS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let mut remote = Remote::new();
    generate::write_repo(&remote.work, TESTS).expect("generate");
    let t = Instant::now();
    git(&remote.work, &["add", "-A"]);
    git(&remote.work, &["commit", "-q", "-m", "10k tests"]);
    git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
    eprintln!("generated and pushed {TESTS} tests in {:?}", t.elapsed());

    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let metrics = Arc::new(Metrics::new());
    // Over git:// on loopback, as a remote is reached in production.
    let url = remote.serve(None);
    let src = GitSource::new(&url, "main", state.path(), GitAuth::default());
    let mut syncer = Syncer::new(
        src,
        Layout::default(),
        policy,
        pool.clone(),
        metrics.clone(),
    );

    let t = Instant::now();
    let first = syncer.sync("bench").await.expect("first sync");
    let first_total = t.elapsed();
    println!(
        "first sync, {TESTS} tests: {} total (fetch/clone {}, read + validate + plan {}, record the rest)",
        ms(first_total), ms(first.fetch), ms(first.planning)
    );

    let mut planning = Vec::new();
    let mut totals = Vec::new();
    for i in 0..ROUNDS {
        let dir = remote
            .work
            .join(format!("tests/group-{:02}/test-{i}", i % 100));
        std::fs::write(
            dir.join("script.js"),
            format!("{}// change {i}\n", generate::script(i)),
        )
        .unwrap();
        git(
            &remote.work,
            &["commit", "-q", "-am", &format!("change test-{i}")],
        );
        git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
        let t = Instant::now();
        let o = syncer.sync("bench").await.expect("sync");
        totals.push(t.elapsed());
        assert_eq!(o.plan.runs.len(), 1);
        planning.push(o.planning);
    }
    println!(
        "one-test change, {TESTS} tests: planning median {} (max {}), whole sync with fetch and record median {} over {ROUNDS} pushes",
        ms(median(planning.clone())), ms(*planning.iter().max().unwrap()), ms(median(totals))
    );

    // Webhook to finished plan, through the HTTP server and the sync loop.
    let triggers = Arc::new(Triggers::new());
    let health = Arc::new(Health::default());
    let secret = "bench-secret".to_string();
    let app = Arc::new(AppState {
        triggers: triggers.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        branch: "main".into(),
        hook_secrets: [("github", secret.clone())].into_iter().collect(),
        api_token: None,
        pool: Some(pool.clone()),
        scheduler: None,
        repository_url: None,
        page: Default::default(),
    });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let (tx, mut outcomes) = tokio::sync::mpsc::channel(4);
    tokio::spawn(sync_loop(syncer, triggers, health, Some(tx), stop_rx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes(app)).incoming(listener).run());
    let mut latencies = Vec::new();
    for i in 0..ROUNDS {
        let n = ROUNDS + i;
        let dir = remote
            .work
            .join(format!("tests/group-{:02}/test-{n}", n % 100));
        std::fs::write(
            dir.join("script.js"),
            format!("{}// hook {i}\n", generate::script(n)),
        )
        .unwrap();
        git(&remote.work, &["commit", "-q", "-am", "hook"]);
        git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
        let head = remote.head();
        let t = Instant::now();
        let (status, _) = github_push(addr, &secret, &head).await;
        assert_eq!(status, 202);
        let o = outcomes.recv().await.expect("outcome");
        latencies.push(t.elapsed());
        assert_eq!(o.head, head);
    }
    println!(
        "signed webhook -> finished plan (fetch, plan, record), one-test change, {TESTS} tests: median {} (max {}) over {ROUNDS}",
        ms(median(latencies.clone())), ms(*latencies.iter().max().unwrap())
    );
    db.drop_schema().await;
}
