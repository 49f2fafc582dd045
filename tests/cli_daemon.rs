//! `perfsync plan`, `migrate` and `serve` as processes, against a real git repository and the
//! real PostgreSQL.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn perfsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfsync"))
}

#[test]
fn plan_between_two_commits_prints_the_documented_json() {
    let remote = Remote::new();
    let c1 = remote.commit(&as_files(&tests_files(3)), "initial");
    let c2 = remote.commit(
        &[
            ("tests/t0/script.js", Some(&script("v2"))),
            ("tests/t1", None),
            ("tests/t2/perftest.yaml", Some("kind: PerfTest\n")),
        ],
        "change, delete, break",
    );
    let out = perfsync()
        .args([
            "plan",
            "--repo",
            &remote.path_url(),
            "--from",
            &c1,
            "--to",
            &c2,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid test makes the exit code 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some(c1.as_str()), Some(c2.as_str()))
    );
    assert_eq!(v["runs"][0]["test"], "t0");
    assert_eq!(v["runs"][0]["reason"], "changed");
    assert_eq!(v["runs"][0]["revision"].as_str().unwrap().len(), 64);
    assert_eq!(v["removed"], serde_json::json!([{"test": "t1"}]));
    assert_eq!(v["invalid"][0]["file"], "tests/t2/perftest.yaml");
    assert_eq!(v["invalid"][0]["errors"][0]["code"], "schema");

    let first = perfsync()
        .args(["plan", "--repo", &remote.path_url(), "--to", &c1])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("baseline, nothing runs") && text.contains("0 to run"),
        "{text}"
    );

    let missing = perfsync()
        .args(["plan", "--repo", "/nonexistent/repo"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn migrate_applies_the_schema_and_is_idempotent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    for _ in 0..2 {
        let out = perfsync()
            .arg("migrate")
            .env("PERFSYNC_DATABASE_URL", &db.url)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tables: Vec<String> = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap()
    });
    for t in [
        "audit_log",
        "perf_tests",
        "sync_state",
        "test_runs",
        "test_templates",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let no_db = perfsync()
        .arg("migrate")
        .env_remove("PERFSYNC_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(no_db.status.code(), Some(2));
    rt.block_on(db.drop_schema());
}

#[test]
fn serve_syncs_answers_health_checks_and_stops_cleanly_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(2)), "initial");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  apiToken: {{env: TEST_API_TOKEN}}\nwebhooks:\n  github: {{env: TEST_HOOK_SECRET}}\npolicy:\n  allowedTargets: [http://127.0.0.1]\n",
            remote.path_url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    // A secret that is not set is an error naming the config key, exit 2.
    let out = perfsync()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("PERFSYNC_DATABASE_URL", &db.url)
        .env("TEST_API_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhooks.github"));

    let mut child = perfsync()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("PERFSYNC_DATABASE_URL", &db.url)
        .env("TEST_API_TOKEN", "api-secret-token")
        .env("TEST_HOOK_SECRET", "hook-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = rt.block_on(async {
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                let (status, body) = http(addr, "GET", "/readyz", &[], b"").await;
                let synced: i64 = {
                    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                    sqlx::query_scalar(
                        "SELECT count(*) FROM sync_state WHERE last_commit IS NOT NULL",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0)
                };
                if status == 200 && synced == 1 {
                    return Some(body);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    });
    assert!(
        ready.is_some(),
        "the daemon became ready and recorded its first sync"
    );
    let (status, _) = rt.block_on(http(addr, "GET", "/healthz", &[], b""));
    assert_eq!(status, 200);
    let (_, metrics) = rt.block_on(http(addr, "GET", "/metrics", &[], b""));
    assert!(
        metrics.contains("perfsync_syncs_total{outcome=\"synced\"} 1"),
        "{metrics}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    for secret in ["api-secret-token", "hook-secret"] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(logs.contains("synced"), "{logs}");
    rt.block_on(db.drop_schema());
}

#[test]
fn sigkill_at_any_moment_of_a_sync_never_plans_a_revision_twice_or_loses_the_last() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(30)), "initial");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("perfsync.yaml");
    let write_cfg = |port: u16| {
        std::fs::write(
            &cfg,
            format!(
                "repository:\n  url: {}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n",
                remote.path_url(),
                dir.path().join("state").display()
            ),
        )
        .unwrap()
    };
    let serve = |port: u16| {
        write_cfg(port);
        perfsync()
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env("PERFSYNC_DATABASE_URL", &db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let synced_head = || -> Option<String> {
        rt.block_on(async {
            let pool = sqlx::PgPool::connect(&db.url).await.ok()?;
            sqlx::query_scalar("SELECT last_commit FROM sync_state")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
                .flatten()
        })
    };
    // Baseline first.
    let mut child = serve(free_port());
    for _ in 0..1200 {
        if synced_head().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    for round in 0..8u64 {
        let files: Vec<(String, String)> = (0..30)
            .map(|i| {
                (
                    format!("tests/t{i}/script.js"),
                    script(&format!("r{round}-{i}")),
                )
            })
            .collect();
        remote.commit(
            &files
                .iter()
                .map(|(a, b)| (a.as_str(), Some(b.as_str())))
                .collect::<Vec<_>>(),
            &format!("round {round}"),
        );
        let mut child = serve(free_port());
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
        let _ = child.kill();
        let _ = child.wait();
    }
    let head = remote.head();
    // Results commits pushed by the daemon may follow the last test commit.
    let contains = |c: &str| {
        Command::new("git")
            .args(["merge-base", "--is-ancestor", &head, c])
            .current_dir(&remote.bare)
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut child = serve(free_port());
    for _ in 0..1200 {
        if synced_head().is_some_and(|c| contains(&c)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        synced_head().is_some_and(|c| contains(&c)),
        "the last sync includes the last test commit"
    );
    let (dupes, last): (i64, i64) = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let dupes = sqlx::query_scalar("SELECT count(*) FROM (SELECT test, revision FROM test_runs GROUP BY 1, 2 HAVING count(*) > 1) d").fetch_one(&pool).await.unwrap();
        let last = sqlx::query_scalar("SELECT count(*) FROM test_runs r JOIN perf_tests t ON t.name = r.test AND t.revision = r.revision").fetch_one(&pool).await.unwrap();
        (dupes, last)
    });
    assert_eq!(dupes, 0, "a revision was planned twice");
    assert_eq!(
        last, 30,
        "every test's final revision is planned exactly once"
    );
    rt.block_on(db.drop_schema());
}
