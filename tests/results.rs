//! Results with the real k6 binary, the real Prometheus, the real PostgreSQL and a real git
//! remote: merging runners, percentiles from native histograms, recording exactly once.

mod support;

use chrono::Utc;
use perfsync::config::RegressionTolerance;
use perfsync::record::git_results::ResultsGit;
use perfsync::record::grafana::Grafana;
use perfsync::record::recorder::Recorder;
use perfsync::record::seal::ResultsKey;
use perfsync::results::build::{summarize, Inputs};
use perfsync::results::collect::collect;
use perfsync::results::prometheus::Prometheus;
use perfsync::results::report::summary_from_output;
use perfsync::results::summary::{EndState, RunTrigger, Source};
use perfsync::results::{Ending, RunReport, RunSummary, RunnerReport};
use perfsync::source::git::{GitAuth, GitSource};
use perfsync::spec::model::ThresholdEntry;
use std::collections::BTreeMap;
use std::path::Path;
use support::parts::*;
use support::*;

const SCRIPT: &str = "import http from 'k6/http';\nimport { check } from 'k6';\nexport default function () {\n  const r = http.get(`${__ENV.BASE}/api/items/1`);\n  check(r, { 'is 200': (x) => x.status === 200 });\n}\n";

fn thresholds() -> perfsync::spec::model::Thresholds {
    perfsync::spec::model::Thresholds::from_iter([
        (
            "http_req_duration".to_string(),
            vec![ThresholdEntry::Expr("p(95)<2000".into())],
        ),
        (
            "http_req_failed".to_string(),
            vec![ThresholdEntry::Expr("rate<0.01".into())],
        ),
        (
            "checks".to_string(),
            vec![ThresholdEntry::Expr("rate>0.99".into())],
        ),
    ])
}

fn bundle(dir: &Path) {
    std::fs::write(dir.join("script.js"), SCRIPT).unwrap();
    std::fs::write(
        dir.join("entry.js"),
        perfsync::spec::render::entry_script("./script.js", &thresholds()),
    )
    .unwrap();
}

fn report(run: &str, runners: Vec<RunnerReport>, start: chrono::DateTime<Utc>) -> RunReport {
    RunReport {
        run_id: run.into(),
        test: "items".into(),
        revision: "a".repeat(64),
        commit: Some("b".repeat(40)),
        author: Some("Ada Tester <ada@example.com>".into()),
        trigger: RunTrigger::Change,
        executor: "local".into(),
        parallelism: runners.len() as u32,
        start,
        end: Utc::now(),
        ending: Ending::Finished,
        runners,
    }
}

fn runner(index: u32, (code, out): (i32, String)) -> RunnerReport {
    RunnerReport {
        index,
        exit_code: Some(code),
        reason: None,
        summary: summary_from_output(&out),
    }
}

fn values(s: &serde_json::Value, metric: &str, key: &str) -> f64 {
    s["metrics"][metric]["values"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{metric}.{key} in {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_real_runners_merge_into_one_exact_summary() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path());
    let base = format!("http://{target}");
    let seq = "0,1/3,2/3,1";
    let start = Utc::now();
    let runners: Vec<RunnerReport> = ["0:1/3", "1/3:2/3", "2/3:1"]
        .iter()
        .enumerate()
        .map(|(i, seg)| {
            let args = [
                "--vus",
                "6",
                "--iterations",
                "90",
                "--execution-segment",
                seg,
                "--execution-segment-sequence",
                seq,
                "--tag",
                "testid=merge-1",
                "--summary-trend-stats=avg,min,med,max,p(90),p(95),p(99),count",
            ];
            runner(
                i as u32 + 1,
                k6(dir.path(), "entry.js", &args, &[("BASE", &base)]),
            )
        })
        .collect();
    assert!(
        runners
            .iter()
            .all(|r| r.exit_code == Some(0) && r.summary.is_some()),
        "{runners:?}"
    );
    let r = report("items-merge-1", runners.clone(), start);
    let (metrics, notes) = collect(&r, &thresholds(), None).await;
    assert!(notes.is_empty());
    let s = summarize(Inputs {
        report: &r,
        thresholds: &thresholds(),
        metrics,
        notes: vec![],
        baseline: None,
        tolerance: &RegressionTolerance::default(),
    });
    let sums: Vec<&serde_json::Value> = runners
        .iter()
        .map(|r| r.summary.as_ref().unwrap())
        .collect();
    assert_eq!(
        s.metric_value("http_reqs", "count"),
        Some(90.0),
        "every request of every runner is counted once"
    );
    assert_eq!(s.metric_value("iterations", "count"), Some(90.0));
    assert_eq!(s.metric_value("checks", "passes"), Some(90.0));
    assert_eq!(s.metric_value("checks", "rate"), Some(1.0));
    // k6 samples VU gauges once a second: a short runner may report none.
    if sums.iter().all(|x| x["metrics"].get("vus_max").is_some()) {
        let total: f64 = sums.iter().map(|x| values(x, "vus_max", "value")).sum();
        assert_eq!(
            s.metric_value("vus_max", "value"),
            Some(total),
            "each runner ran its share of the VUs"
        );
    }
    let min = sums
        .iter()
        .map(|x| values(x, "http_req_duration", "min"))
        .fold(f64::MAX, f64::min);
    let max = sums
        .iter()
        .map(|x| values(x, "http_req_duration", "max"))
        .fold(f64::MIN, f64::max);
    assert_eq!(s.metric_value("http_req_duration", "min"), Some(min));
    assert_eq!(s.metric_value("http_req_duration", "max"), Some(max));
    let weighted: f64 = sums
        .iter()
        .map(|x| values(x, "http_req_duration", "avg") * values(x, "http_req_duration", "count"))
        .sum::<f64>()
        / 90.0;
    assert!((s.metric_value("http_req_duration", "avg").unwrap() - weighted).abs() < 1e-9);
    let worst_p95 = sums
        .iter()
        .map(|x| values(x, "http_req_duration", "p(95)"))
        .fold(f64::MIN, f64::max);
    assert_eq!(s.p95_ms(), Some(worst_p95));
    assert!(
        s.metrics["http_req_duration"]
            .approximate
            .contains(&"p(95)".to_string()),
        "without Prometheus, merged percentiles are flagged"
    );
    assert_eq!(s.status, EndState::Succeeded, "{:?}", s.thresholds);
    assert!(s.thresholds.iter().all(|t| t.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_backed_p95_matches_k6_within_a_bucket() {
    if !k6_available() {
        return;
    }
    let Some(prom) = PrometheusServer::start().await else {
        return;
    };
    let target = demo_target().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("script.js"), "import http from 'k6/http';\nexport default function () { http.get(`${__ENV.BASE}/slow/${Math.floor(Math.random() * 40)}`); }\n").unwrap();
    std::fs::write(
        dir.path().join("entry.js"),
        perfsync::spec::render::entry_script(
            "./script.js",
            &perfsync::spec::model::Thresholds::new(),
        ),
    )
    .unwrap();
    let run = |testid: &str, instance: &str, segment: Option<&str>| {
        let mut args = vec!["--vus", "10", "--iterations", "400"];
        if let Some(seg) = segment {
            args.extend([
                "--execution-segment",
                seg,
                "--execution-segment-sequence",
                "0,1/2,1",
            ]);
        }
        let out = k6_remote_write(
            dir.path(),
            "entry.js",
            target,
            &prom.url,
            testid,
            instance,
            &args,
        );
        assert_eq!(out.0, 0, "{}", out.1);
        out
    };
    let client = Prometheus::new(&prom.url);
    let none = perfsync::spec::model::Thresholds::new();

    // Two runners: the merged p95 would be the worst runner's (an upper bound); the
    // histogram's estimate replaces it, clamped to the run's exact maximum, with its bound.
    let start = Utc::now();
    let (a, b) = (
        run("prom-1", "1", Some("0:1/2")),
        run("prom-1", "2", Some("1/2:1")),
    );
    let own: Vec<f64> = [&a, &b]
        .iter()
        .map(|o| {
            values(
                &summary_from_output(&o.1).unwrap(),
                "http_req_duration",
                "p(95)",
            )
        })
        .collect();
    let r = report("prom-1", vec![runner(1, a), runner(2, b)], start);
    let (metrics, notes) = collect(&r, &none, Some(&client)).await;
    assert!(notes.is_empty(), "{notes:?}");
    let m = &metrics["http_req_duration"];
    assert_eq!(m.sources.get("p(95)"), Some(&Source::Prometheus), "{m:?}");
    assert!(!m.approximate.contains(&"p(95)".to_string()));
    assert!(
        matches!(
            m.bounds.get("p(95)"),
            Some(perfsync::results::stats::ErrorBound::Relative { .. })
        ),
        "{m:?}"
    );
    let from_prom = m.values["p(95)"];
    // Native histograms use buckets growing by 2^(1/8) (about 9 %) at k6's schema.
    let worst = own.iter().cloned().fold(f64::MIN, f64::max);
    let ratio = from_prom / worst;
    assert!(
        (0.85..=1.15).contains(&ratio),
        "prometheus p95 {from_prom} vs the runners' {own:?}"
    );
    for key in ["med", "p(90)", "p(95)", "p(99)"] {
        assert!(
            m.values[key] <= m.values["max"] && m.values[key] >= m.values["min"],
            "{m:?}"
        );
    }

    // One runner: k6's own percentiles are exact and stay.
    let start = Utc::now();
    let solo = run("prom-solo", "1", None);
    let k6_p95 = values(
        &summary_from_output(&solo.1).unwrap(),
        "http_req_duration",
        "p(95)",
    );
    let r = report("prom-solo", vec![runner(1, solo)], start);
    let (metrics, notes) = collect(&r, &none, Some(&client)).await;
    assert!(notes.is_empty(), "{notes:?}");
    let m = &metrics["http_req_duration"];
    assert_eq!(m.values["p(95)"], k6_p95, "{m:?}");
    assert_eq!(m.sources.get("p(95)"), None, "{m:?}");
    assert!(m.bounds.is_empty(), "{m:?}");
}

/// A test's script can tag its own samples with another run's `testid` (request tags win over
/// `--tag`): those samples reach Prometheus under the victim's labels, and the victim's
/// figures must not take them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_a_script_writes_under_another_runs_testid_never_count() {
    if !k6_available() {
        return;
    }
    let Some(prom) = PrometheusServer::start().await else {
        return;
    };
    let target = demo_target().await;
    let dir = tempfile::tempdir().unwrap();
    let none = perfsync::spec::model::Thresholds::new();
    std::fs::write(dir.path().join("victim.js"), "import http from 'k6/http';\nexport default function () { http.get(`${__ENV.BASE}/api/items/1`); }\n").unwrap();
    std::fs::write(dir.path().join("forger.js"), "import http from 'k6/http';\nexport default function () { http.get(`${__ENV.BASE}/slow/30`, { tags: { testid: 'victim-1', instance_id: '1', testrun_name: 'victim-1' } }); }\n").unwrap();
    for name in ["victim", "forger"] {
        std::fs::write(
            dir.path().join(format!("{name}-entry.js")),
            perfsync::spec::render::entry_script(&format!("./{name}.js"), &none),
        )
        .unwrap();
    }
    let run = |entry: &str, testid: &str| {
        k6_remote_write(
            dir.path(),
            entry,
            target,
            &prom.url,
            testid,
            "1",
            &["--vus", "4", "--iterations", "80"],
        )
    };
    let forged = run("forger-entry.js", "forger-1");
    assert_eq!(forged.0, 0, "{}", forged.1);
    let start = Utc::now();
    let out = run("victim-entry.js", "victim-1");
    assert_eq!(out.0, 0, "{}", out.1);
    let own = summary_from_output(&out.1).unwrap();
    let own_p95 = values(&own, "http_req_duration", "p(95)");
    let r = report("victim-1", vec![runner(1, out)], start);
    let client = Prometheus::new(&prom.url);
    let (metrics, notes) = collect(&r, &none, Some(&client)).await;
    let m = &metrics["http_req_duration"];
    assert_ne!(
        m.sources.get("p(95)"),
        Some(&Source::Prometheus),
        "polluted series are not used: {m:?} {notes:?}"
    );
    assert_eq!(m.values["p(95)"], own_p95, "the run's own figure stands");
    assert!(
        notes.iter().any(|n| n.contains("http_req_duration")
            && n.contains("victim-1")
            && n.contains("runners counted 80")),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_still_records_a_summary_marked_approximate() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let summary = serde_json::json!({"state": {"testRunDurationMs": 1000.0}, "metrics": {"http_req_duration": {"type": "trend", "values": {"avg": 10.0, "min": 1.0, "max": 30.0, "p(95)": 25.0, "count": 10.0}}}});
    let runners = vec![
        RunnerReport {
            index: 1,
            exit_code: Some(0),
            reason: None,
            summary: Some(summary.clone()),
        },
        RunnerReport {
            index: 2,
            exit_code: Some(0),
            reason: None,
            summary: Some(summary),
        },
    ];
    let r = report("down-1", runners, Utc::now());
    let (metrics, notes) = collect(
        &r,
        &perfsync::spec::model::Thresholds::new(),
        Some(&Prometheus::new(&dead)),
    )
    .await;
    assert!(notes.iter().any(|n| n.contains("estimates")), "{notes:?}");
    assert!(metrics["http_req_duration"]
        .approximate
        .contains(&"p(95)".to_string()));
    let s = summarize(Inputs {
        report: &r,
        thresholds: &perfsync::spec::model::Thresholds::new(),
        metrics,
        notes,
        baseline: None,
        tolerance: &RegressionTolerance::default(),
    });
    assert_eq!(s.status, EndState::Succeeded);
    assert!(!s.notes.is_empty());
}

fn sample(run: &str, end_offset_s: i64, p95: f64) -> RunSummary {
    let start = Utc::now() + chrono::Duration::seconds(end_offset_s);
    let summary = serde_json::json!({"state": {"testRunDurationMs": 1000.0}, "metrics": {
        "http_req_duration": {"type": "trend", "values": {"avg": p95 / 2.0, "min": 1.0, "max": p95 * 2.0, "p(95)": p95, "count": 100.0}},
        "http_reqs": {"type": "counter", "values": {"count": 100.0, "rate": 100.0}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.0, "passes": 0.0, "fails": 100.0}}}});
    let mut r = report(
        run,
        vec![RunnerReport {
            index: 1,
            exit_code: Some(0),
            reason: None,
            summary: Some(summary),
        }],
        start,
    );
    r.end = start + chrono::Duration::seconds(1);
    let th = perfsync::spec::model::Thresholds::new();
    let metrics = perfsync::results::build::merged_metrics(&r, &th);
    summarize(Inputs {
        report: &r,
        thresholds: &th,
        metrics,
        notes: vec![],
        baseline: None,
        tolerance: &RegressionTolerance::default(),
    })
}

/// k6 on `entry` against the demo target at `target`, remote-writing native histograms to
/// the Prometheus at `prom`, tagged as the local executor tags runner `instance` of run
/// `testid` (the k6-operator does the same); `args` are the load options.
fn k6_remote_write(
    dir: &std::path::Path,
    entry: &str,
    target: std::net::SocketAddr,
    prom: &str,
    testid: &str,
    instance: &str,
    args: &[&str],
) -> (i32, String) {
    let base = format!("http://{target}");
    let rw = format!("{prom}/api/v1/write");
    let env = [
        ("BASE", base.as_str()),
        ("K6_PROMETHEUS_RW_SERVER_URL", rw.as_str()),
        ("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", "true"),
        ("K6_PROMETHEUS_RW_PUSH_INTERVAL", "1s"),
    ];
    let (tag_id, tag_instance) = (
        format!("testid={testid}"),
        format!("instance_id={instance}"),
    );
    let mut all = args.to_vec();
    all.extend([
        "--tag",
        &tag_id,
        "--tag",
        &tag_instance,
        "-o",
        "experimental-prometheus-rw",
        "--summary-trend-stats=avg,min,med,max,p(90),p(95),p(99),count",
    ]);
    k6(dir, entry, &all, &env)
}

struct Setup {
    remote: Remote,
    url: String,
    db: TestDb,
    pool: sqlx::PgPool,
    state: tempfile::TempDir,
}

async fn setup() -> Setup {
    let mut remote = Remote::new();
    remote.commit(&as_files(&tests_files(1)), "initial");
    // Pushed over git:// to a `git daemon`, as to a real remote.
    let url = remote.serve(None);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    // Runs must exist for their results to update; the sync plans them.
    for (attempt, id) in ["items-r-1", "items-r-2", "items-r-3"].iter().enumerate() {
        sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status) VALUES ($1, 'items', 'r', $2, 'new', 'test', 'queued')")
            .bind(id)
            .bind(attempt as i32 + 1)
            .execute(&pool)
            .await
            .unwrap();
    }
    Setup {
        remote,
        url,
        db,
        pool,
        state: tempfile::tempdir().unwrap(),
    }
}

fn results_git(s: &Setup) -> ResultsGit {
    ResultsGit {
        source: GitSource::new(
            &s.url,
            "main",
            &s.state.path().join("git"),
            GitAuth::default(),
        ),
        results_dir: "results".into(),
        author: ("perfsync".into(), "perfsync@example.com".into()),
        retries: 3,
        before_push: None,
    }
}

fn remote_log(s: &Setup) -> Vec<String> {
    git(&s.remote.bare, &["log", "--format=%s", "main"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn remote_file(s: &Setup, path: &str) -> Option<String> {
    std::process::Command::new("git")
        .args(["show", &format!("main:{path}")])
        .current_dir(&s.remote.bare)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_recorded_twice_is_recorded_once_and_batched_into_one_commit() {
    let s = setup().await;
    let rec = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None);
    let (a, b) = (sample("items-r-1", 0, 100.0), sample("items-r-2", 5, 120.0));
    assert!(rec.record(&a).await.unwrap());
    assert!(
        !rec.record(&a).await.unwrap(),
        "the second recording changes nothing"
    );
    assert!(rec.record(&b).await.unwrap());
    assert_eq!(rec.flush().await.unwrap(), 2);
    assert_eq!(rec.flush().await.unwrap(), 0);
    let log = remote_log(&s);
    assert_eq!(
        log.len(),
        2,
        "one results commit on top of the initial one: {log:?}"
    );
    assert_eq!(log[0], "perfsync: results of items");
    let json: RunSummary =
        serde_json::from_str(&remote_file(&s, "results/items/items-r-1.json").unwrap()).unwrap();
    assert_eq!(json, a);
    let readme = remote_file(&s, "results/items/README.md").unwrap();
    let first_row = readme.lines().find(|l| l.starts_with("| [")).unwrap();
    assert!(
        first_row.contains("items-r-2") && first_row.contains("120.0 ms"),
        "newest first: {readme}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let status: String = sqlx::query_scalar("SELECT status FROM test_runs WHERE id = 'items-r-1'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_two_steps_completes_on_restart_exactly_once() {
    let s = setup().await;
    // Killed after the database write, before the push.
    let first = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None);
    first.record(&sample("items-r-1", 0, 100.0)).await.unwrap();
    drop(first);
    let restarted = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None);
    let r = restarted.reconcile().await.unwrap();
    assert_eq!((r.from_spool, r.from_git, r.pushed), (0, 0, 1));
    assert!(remote_file(&s, "results/items/items-r-1.json").is_some());

    // Killed after the push, before the database knew: the push is found, not repeated.
    let b = sample("items-r-2", 5, 110.0);
    restarted.record(&b).await.unwrap();
    let git = results_git(&s);
    let key = ResultsKey::load_or_create(s.state.path()).unwrap();
    let history = perfsync::record::results::recent(&s.pool, Some("items"), 30)
        .await
        .unwrap();
    git.write(
        &key,
        &[b.clone()],
        &BTreeMap::from([("items".to_string(), history)]),
        &BTreeMap::new(),
    )
    .unwrap();
    let commits = remote_log(&s).len();
    let r = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None)
        .reconcile()
        .await
        .unwrap();
    assert_eq!(r.pushed, 1);
    assert_eq!(
        remote_log(&s).len(),
        commits,
        "no second commit for content already there"
    );

    // On the remote, sealed by perfsync, but the database lost the result row (restored from
    // a backup, a table emptied by hand) while test_runs still holds the run as ended.
    let c = sample("items-r-3", 10, 90.0);
    restarted.record(&c).await.unwrap();
    assert_eq!(restarted.flush().await.unwrap(), 1);
    sqlx::query("DELETE FROM test_results WHERE run_id = 'items-r-3'")
        .execute(&s.pool)
        .await
        .unwrap();
    let r = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None)
        .reconcile()
        .await
        .unwrap();
    assert_eq!(r.from_git, 1);
    let (pushed, restored): (Option<String>, serde_json::Value) =
        sqlx::query_as("SELECT git_commit, summary FROM test_results WHERE run_id = 'items-r-3'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(pushed.is_some());
    assert_eq!(
        serde_json::from_value::<RunSummary>(restored).unwrap(),
        c,
        "the very summary perfsync wrote"
    );
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM audit_log WHERE run_id = 'items-r-3' AND action = 'run.result-restored'",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(actor, "perfsync", "never an actor from a file");

    // A spooled summary whose database write never happened.
    let d = sample("items-r-4", 15, 95.0);
    let rec = Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None);
    rec.spool(&d).unwrap();
    let r = rec.reconcile().await.unwrap();
    assert_eq!((r.from_spool, r.pushed), (1, 1));
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(&s)), None)
            .reconcile()
            .await
            .unwrap(),
        Default::default()
    );
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_refused_because_the_remote_moved_is_rebuilt_and_retried() {
    let s = setup().await;
    let mut g = results_git(&s);
    let other = s.remote.work.clone();
    g.before_push = Some(Box::new(move |attempt| {
        if attempt == 0 {
            std::fs::write(other.join("NOTES.md"), "someone else pushed").unwrap();
            git(&other, &["add", "-A"]);
            git(&other, &["commit", "-q", "-m", "concurrent commit"]);
            git(&other, &["push", "-q", "origin", "HEAD:main"]);
        }
    }));
    let a = sample("items-r-1", 0, 100.0);
    let key = ResultsKey::load_or_create(s.state.path()).unwrap();
    let commit = g
        .write(
            &key,
            &[a.clone()],
            &BTreeMap::from([("items".to_string(), vec![a])]),
            &BTreeMap::new(),
        )
        .unwrap();
    let log = remote_log(&s);
    assert_eq!(
        log[..2],
        [
            "perfsync: results of items".to_string(),
            "concurrent commit".to_string()
        ],
        "{log:?}"
    );
    assert_eq!(git(&s.remote.bare, &["rev-parse", "main"]), commit);
    assert!(
        remote_file(&s, "NOTES.md").is_some(),
        "the other commit is kept"
    );
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_down_for_a_while_loses_nothing() {
    let s = setup().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url =
        s.db.url
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let flaky = perfsync::record::db::pool(&url).unwrap();
    let rec = std::sync::Arc::new(Recorder::new(flaky, s.state.path(), None, None));
    proxy.set_up(false);
    let a = sample("items-r-1", 0, 100.0);
    let task = {
        let (rec, a) = (rec.clone(), a.clone());
        tokio::spawn(async move { rec.record(&a).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        s.state.path().join("spool/items-r-1.json").exists(),
        "held on disk while the database is away"
    );
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(none, 0);
    proxy.set_up(true);
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    );
    let one: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    assert!(!s.state.path().join("spool/items-r-1.json").exists());
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_gets_annotations_with_the_token_and_the_documented_shape() {
    let (receiver, addr) = Receiver::start().await;
    let g = Grafana::new(&format!("http://{addr}/"), "glsa_secret_token".into());
    let at = Utc::now();
    g.annotate(
        at,
        "items",
        "items-r-1",
        "started",
        "perfsync run items-r-1 started",
    )
    .await
    .unwrap();
    g.annotate(
        at,
        "items",
        "items-r-1",
        "failed",
        "perfsync run items-r-1 failed",
    )
    .await
    .unwrap();
    let reqs = receiver.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    for (i, (method, path, headers, body)) in reqs.iter().enumerate() {
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/api/annotations")
        );
        assert!(headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer glsa_secret_token"));
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["time"].as_i64(), Some(at.timestamp_millis()));
        let verdict = if i == 0 { "started" } else { "failed" };
        assert_eq!(
            v["tags"],
            serde_json::json!(["perfsync", "items", "items-r-1", verdict])
        );
        assert!(v["text"].as_str().unwrap().contains("items-r-1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regressions_past_the_tolerance_are_flagged_and_runs_are_listed() {
    let s = setup().await;
    let rec = Recorder::new(s.pool.clone(), s.state.path(), None, None);
    let base = sample("items-r-1", 0, 100.0);
    rec.record(&base).await.unwrap();
    let mut slower = sample("items-r-2", 5, 125.0);
    let baseline = perfsync::record::results::baseline(&s.pool, "items", None, "items-r-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(baseline.run.id, "items-r-1");
    slower.comparison = Some(perfsync::results::compare::compare(
        &slower,
        &baseline,
        &RegressionTolerance::default(),
    ));
    let c = slower.comparison.as_ref().unwrap();
    assert!(
        c.regression && (c.p95_change_percent.unwrap() - 25.0).abs() < 1e-9,
        "{c:?}"
    );
    rec.record(&slower).await.unwrap();
    let ok = perfsync::results::compare::compare(
        &sample("x", 0, 105.0),
        &baseline,
        &RegressionTolerance::default(),
    );
    assert!(!ok.regression, "5 % is inside the 10 % tolerance");

    let bin = env!("CARGO_BIN_EXE_perfsync");
    let out = std::process::Command::new(bin)
        .args(["runs", "list", "--test", "items", "--format", "json"])
        .env("PERFSYNC_DATABASE_URL", &s.db.url)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["run"]["id"], "items-r-2", "newest first");
    assert_eq!(v[1]["run"]["id"], "items-r-1");
    let show = std::process::Command::new(bin)
        .args(["runs", "show", "items-r-2"])
        .env("PERFSYNC_DATABASE_URL", &s.db.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("against items-r-1: p95 rose 25.0%"), "{text}");
    let cmp = std::process::Command::new(bin)
        .args([
            "runs",
            "compare",
            "items-r-1",
            "items-r-2",
            "--format",
            "json",
        ])
        .env("PERFSYNC_DATABASE_URL", &s.db.url)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&cmp.stdout).unwrap();
    assert_eq!(v["regression"], true);
    let missing = std::process::Command::new(bin)
        .args(["runs", "show", "nope"])
        .env("PERFSYNC_DATABASE_URL", &s.db.url)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_failing_run_is_judged_recorded_pushed_and_annotated() {
    if !k6_available() {
        return;
    }
    let s = setup().await;
    let (receiver, grafana_addr) = Receiver::start().await;
    let target = demo_target().await;
    let dir = tempfile::tempdir().unwrap();
    let strict = perfsync::spec::model::Thresholds::from_iter([(
        "http_req_duration".to_string(),
        vec![ThresholdEntry::Expr("p(95)<0.001".into())],
    )]);
    std::fs::write(dir.path().join("script.js"), SCRIPT).unwrap();
    std::fs::write(
        dir.path().join("entry.js"),
        perfsync::spec::render::entry_script("./script.js", &strict),
    )
    .unwrap();
    let rec = Recorder::new(
        s.pool.clone(),
        s.state.path(),
        Some(results_git(&s)),
        Some(Grafana::new(
            &format!("http://{grafana_addr}"),
            "tok".into(),
        )),
    );
    let start = Utc::now();
    rec.started("items-r-1", "items", start).await.unwrap();
    let base = format!("http://{target}");
    let out = k6(
        dir.path(),
        "entry.js",
        &[
            "--vus",
            "2",
            "--iterations",
            "10",
            "--summary-trend-stats=avg,min,med,max,p(90),p(95),p(99),count",
        ],
        &[("BASE", &base)],
    );
    assert_eq!(out.0, 99, "k6 itself sees the threshold crossed");
    let r = report("items-r-1", vec![runner(1, out)], start);
    let summary = rec
        .finish(perfsync::record::recorder::Finish {
            report: &r,
            thresholds: &strict,
            baseline: None,
            prometheus: None,
            tolerance: &RegressionTolerance::default(),
            series: None,
            regression: &perfsync::config::RegressionPolicy::default(),
            trends: &[],
        })
        .await
        .unwrap();
    assert_eq!(summary.status, EndState::Failed);
    assert!(summary.reason.as_deref().unwrap().contains("p(95)<0.001"));
    let status: String = sqlx::query_scalar("SELECT status FROM test_runs WHERE id = 'items-r-1'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM test_run_events WHERE run_id = 'items-r-1' ORDER BY id",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(events, vec!["running", "failed"]);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE run_id = 'items-r-1' AND action = 'run.finished' AND actor LIKE 'Ada Tester%'").fetch_one(&s.pool).await.unwrap();
    assert_eq!(audit, 1);
    assert!(remote_file(&s, "results/items/items-r-1.json")
        .unwrap()
        .contains("\"status\": \"failed\""));
    let tags: Vec<serde_json::Value> = receiver
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, _, b)| serde_json::from_str::<serde_json::Value>(b).unwrap()["tags"].clone())
        .collect();
    assert_eq!(
        tags,
        vec![
            serde_json::json!(["perfsync", "items", "items-r-1", "started"]),
            serde_json::json!(["perfsync", "items", "items-r-1", "failed"])
        ]
    );
    s.db.drop_schema().await;
}
