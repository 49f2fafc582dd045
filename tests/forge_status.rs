//! Commit statuses and merge-request comments, end to end: the real daemon on the local
//! executor runs a passing and a failing k6 test against the demo target and reports to
//! loopback stand-ins of GitHub, GitLab and Gitea that accept only the documented request
//! shapes (`tests/support/forges/`). Faults (500 once, 429 with Retry-After once) are retried
//! and the status still lands once; a wrong token is refused for good; a daemon killed while
//! the forge is down sends the owed status exactly once after its restart.

#[path = "support/forges/mod.rs"]
mod forges;
mod support;

use forges::e2e::files;
use forges::{Fake, Fault};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::daemon::*;
use support::parts::*;
use support::*;

const SECRET: &str = "hook-secret-forge-status";
const PUBLIC: &str = "https://perfsync.example.test";
const GH_TOKEN: &str = "ghp_statusTOKENforTESTS0001";
const GL_TOKEN: &str = "glpat-statusTOKENforTESTS02";
const GT_TOKEN: &str = "gitea-statusTOKENforTESTS03";
const WRONG_TOKEN: &str = "ghp_WRONGtokenNEVERaccepted9";

fn smoke(name: &str, target: std::net::SocketAddr, threshold: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("tests/{name}/perftest.yaml"),
            format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 2, duration: 2s}}\n  thresholds:\n    http_req_duration: ['{threshold}']\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n"),
        ),
        (format!("tests/{name}/script.js"), "import http from 'k6/http';\nimport { sleep } from 'k6';\nexport default function () {\n  http.get(`${__ENV.BASE_URL}/api/items`);\n  sleep(0.05);\n}\n".into()),
    ]
}

fn write_config(dir: &Path, repo: &str, port: u16, forges_yaml: &str) -> PathBuf {
    forges::e2e::write_config(
        dir,
        repo,
        port,
        PUBLIC,
        "FS_HOOK_SECRET",
        2,
        &format!("forges:\n{forges_yaml}"),
    )
}

fn start(cfg: &Path, db_url: &str, port: u16) -> Daemon {
    start_daemon(
        cfg,
        db_url,
        port,
        &[
            ("FS_HOOK_SECRET", SECRET),
            ("FS_GH_TOKEN", GH_TOKEN),
            ("FS_GL_TOKEN", GL_TOKEN),
            ("FS_GT_TOKEN", GT_TOKEN),
            ("FS_WRONG_TOKEN", WRONG_TOKEN),
        ],
    )
}

/// The daemon reporting to `forges_yaml`, started past its first sync on what every daemon
/// test starts from: a served git remote with one commit, a database, a state directory (with
/// the configuration) and a free port.
async fn started(
    forges_yaml: &str,
) -> (
    Remote,
    TestDb,
    sqlx::PgPool,
    tempfile::TempDir,
    u16,
    PathBuf,
    Daemon,
) {
    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &url, port, forges_yaml);
    let daemon = start(&cfg, &db.url, port);
    wait_baseline(&pool).await;
    (remote, db, pool, dir, port, cfg, daemon)
}

async fn results(pool: &sqlx::PgPool, n: i64) -> Vec<(String, String, String)> {
    wait_for("the runs' results", 120, || async {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT run_id, test_id, status FROM test_results ORDER BY test_id")
                .fetch_all(pool)
                .await
                .ok()?;
        (rows.len() as i64 >= n).then_some(rows)
    })
    .await
}

/// The states a forge got for one context on one commit, in order.
fn states(f: &Fake, sha: &str, context: &str) -> Vec<String> {
    f.statuses()
        .into_iter()
        .filter(|s| s.sha == sha && s.context == context)
        .map(|s| s.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_forge_gets_pending_then_the_verdict_on_the_commit_and_one_comment_kept_up_to_date() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let gh = forges::github::start(GH_TOKEN, "qa/load-tests").await;
    let gl = forges::gitlab::start(GL_TOKEN, "qa/load-tests").await;
    let gt = forges::gitea::start(GT_TOKEN, "qa/load-tests").await;
    // A GitHub given the wrong token: refused for good.
    let gh2 = forges::github::start(GH_TOKEN, "qa/load-tests").await;
    for f in [&gh, &gl, &gt] {
        f.set_merge_request(Some(7));
    }
    // GitHub answers the first status 500, GitLab the first 429 with Retry-After.
    gh.fault("/statuses/", Fault::ServerError);
    gl.fault("/statuses/", Fault::RateLimited(1));

    let forges_yaml = format!(
        "- kind: github\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_GH_TOKEN}}\n  comment: true\n\
         - kind: gitlab\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_GL_TOKEN}}\n  comment: true\n\
         - kind: gitea\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_GT_TOKEN}}\n  comment: true\n\
         - kind: github\n  name: github-wrong-token\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_WRONG_TOKEN}}\n",
        forges::github::api_url(&gh),
        forges::gitlab::api_url(&gl),
        forges::gitea::api_url(&gt),
        forges::github::api_url(&gh2),
    );
    let (remote, db, pool, _dir, _port, cfg, daemon) = started(&forges_yaml).await;

    let mut all = smoke("fast", target, "p(95)<2000");
    all.extend(smoke("slow", target, "p(95)<0.001"));
    let head = remote.commit(&files(&all), "add a passing and a failing test");
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);

    let rows = results(&pool, 2).await;
    let verdict: std::collections::BTreeMap<String, (String, String)> = rows
        .iter()
        .map(|(run, test, st)| (test.clone(), (run.clone(), st.clone())))
        .collect();
    assert_eq!(verdict["fast"].1, "succeeded");
    assert_eq!(verdict["slow"].1, "failed");

    // Every delivery settles: sent (or, for a start overtaken by its end, superseded) — the
    // wrong token's for good, refused.
    wait_for("the deliveries to settle", 60, || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (open == 0).then_some(())
    })
    .await;

    let expect = [
        (&gh, "pending", "success", "failure"),
        (&gl, "running", "success", "failed"),
        (&gt, "pending", "success", "failure"),
    ];
    for (f, started, passed, failed) in expect {
        for (test, end) in [("fast", passed), ("slow", failed)] {
            let context = format!("perfsync/{test}");
            assert_eq!(
                states(f, &head, &context),
                vec![started.to_string(), end.to_string()],
                "{}: {context}: {:?}",
                f.base(),
                f.statuses()
            );
            let last = f
                .statuses()
                .into_iter()
                .rev()
                .find(|s| s.context == context)
                .unwrap();
            let run = &verdict[test].0;
            assert_eq!(
                last.target_url.as_deref(),
                Some(format!("{PUBLIC}/runs/{run}").as_str())
            );
            let word = if test == "fast" {
                "succeeded"
            } else {
                "failed"
            };
            assert!(
                last.description.starts_with(word) && last.description.contains("p95"),
                "{}",
                last.description
            );
            assert!(last.description.chars().count() <= 140);
        }
        // No status on any other commit.
        assert!(
            f.statuses().iter().all(|s| s.sha == head),
            "{:?}",
            f.statuses()
        );
    }
    // The faults were retried: each status still landed once (above), after one refusal.
    assert_eq!(gh.answered("/statuses/", 500), 1);
    assert_eq!(gl.answered("/statuses/", 429), 1);
    // The wrong token got a 401 per status, each tried once and recorded for good.
    let refused: Vec<(String, i32, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT state, attempts, last_status, last_error FROM deliveries WHERE target = 'forge:github-wrong-token' AND event = 'ended'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for (state, attempts, last, error) in &refused {
        assert_eq!((state.as_str(), *attempts, *last), ("failed", 1, Some(401)));
        let error = error.as_deref().unwrap_or("");
        assert!(
            error.contains("401") && error.contains("Bad credentials"),
            "{error}"
        );
        assert!(!error.contains(WRONG_TOKEN));
    }
    assert!(gh2.statuses().is_empty());
    assert_eq!(gh2.answered("/statuses/", 401), 4, "each status tried once");

    // One comment per forge on merge request 7: created once, then updated in place.
    for f in [&gh, &gl, &gt] {
        let ops = f.comment_ops();
        let creates = ops.iter().filter(|o| o.op == "create").count();
        let updates = ops.iter().filter(|o| o.op == "update").count();
        assert_eq!((creates, updates), (1, 1), "{}: {ops:?}", f.base());
        assert!(ops.iter().all(|o| o.mr == 7 && o.id == ops[0].id));
        let comments = f.comments();
        assert_eq!(comments.len(), 1);
        let body = &comments.values().next().unwrap().1;
        assert!(
            body.contains(&format!("perfsync:comment commit={head}")),
            "{body}"
        );
        assert!(
            body.contains(&format!("load tests at `{}`", &head[..7])),
            "{body}"
        );
        assert!(body.contains("| fast | ✅ succeeded |"), "{body}");
        assert!(body.contains("| slow | ❌ failed |"), "{body}");
        for (run, _) in verdict.values() {
            assert!(
                body.contains(&format!("[{run}]({PUBLIC}/runs/{run})")),
                "{body}"
            );
        }
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM forge_comments WHERE commit_sha = $1")
            .bind(&head)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 3, "the comment ids are kept per forge");

    // No token in the log or the outbox.
    let log = std::fs::read_to_string(cfg.with_file_name("daemon.log")).unwrap_or_default();
    let outbox: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(last_error, '') || payload::text FROM deliveries")
            .fetch_all(&pool)
            .await
            .unwrap();
    for t in [GH_TOKEN, GL_TOKEN, GT_TOKEN, WRONG_TOKEN] {
        assert!(!log.contains(t), "a token in the log");
        assert!(
            outbox.iter().all(|o| !o.contains(t)),
            "a token in the outbox"
        );
    }
    drop(daemon);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_owed_when_the_daemon_is_killed_is_sent_exactly_once_after_a_restart() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let gh = forges::github::start(GH_TOKEN, "qa/load-tests").await;
    // The forge is down from the start: every status is answered 500.
    gh.set_down(true);
    let forges_yaml = format!(
        "- kind: github\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_GH_TOKEN}}\n",
        forges::github::api_url(&gh)
    );
    let (remote, db, pool, _dir, port, cfg, mut daemon) = started(&forges_yaml).await;
    let head = remote.commit(&files(&smoke("fast", target, "p(95)<2000")), "add a test");
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);
    let rows = results(&pool, 1).await;
    let run = rows[0].0.clone();
    assert_eq!(rows[0].2, "succeeded");

    // The verdict's status has been tried (and refused) at least once: the daemon owes it.
    wait_for("an attempt at the verdict's status", 30, || async {
        let attempts: i32 = sqlx::query_scalar(
            "SELECT attempts FROM deliveries WHERE run_id = $1 AND kind = 'status' AND event = 'ended'",
        )
        .bind(&run)
        .fetch_optional(&pool)
        .await
        .ok()??;
        (attempts >= 1).then_some(())
    })
    .await;
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    let state: String = sqlx::query_scalar(
        "SELECT state FROM deliveries WHERE run_id = $1 AND kind = 'status' AND event = 'ended'",
    )
    .bind(&run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "pending");
    assert!(gh.statuses().is_empty(), "nothing was accepted while down");
    let refused_before = gh.answered("/statuses/", 500);
    assert!(refused_before >= 1);

    // The forge comes back; a new daemon resumes the outbox.
    gh.set_down(false);
    let daemon = start(&cfg, &db.url, port);
    let context = "perfsync/fast";
    wait_for("the verdict's status after the restart", 60, || async {
        states(&gh, &head, context)
            .iter()
            .any(|s| s == "success")
            .then_some(())
    })
    .await;
    // Time for a duplicate to show up, if one were coming.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = states(&gh, &head, context);
    assert_eq!(
        got.iter().filter(|s| *s == "success").count(),
        1,
        "sent exactly once: {got:?}"
    );
    assert_eq!(got.last().map(String::as_str), Some("success"), "{got:?}");
    assert!(
        got.len() <= 2 && got.iter().filter(|s| *s == "pending").count() <= 1,
        "{got:?}"
    );
    let (state, attempts): (String, i32) = sqlx::query_as(
        "SELECT state, attempts FROM deliveries WHERE run_id = $1 AND kind = 'status' AND event = 'ended'",
    )
    .bind(&run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "sent");
    assert!(attempts as usize > 1, "the restart retried it: {attempts}");
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_plans WHERE run_id = $1")
        .bind(&run)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(plans <= 2, "planned once per event");
    drop(daemon);
    db.drop_schema().await;
}

/// A recorded run of `test` at `sha`: its queued-then-ended row and its result.
async fn recorded(
    pool: &sqlx::PgPool,
    run: &str,
    test: &str,
    sha: &str,
    status: &str,
) -> perfsync::results::RunSummary {
    sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status, commit, started_at) VALUES ($1, $2, 'rev', 1, 'new', 'change', 'running', $3, now())")
        .bind(run)
        .bind(test)
        .bind(sha)
        .execute(pool)
        .await
        .unwrap();
    let s: perfsync::results::RunSummary = serde_json::from_value(serde_json::json!({
        "apiVersion": "perfsync.dev/v1alpha1", "kind": "RunSummary",
        "run": {"id": run, "test": test, "revision": "rev", "commit": sha, "trigger": "change",
                "executor": "local", "parallelism": 1, "start": "2025-01-01T00:00:00Z",
                "end": "2025-01-01T00:00:05Z", "durationSeconds": 5.0},
        "status": status,
        "metrics": {"http_req_duration": {"type": "trend", "values": {"p(95)": 42.0}}},
        "thresholds": [], "runners": []
    }))
    .unwrap();
    assert!(perfsync::record::results::record_result(pool, &s, None)
        .await
        .unwrap());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_plans_once_gives_up_after_max_attempts_and_catches_up_what_a_crash_left() {
    let gh = forges::github::start(GH_TOKEN, "qa/load-tests").await;
    gh.set_down(true);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    std::env::set_var("FS_OUTBOX_TOKEN", GH_TOKEN);
    let config = perfsync::config::Config::parse(
        "perfsync.yaml",
        &format!(
            "server:\n  publicUrl: {PUBLIC}\ndelivery:\n  maxAttempts: 3\n  initialBackoff: 50ms\n  maxBackoff: 100ms\n  requestTimeout: 2s\nforges:\n- kind: github\n  apiUrl: {}\n  repository: qa/load-tests\n  token: {{env: FS_OUTBOX_TOKEN}}\n",
            forges::github::api_url(&gh)
        ),
    )
    .unwrap();
    let d = perfsync::record::outbox::Deliveries::from_config(&config, pool.clone())
        .unwrap()
        .expect("a forge is configured");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let s = recorded(&pool, "t-0123456789-1", "t", sha, "failed").await;

    assert_eq!(d.plan_ended(&s).await.unwrap(), 1, "one status");
    assert_eq!(d.plan_ended(&s).await.unwrap(), 0, "planned once");
    assert_eq!(
        d.plan_started(&s.run.id).await.unwrap(),
        0,
        "no start after the end"
    );

    // Down for every attempt: given up after maxAttempts, recorded.
    for _ in 0..60 {
        d.pass().await.unwrap();
        let state: String = sqlx::query_scalar("SELECT state FROM deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
        if state != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (state, attempts, last_status, last_error): (String, i32, Option<i32>, Option<String>) =
        sqlx::query_as("SELECT state, attempts, last_status, last_error FROM deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts, last_status),
        ("failed", 3, Some(500))
    );
    let last_error = last_error.unwrap();
    assert!(
        last_error.starts_with("gave up after 3 attempts: github: HTTP 500"),
        "{last_error}"
    );
    assert_eq!(gh.answered("/statuses/", 500), 3);

    // A result recorded by a process that died before planning: the catch-up plans it, once.
    gh.set_down(false);
    let s2 = recorded(&pool, "u-0123456789-1", "u", sha, "succeeded").await;
    assert_eq!(d.catch_up().await.unwrap(), 1);
    assert_eq!(d.catch_up().await.unwrap(), 0);
    d.pass().await.unwrap();
    let got = states(&gh, sha, "perfsync/u");
    assert_eq!(got, vec!["success".to_string()]);
    let sent: String = sqlx::query_scalar("SELECT state FROM deliveries WHERE run_id = $1")
        .bind(&s2.run.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sent, "sent");
    let status = gh.statuses().pop().unwrap();
    assert_eq!(
        status.target_url,
        Some(format!("{PUBLIC}/runs/{}", s2.run.id))
    );
    assert_eq!(status.description, "succeeded · p95 42 ms (no baseline)");
    db.drop_schema().await;
}
