//! The whole loop on the local executor, as processes: a git remote on loopback, a commit that
//! adds a test, a GitHub webhook, a real k6 run against a loopback target, the verdict, the row
//! in PostgreSQL, the results commit on the remote, the status page and the API.

mod support;

use std::process::Command;
use std::time::Duration;
use support::daemon::*;
use support::parts::*;
use support::*;

const SECRET: &str = "hook-secret-e2e";
const TOKEN: &str = "api-token-e2e";

fn start(cfg: &std::path::Path, db_url: &str, port: u16) -> Daemon {
    start_daemon(
        cfg,
        db_url,
        port,
        &[("E2E_HOOK_SECRET", SECRET), ("E2E_API_TOKEN", TOKEN)],
    )
}

fn write_config(dir: &std::path::Path, repo: &str, port: u16) -> std::path::PathBuf {
    let cfg = dir.join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {repo}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  apiToken: {{env: E2E_API_TOKEN}}\nwebhooks:\n  github: {{env: E2E_HOOK_SECRET}}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n  maxConcurrentRuns: 2\nexecutor:\n  kind: local\nresults:\n  authorName: perfsync-bot\n  authorEmail: bot@example.com\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

fn smoke(
    name: &str,
    target: std::net::SocketAddr,
    duration: &str,
    threshold: &str,
) -> Vec<(String, String)> {
    vec![
        (
            format!("tests/{name}/perftest.yaml"),
            format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 2, duration: {duration}}}\n  thresholds:\n    http_req_duration: ['{threshold}']\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n"),
        ),
        (format!("tests/{name}/script.js"), "import http from 'k6/http';\nimport { check, sleep } from 'k6';\nexport default function () {\n  check(http.get(`${__ENV.BASE_URL}/api/items`), { 'is 200': (r) => r.status === 200 });\n  sleep(0.05);\n}\n".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_test_runs_and_its_verdict_lands_in_postgres_git_and_the_status_page() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &url, port);
    let mut daemon = start(&cfg, &db.url, port);
    wait_baseline(&pool).await;

    let files = smoke("smoke", target, "2s", "p(95)<2000");
    let head = remote.commit(
        &files
            .iter()
            .map(|(a, b)| (a.as_str(), Some(b.as_str())))
            .collect::<Vec<_>>(),
        "add smoke test",
    );
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);

    let (run_id, verdict): (String, String) = wait_for("the run's result", 90, || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT run_id, status FROM test_results WHERE test_id = 'smoke'",
        )
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    assert_eq!(verdict, "succeeded");
    let author: Option<String> = sqlx::query_scalar("SELECT author FROM test_runs WHERE id = $1")
        .bind(&run_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(author.as_deref(), Some("Ada Tester <ada@example.com>"));
    let summary: serde_json::Value =
        sqlx::query_scalar("SELECT summary FROM test_results WHERE run_id = $1")
            .bind(&run_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        summary["metrics"]["http_reqs"]["values"]["count"]
            .as_f64()
            .unwrap()
            > 10.0,
        "k6 really hit the target"
    );

    // The results commit on the remote, by the configured author.
    let pushed = wait_for("the results commit", 30, || async {
        let out = Command::new("git")
            .args(["show", &format!("main:results/smoke/{run_id}.json")])
            .current_dir(&remote.bare)
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .await;
    let _ = pushed;
    let author = git(&remote.bare, &["log", "-1", "--format=%an", "main"]);
    assert_eq!(author, "perfsync-bot");

    // The status page and the API show it.
    let (status, html) = http(daemon.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("smoke") && html.contains("succeeded") && html.contains("<svg"),
        "{html}"
    );
    let (status, run_html) = http(daemon.addr, "GET", &format!("/runs/{run_id}"), &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        run_html.contains("p(95)&lt;2000") && run_html.contains("pass"),
        "{run_html}"
    );
    let (status, _) = http(daemon.addr, "GET", "/api/v1/runs", &[], b"").await;
    assert_eq!(status, 401, "the API needs the token");
    let auth = format!("Bearer {TOKEN}");
    let (status, runs) = http(
        daemon.addr,
        "GET",
        "/api/v1/runs?test=smoke",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[0]["id"], run_id.as_str());

    // A manual run through the API, then aborted through the API.
    let long = smoke("smoke", target, "60s", "p(95)<2000");
    let head = remote.commit(
        &long
            .iter()
            .map(|(a, b)| (a.as_str(), Some(b.as_str())))
            .collect::<Vec<_>>(),
        "longer",
    );
    let (status, _) = http(
        daemon.addr,
        "POST",
        "/api/v1/sync",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 202);
    let running: String = wait_for("the longer run to start", 60, || async {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM test_runs WHERE status = 'running' AND commit = $1",
        )
        .bind(&head)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    let (status, manual) = http(
        daemon.addr,
        "POST",
        "/api/v1/tests/smoke/runs",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 202, "{manual}");
    let manual_id = serde_json::from_str::<serde_json::Value>(&manual).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = http(
        daemon.addr,
        "POST",
        &format!("/api/v1/runs/{running}/abort"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 202);
    let aborted: String = wait_for("the aborted run's result", 60, || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM test_results WHERE run_id = $1")
            .bind(&running)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(aborted, "aborted");
    let (status, _) = http(
        daemon.addr,
        "POST",
        &format!("/api/v1/runs/{manual_id}/abort"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert!(
        status == 200 || status == 202,
        "the manual run is aborted queued or running: {status}"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor LIKE 'api%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(audited >= 3, "sync, manual run and aborts are audited");

    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_twenty_times_leaves_every_run_recorded_exactly_once() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let mut remote = Remote::new();
    let url = remote.serve(None);
    let files = smoke("chaos", target, "1s", "p(95)<2000");
    remote.commit(
        &files
            .iter()
            .map(|(a, b)| (a.as_str(), Some(b.as_str())))
            .collect::<Vec<_>>(),
        "baseline",
    );
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &url, port);
    eprintln!("daemon log: {}", cfg.with_file_name("daemon.log").display());
    let mut d = start(&cfg, &db.url, port);
    wait_baseline(&pool).await;
    let _ = d.child.kill();
    let _ = d.child.wait();
    for round in 0..20u64 {
        let changed = smoke("chaos", target, "1s", &format!("p(95)<{}", 2000 + round));
        remote.commit(
            &changed
                .iter()
                .map(|(a, b)| (a.as_str(), Some(b.as_str())))
                .collect::<Vec<_>>(),
            &format!("round {round}"),
        );
        let before = git(&remote.bare, &["rev-parse", "main"]);
        let mut d = start(&cfg, &db.url, port);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3000))).await;
        let _ = d.child.kill();
        let _ = d.child.wait();
        let after = git(&remote.bare, &["rev-parse", "main"]);
        eprintln!(
            "ROUND {round}: {}",
            git(&remote.bare, &["log", "--format=%h %an %s", "-2", "main"]).replace('\n', " | ")
        );
        let ff = std::process::Command::new("git")
            .args(["merge-base", "--is-ancestor", &before, &after])
            .current_dir(&remote.bare)
            .status()
            .unwrap()
            .success();
        assert!(
            ff,
            "round {round}: main moved from {before} to {after} without keeping it:\n{}",
            git(
                &remote.bare,
                &["log", "--format=%h %an %s %p", "-3", &after]
            )
        );
    }
    // One last daemon, left to settle everything.
    let mut d = start(&cfg, &db.url, port);
    let head = remote.head();
    wait_for("every run to end and be pushed", 180, || async {
        let synced: Option<String> = sqlx::query_scalar("SELECT last_commit FROM sync_state")
            .fetch_one(&pool)
            .await
            .ok()
            .flatten();
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM test_runs WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        let unpushed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM test_results WHERE git_commit IS NULL")
                .fetch_one(&pool)
                .await
                .ok()?;
        // The daemon's own results commits may come after the last test commit.
        let has_head = synced.is_some_and(|c| {
            Command::new("git")
                .args(["merge-base", "--is-ancestor", &head, &c])
                .current_dir(&remote.bare)
                .status()
                .is_ok_and(|s| s.success())
        });
        (has_head && open == 0 && unpushed == 0).then_some(())
    })
    .await;
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let code = d.child.wait().unwrap().code();
    let daemon_log = std::fs::read_to_string(cfg.with_file_name("daemon.log")).unwrap_or_default();
    let tail: Vec<&str> = daemon_log.lines().rev().take(12).collect();
    assert_eq!(
        code,
        Some(0),
        "{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );

    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM test_runs ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!runs.is_empty());
    let ended = [
        "succeeded",
        "failed",
        "error",
        "timeout",
        "aborted",
        "superseded",
    ];
    assert!(
        runs.iter().all(|(_, s)| ended.contains(&s.as_str())),
        "{runs:?}"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&pool)
        .await
        .unwrap();
    let expected = runs.iter().filter(|(_, s)| s != "superseded").count() as i64;
    assert_eq!(
        recorded, expected,
        "every run that started (or was aborted) has exactly one result: {runs:?}"
    );
    let files = git(
        &remote.bare,
        &["ls-tree", "-r", "--name-only", "main", "results/chaos"],
    );
    let json_files = files.lines().filter(|l| l.ends_with(".json")).count() as i64;
    let daemon_log = std::fs::read_to_string(cfg.with_file_name("daemon.log")).unwrap_or_default();
    let pushed: Vec<&str> = daemon_log
        .lines()
        .filter(|l| {
            l.contains("results pushed") || l.contains("write-back") || l.contains("refused")
        })
        .collect();
    let _ = pushed;
    let log = git(
        &remote.bare,
        &[
            "log",
            "--format=%h %an %s",
            "--stat=200",
            "main",
            "--",
            "results",
        ],
    );
    assert_eq!(
        json_files, recorded,
        "one results file per recorded run:\n{log}"
    );
    let last: String =
        sqlx::query_scalar("SELECT status FROM test_runs ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_ne!(last, "superseded", "the newest revision always runs");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_printing_env_finds_no_daemon_secret_in_its_log_the_page_the_api_or_postgres() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &url, port);
    // Secrets of the daemon: the ones it uses (webhook, API token, database URL) and ones it
    // merely has in its environment (a git token, a cloud key).
    let git_token = format!("fake-git-token-{}", fastrand::u64(..));
    let cloud_key = format!("fake-cloud-key-{}", fastrand::u64(..));
    let mut daemon = start_daemon(
        &cfg,
        &db.url,
        port,
        &[
            ("E2E_HOOK_SECRET", SECRET),
            ("E2E_API_TOKEN", TOKEN),
            ("GIT_TOKEN", &git_token),
            ("AWS_SECRET_ACCESS_KEY", &cloud_key),
        ],
    );
    wait_baseline(&pool).await;
    let spec = format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: envdump\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 1, duration: 1s}}\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n");
    let script = "import http from 'k6/http';\nexport function setup() { console.log('ENV ' + JSON.stringify(__ENV)); }\nexport default function () { http.get(`${__ENV.BASE_URL}/api/items`); }\nexport function handleSummary() { return { stdout: 'ENV ' + JSON.stringify(__ENV) + '\\n' }; }\n";
    let head = remote.commit(
        &[
            ("tests/envdump/perftest.yaml", Some(spec.as_str())),
            ("tests/envdump/script.js", Some(script)),
        ],
        "add envdump",
    );
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);
    let run_id: String = wait_for("the envdump result", 90, || async {
        sqlx::query_scalar::<_, String>("SELECT run_id FROM test_results WHERE test_id = 'envdump'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    let secrets = [
        SECRET,
        TOKEN,
        git_token.as_str(),
        cloud_key.as_str(),
        db.url.as_str(),
        db.schema.as_str(),
    ];
    let leaks = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} holds the daemon secret {s:?}");
        }
    };
    let run_dir = dir.path().join("state/runs").join(&run_id);
    let log = std::fs::read_to_string(run_dir.join("runner-1.log")).unwrap_or_default();
    let out = std::fs::read_to_string(run_dir.join("runner-1.out")).unwrap_or_default();
    assert!(
        log.contains("ENV ") && log.contains(&format!("http://{target}")),
        "the script printed its own env: {log}"
    );
    leaks("the runner log", &log);
    leaks("the runner output", &out);
    let auth = format!("Bearer {TOKEN}");
    for headers in [vec![], vec![("Authorization", auth.as_str())]] {
        let (_, page) = http(
            daemon.addr,
            "GET",
            &format!("/runs/{run_id}"),
            &headers,
            b"",
        )
        .await;
        leaks("the run page", &page);
    }
    let (status, api) = http(
        daemon.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{api}");
    leaks("the API", &api);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&db.schema)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "test_results"), "{tables:?}");
    for table in tables {
        let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(row_to_json(t)::text, E'\\n') FROM {}.{table} t",
            db.schema
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        leaks(&format!("table {table}"), &rows.unwrap_or_default());
    }
    let (_, ready) = http(daemon.addr, "GET", "/readyz", &[], b"").await;
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert!(
        ready["sandbox"]["enabled"].is_boolean(),
        "/readyz says whether runners are sandboxed: {ready}"
    );
    if ready["sandbox"]["enabled"] == false {
        assert!(
            ready["sandbox"]["warning"]
                .as_str()
                .is_some_and(|w| w.contains("NOT sandboxed")),
            "{ready}"
        );
    }
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
    db.drop_schema().await;
}
