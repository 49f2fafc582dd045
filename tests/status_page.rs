//! The status page as a person sees it: loaded in Debian's headless Chromium, checked for what
//! it shows, and saved as a screenshot (target/screenshots/).

mod support;

use chrono::Utc;
use perfsync::config::{Config, Layout, RegressionTolerance};
use perfsync::executor::local::LocalExecutor;
use perfsync::executor::scheduler::Scheduler;
use perfsync::metrics::Metrics;
use perfsync::record::recorder::Recorder;
use perfsync::results::build::{merged_metrics, summarize, Inputs};
use perfsync::results::summary::RunTrigger;
use perfsync::results::{Ending, RunReport, RunnerReport};
use perfsync::server::{routes, AppState, Health};
use perfsync::source::Tree;
use perfsync::spec::catalog::Index;
use perfsync::sync::triggers::Triggers;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use support::*;

fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    assert!(
        found.is_some() || std::env::var_os("CI").is_none(),
        "CI installs Debian's chromium (scripts/setup.sh)"
    );
    found
}

fn browser(bin: &str, extra: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

fn run(id: &str, p95: f64, offset: i64) -> perfsync::results::RunSummary {
    let start = Utc::now() + chrono::Duration::seconds(offset);
    let summary = serde_json::json!({"state": {"testRunDurationMs": 10000.0}, "metrics": {
        "http_req_duration": {"type": "trend", "values": {"avg": p95 / 2.0, "min": 1.0, "max": p95 * 2.0, "med": p95 / 2.0, "p(95)": p95, "count": 500.0}},
        "http_reqs": {"type": "counter", "values": {"count": 500.0, "rate": 50.0}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.0, "passes": 0.0, "fails": 500.0}}}});
    let report = RunReport {
        run_id: id.into(),
        test: "checkout".into(),
        revision: "c".repeat(64),
        commit: Some("d".repeat(40)),
        author: Some("Ada".into()),
        trigger: RunTrigger::Change,
        executor: "local".into(),
        parallelism: 1,
        start,
        end: start + chrono::Duration::seconds(10),
        ending: Ending::Finished,
        runners: vec![RunnerReport {
            index: 1,
            exit_code: Some(0),
            reason: None,
            summary: Some(summary),
        }],
    };
    let th = perfsync::spec::model::Thresholds::from_iter([(
        "http_req_duration".to_string(),
        vec![perfsync::spec::model::ThresholdEntry::Expr(
            "p(95)<500".into(),
        )],
    )]);
    let metrics = merged_metrics(&report, &th);
    summarize(Inputs {
        report: &report,
        thresholds: &th,
        metrics,
        notes: vec![],
        baseline: None,
        tolerance: &RegressionTolerance::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_tests_verdicts_and_history_in_a_real_browser() {
    let Some(bin) = chromium() else { return };
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    for (i, id) in ["checkout-c-1", "checkout-c-2", "checkout-c-3"]
        .iter()
        .enumerate()
    {
        sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status) VALUES ($1, 'checkout', 'c', $2, 'changed', 'webhook:github', 'queued')")
            .bind(id)
            .bind(i as i32 + 1)
            .execute(&pool)
            .await
            .unwrap();
    }
    let recorder = Arc::new(Recorder::new(pool.clone(), state.path(), None, None));
    for (i, p95) in [120.0, 180.0, 150.0].iter().enumerate() {
        recorder
            .record(&run(&format!("checkout-c-{}", i + 1), *p95, i as i64 * 60))
            .await
            .unwrap();
    }
    let mut tree = Tree::new();
    tree.insert_file("tests/checkout/perftest.yaml", "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: checkout\nspec:\n  script: s.js\n  targets: [http://127.0.0.1:1]\n".as_bytes().to_vec());
    tree.insert_file(
        "tests/checkout/s.js",
        b"export default function () {}\n".to_vec(),
    );
    tree.insert_file("tests/broken/perftest.yaml", b"kind: PerfTest\n".to_vec());
    let policy = Config::default().policy;
    let executor = LocalExecutor {
        grace: std::time::Duration::from_secs(1),
        ..LocalExecutor::new("k6", state.path().join("runs"))
    };
    let scheduler = Arc::new(Scheduler::new(
        pool.clone(),
        perfsync::executor::Executor::Local(executor),
        recorder,
        policy,
        None,
    ));
    scheduler.set_catalog(Arc::new(
        Index::build(&tree, Layout::default(), None).catalog(),
    ));
    let app = Arc::new(AppState {
        triggers: Arc::new(Triggers::new()),
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(Health::default()),
        branch: "main".into(),
        hook_secrets: BTreeMap::new(),
        api_token: None,
        pool: Some(pool),
        scheduler: Some(scheduler),
        repository_url: Some("https://github.com/qa/load-tests.git".into()),
        page: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes(app)).incoming(listener).run());

    let url = format!("http://{addr}/");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browser(bin, &["--dump-dom"], &url)
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("checkout") && html.contains("succeeded"),
        "{html}"
    );
    assert!(html.contains("150.0 ms"), "the last p95 is shown: {html}");
    assert!(html.contains("<polyline"), "the p95 history chart is drawn");
    assert!(
        html.contains("invalid"),
        "the broken test is shown as invalid"
    );
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "it refreshes itself"
    );

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, page) in [
        ("status.png", url.clone()),
        ("run.png", format!("http://{addr}/runs/checkout-c-3")),
    ] {
        let file = shots.join(name);
        let _ = std::fs::remove_file(&file);
        let out = tokio::task::spawn_blocking({
            let (file, page) = (file.clone(), page.clone());
            move || {
                browser(
                    bin,
                    &[
                        &format!("--screenshot={}", file.display()),
                        "--window-size=1280,900",
                    ],
                    &page,
                )
            }
        })
        .await
        .unwrap();
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "{name}: a real screenshot was taken ({size} bytes): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run_dom = tokio::task::spawn_blocking(move || {
        browser(
            bin,
            &["--dump-dom"],
            &format!("http://{addr}/runs/checkout-c-3"),
        )
    })
    .await
    .unwrap();
    let run_html = String::from_utf8_lossy(&run_dom.stdout);
    assert!(
        run_html.contains("p(95)&lt;500") && run_html.contains("pass"),
        "{run_html}"
    );
    assert!(
        run_html.contains("https://github.com/qa/load-tests/commit/"),
        "the commit links to the forge"
    );
    assert!(
        run_html.contains("/login?next=") && !run_html.contains("log (last lines)"),
        "a public page shows no runner log, and a way to sign in for it"
    );
    db.drop_schema().await;
}
