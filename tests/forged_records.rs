//! Records that cannot be forged: a results file planted in the repository never becomes a
//! result (nor a baseline, nor an audit actor), a file perfsync sealed never overrides a run
//! still in flight, and an empty secret never starts the daemon.

mod support;

use chrono::Utc;
use perfsync::record::git_results::{result_path, ResultsGit};
use perfsync::record::recorder::Recorder;
use perfsync::record::seal::ResultsKey;
use perfsync::results::summary::{EndState, RunInfo, RunSummary, RunTrigger};
use perfsync::source::git::{GitAuth, GitSource};
use support::*;

use support::logs::Logs;

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
    let url = remote.serve(None);
    let db = TestDb::new().await;
    let pool = db.pool().await;
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
        source: GitSource::for_purpose(
            &s.url,
            "main",
            s.state.path(),
            GitAuth::default(),
            "results",
        ),
        results_dir: "results".into(),
        author: ("perfsync".into(), "perfsync@example.com".into()),
        retries: 3,
        before_push: None,
    }
}

fn recorder(s: &Setup) -> Recorder {
    Recorder::new(s.pool.clone(), s.state.path(), Some(results_git(s)), None)
}

async fn add_run(pool: &sqlx::PgPool, id: &str, attempt: i32, status: &str, ended: Option<&str>) {
    sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status, author, ended_at) VALUES ($1, 'items', 'r', $2, 'new', 'change', $3, 'Ada Tester <ada@example.com>', $4::timestamptz)")
        .bind(id)
        .bind(attempt)
        .bind(status)
        .bind(ended)
        .execute(pool)
        .await
        .unwrap();
}

fn summary(run: &str, status: EndState, author: &str, p95: f64, end: &str) -> RunSummary {
    let metrics = serde_json::from_value(serde_json::json!({
        "http_req_duration": {"type": "trend", "values": {"avg": p95 / 2.0, "p(95)": p95, "count": 100.0}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.0, "passes": 0.0, "fails": 100.0}}
    }))
    .unwrap();
    RunSummary {
        api_version: "perfsync.dev/v1alpha1".into(),
        kind: "RunSummary".into(),
        run: RunInfo {
            id: run.into(),
            test: "items".into(),
            revision: "r".into(),
            commit: None,
            author: Some(author.into()),
            trigger: RunTrigger::Change,
            executor: "local".into(),
            parallelism: 1,
            start: "2026-11-01T10:00:00.000Z".into(),
            end: end.into(),
            duration_seconds: 60.0,
        },
        status,
        reason: None,
        metrics,
        thresholds: vec![],
        comparison: None,
        regression: None,
        runners: vec![],
        notes: vec![],
    }
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn remote_file(s: &Setup, path: &str) -> Option<Vec<u8>> {
    std::process::Command::new("git")
        .args(["show", &format!("main:{path}")])
        .current_dir(&s.remote.bare)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
}

const END: &str = "2026-11-01T10:01:00.000Z";

#[tokio::test(flavor = "current_thread")]
async fn a_planted_results_file_is_never_imported_and_is_named_with_its_commit() {
    let s = setup().await;
    // A run that ended while its result row went missing (the one case git may fill in),
    // and one still queued.
    add_run(&s.pool, "items-r-1", 1, "succeeded", Some(END)).await;
    add_run(&s.pool, "items-r-2", 2, "queued", None).await;
    // The forger knows the layout and the run ids, and even the file format: a `mac` it
    // made under a key of its own, and a file with none.
    let fake_baseline = summary(
        "items-r-1",
        EndState::Succeeded,
        "Mallory <m@evil.example>",
        1.0,
        END,
    );
    let unsealed = summary(
        "items-r-2",
        EndState::Succeeded,
        "Mallory <m@evil.example>",
        1.0,
        END,
    );
    let planted = s.remote.commit(
        &[
            (
                result_path("results", &fake_baseline).as_str(),
                Some(
                    String::from_utf8(ResultsKey::from_bytes([42; 32]).seal(&fake_baseline))
                        .unwrap()
                        .as_str(),
                ),
            ),
            (
                result_path("results", &unsealed).as_str(),
                Some(serde_json::to_string_pretty(&unsealed).unwrap().as_str()),
            ),
        ],
        "add a baseline",
    );
    s.remote
        .commit(&[("NOTES.md", Some("later work"))], "unrelated");

    let (logs, _guard) = Logs::capture();
    let r = recorder(&s).reconcile().await.unwrap();
    assert_eq!(r.from_git, 0, "{}", logs.text());
    assert_eq!(count(&s.pool, "SELECT count(*) FROM test_results").await, 0);
    assert_eq!(
        count(
            &s.pool,
            "SELECT count(*) FROM audit_log WHERE actor LIKE '%Mallory%'"
        )
        .await,
        0,
        "no actor from a file"
    );
    let baseline = perfsync::record::results::baseline(&s.pool, "items", None, "items-r-3")
        .await
        .unwrap();
    assert_eq!(baseline, None, "no planted baseline");
    let status: String = sqlx::query_scalar("SELECT status FROM test_runs WHERE id = 'items-r-2'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(status, "queued");
    let text = logs.text();
    for (file, why) in [
        ("results/items/items-r-1.json", "MAC does not verify"),
        ("results/items/items-r-2.json", "has not ended"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains("results file ignored") && l.contains(file))
            .unwrap_or_else(|| panic!("no warning for {file}: {text}"));
        assert!(
            line.contains(&planted) && line.contains(why),
            "names the file, the commit that planted it and why: {line}"
        );
    }
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_sealed_file_for_a_run_in_flight_never_wins_over_the_runs_own_result() {
    let s = setup().await;
    add_run(&s.pool, "items-r-1", 1, "running", None).await;
    let rec = recorder(&s);
    // A file perfsync itself sealed (its key, its format), replayed for a run id that is
    // public and still running: say, from an earlier life of the same database.
    let key = rec.results_key().unwrap();
    let replayed = summary("items-r-1", EndState::Succeeded, "perfsync", 1.0, END);
    s.remote.commit(
        &[(
            result_path("results", &replayed).as_str(),
            Some(String::from_utf8(key.seal(&replayed)).unwrap().as_str()),
        )],
        "results of items",
    );
    let (logs, _guard) = Logs::capture();
    let r = rec.reconcile().await.unwrap();
    assert_eq!(r.from_git, 0, "{}", logs.text());
    assert_eq!(count(&s.pool, "SELECT count(*) FROM test_results").await, 0);
    assert!(logs.text().contains("has not ended"), "{}", logs.text());

    // The run ends: its own result is what gets recorded, and what the repository shows.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let own = summary(
        "items-r-1",
        EndState::Failed,
        "Ada Tester <ada@example.com>",
        950.0,
        &now,
    );
    assert!(
        rec.record(&own).await.unwrap(),
        "the run's own result is written"
    );
    assert_eq!(rec.flush().await.unwrap(), 1);
    let stored = perfsync::record::results::get(&s.pool, "items-r-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, own);
    let file = remote_file(&s, "results/items/items-r-1.json").unwrap();
    assert_eq!(key.open(&file).unwrap(), own);
    assert_eq!(
        recorder(&s).reconcile().await.unwrap(),
        Default::default(),
        "nothing left to do"
    );
    s.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_webhook_secret_file_stops_the_daemon_at_start_naming_the_reference() {
    let db = TestDb::new().await;
    let _pool = db.pool().await;
    let remote = Remote::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("github-secret");
    std::fs::write(&secret, "\n").unwrap();
    let cfg = dir.path().join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{}\nwebhooks:\n  github: {{file: {}}}\nsync:\n  watch: false\n",
            remote.path_url(),
            dir.path().join("state").display(),
            free_port(),
            secret.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("PERFSYNC_DATABASE_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        db.drop_schema().await;
        panic!("the daemon started with an empty webhook secret");
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    assert!(
        stderr.contains("webhooks.github") && stderr.contains(&secret.display().to_string()),
        "names the reference: {stderr}"
    );
    db.drop_schema().await;
}
