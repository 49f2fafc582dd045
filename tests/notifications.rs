//! Notifications end to end: the real daemon on the local executor runs k6 tests against the
//! demo target and notifies a Slack incoming-webhook stand-in and two generic webhook
//! receivers (`tests/support/forges/`). Filters hold (end states, `recovered`, a label
//! selector), each notification is sent once per run and sink although the sinks fail once
//! (500, 429 with Retry-After), the generic payload is the documented `perfsync.dev/v1` one and
//! its HMAC verifies, and no sink URL or secret reaches the log.

#[path = "support/forges/mod.rs"]
mod forges;
mod support;

use forges::e2e::files;
use forges::{Fake, Fault};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::daemon::*;
use support::parts::*;
use support::*;

const SECRET: &str = "hook-secret-notifications";
const PUBLIC: &str = "https://perfsync.example.test";
const SLACK_SECRET: &str = "XsLaCkSeCrEtPaThPaRt0042";
const HMAC_KEY: &str = "hmac-key-for-all-hooks-0917";
const HMAC_KEY_2: &str = "hmac-key-for-recoveries-4410";

fn test_files(
    name: &str,
    team: &str,
    target: std::net::SocketAddr,
    threshold: &str,
) -> Vec<(String, String)> {
    vec![
        (
            format!("tests/{name}/perftest.yaml"),
            format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\n  labels: {{team: {team}}}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  load: {{vus: 2, duration: 2s}}\n  thresholds:\n    http_req_duration: ['{threshold}']\n  env:\n    BASE_URL: http://{target}\n  timeout: 2m\n"),
        ),
        (format!("tests/{name}/script.js"), "import http from 'k6/http';\nimport { sleep } from 'k6';\nexport default function () {\n  http.get(`${__ENV.BASE_URL}/api/items`);\n  sleep(0.05);\n}\n".into()),
    ]
}

fn write_config(dir: &Path, repo: &str, port: u16) -> PathBuf {
    forges::e2e::write_config(
        dir,
        repo,
        port,
        PUBLIC,
        "NT_HOOK_SECRET",
        3,
        "notifications:\n\
             - name: shop-slack\n  kind: slack\n  url: {env: NT_SLACK_URL}\n  on: [failed]\n  tests: {matchLabels: {team: shop}}\n\
             - name: all-hooks\n  kind: webhook\n  url: {env: NT_HOOK_URL}\n  secret: {env: NT_HMAC_KEY}\n  on: [failed, succeeded]\n\
             - name: recoveries\n  kind: webhook\n  url: {env: NT_RECOVERY_URL}\n  secret: {env: NT_HMAC_KEY_2}\n  on: [recovered]\n",
    )
}

async fn result_of(pool: &sqlx::PgPool, test: &str, n: i64) -> Vec<(String, String)> {
    wait_for(&format!("{n} result(s) of {test}"), 120, || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT run_id, status FROM test_results WHERE test_id = $1 ORDER BY end_time",
        )
        .bind(test)
        .fetch_all(pool)
        .await
        .ok()?;
        (rows.len() as i64 >= n).then_some(rows)
    })
    .await
}

async fn settled(pool: &sqlx::PgPool) {
    wait_for("the deliveries to settle", 60, || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
                .fetch_one(pool)
                .await
                .ok()?;
        (open == 0).then_some(())
    })
    .await;
}

fn payloads(f: &Fake) -> Vec<Value> {
    f.deliveries()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_get_their_payloads_once_and_filters_hold() {
    if !k6_available() {
        return;
    }
    let target = demo_target().await;
    let slack = forges::slack::start(SLACK_SECRET).await;
    let hooks = forges::generic::start(HMAC_KEY).await;
    let recoveries = forges::generic::start(HMAC_KEY_2).await;
    // Slack fails the first message with a 500, the webhook the first with a 429.
    slack.fault("/services/", Fault::ServerError);
    hooks.fault(forges::generic::PATH, Fault::RateLimited(1));

    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &url, port);
    let slack_url = forges::slack::url(&slack, SLACK_SECRET);
    let hooks_url = forges::generic::url(&hooks);
    let recoveries_url = forges::generic::url(&recoveries);
    let daemon = start_daemon(
        &cfg,
        &db.url,
        port,
        &[
            ("NT_HOOK_SECRET", SECRET),
            ("NT_SLACK_URL", &slack_url),
            ("NT_HOOK_URL", &hooks_url),
            ("NT_RECOVERY_URL", &recoveries_url),
            ("NT_HMAC_KEY", HMAC_KEY),
            ("NT_HMAC_KEY_2", HMAC_KEY_2),
        ],
    );
    wait_baseline(&pool).await;

    // good (shop) passes, bad (shop) fails, other (billing) fails.
    let mut all = test_files("good", "shop", target, "p(95)<2000");
    all.extend(test_files("bad", "shop", target, "p(95)<0.001"));
    all.extend(test_files("other", "billing", target, "p(95)<0.001"));
    let head = remote.commit(&files(&all), "three tests");
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);
    let good = result_of(&pool, "good", 1).await;
    let bad = result_of(&pool, "bad", 1).await;
    let other = result_of(&pool, "other", 1).await;
    assert_eq!(
        (good[0].1.as_str(), bad[0].1.as_str(), other[0].1.as_str()),
        ("succeeded", "failed", "failed")
    );
    settled(&pool).await;

    // Slack: only the failed run of a shop test; once, although the first try got a 500.
    let msgs = payloads(&slack);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(slack.answered("/services/", 500), 1);
    let m = &msgs[0];
    let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.contains("bad failed"), "{header}");
    let fields: Vec<&str> = m["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"*Verdict*\nfailed"), "{fields:?}");
    assert!(fields.contains(&"*Test*\nbad"), "{fields:?}");
    assert!(
        fields.contains(&format!("*Commit*\n`{}`", &head[..7]).as_str()),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("*p95 vs baseline*\n") && f.contains("ms")),
        "{fields:?}"
    );
    let button = m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("a link to the run");
    assert_eq!(
        button["elements"][0]["url"],
        format!("{PUBLIC}/runs/{}", bad[0].0)
    );
    assert!(
        m["text"].as_str().unwrap().contains("bad failed"),
        "the text fallback"
    );

    // The generic webhook: every run (failed or succeeded), once each, signed, versioned.
    let hooked = hooks.deliveries();
    assert_eq!(hooked.len(), 3, "{:?}", payloads(&hooks));
    assert_eq!(hooks.answered(forges::generic::PATH, 429), 1);
    let mut ids = std::collections::BTreeSet::new();
    for r in &hooked {
        assert!(forges::generic::verify(
            HMAC_KEY,
            &r.body,
            r.header("x-perfsync-signature-256")
        ));
        assert!(!forges::generic::verify(
            "another key",
            &r.body,
            r.header("x-perfsync-signature-256")
        ));
        assert_eq!(r.header("x-perfsync-event"), Some("run.finished"));
        assert!(ids.insert(r.header("x-perfsync-delivery").unwrap().to_string()));
        let p: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(p["version"], "perfsync.dev/v1");
        assert_eq!(p["event"], "run.finished");
        assert_eq!(p["delivery"], r.header("x-perfsync-delivery").unwrap());
        let test = p["run"]["test"].as_str().unwrap();
        let (run, verdict) = match test {
            "good" => &good[0],
            "bad" => &bad[0],
            "other" => &other[0],
            t => panic!("unexpected test {t}"),
        };
        assert_eq!(p["run"]["id"], run.as_str());
        assert_eq!(p["run"]["status"], verdict.as_str());
        assert_eq!(p["run"]["commit"], head.as_str());
        assert_eq!(p["run"]["trigger"], "change");
        assert_eq!(p["run"]["url"], format!("{PUBLIC}/runs/{run}"));
        assert_eq!(
            p["labels"]["team"],
            if test == "other" { "billing" } else { "shop" }
        );
        assert!(
            p["metrics"]["p95Ms"].as_f64().is_some_and(|v| v > 0.0),
            "{p}"
        );
        assert_eq!(p["matched"], serde_json::json!([verdict]));
        assert_eq!(p["recovered"], false);
    }
    assert!(
        recoveries.deliveries().is_empty(),
        "nothing has recovered yet"
    );

    // bad is fixed: it passes, which is a recovery; Slack (on: [failed]) hears nothing.
    let fixed = test_files("bad", "shop", target, "p(95)<2000");
    let head2 = remote.commit(&files(&fixed), "fix bad");
    let (status, _) = github_push(daemon.addr, SECRET, &head2).await;
    assert_eq!(status, 202);
    let bad = result_of(&pool, "bad", 2).await;
    assert_eq!(bad[1].1, "succeeded");
    settled(&pool).await;
    let rec = recoveries.deliveries();
    assert_eq!(rec.len(), 1);
    assert!(forges::generic::verify(
        HMAC_KEY_2,
        &rec[0].body,
        rec[0].header("x-perfsync-signature-256")
    ));
    let p: Value = serde_json::from_slice(&rec[0].body).unwrap();
    assert_eq!(p["run"]["id"], bad[1].0.as_str());
    assert_eq!(p["recovered"], true);
    assert_eq!(p["matched"], serde_json::json!(["recovered"]));
    assert_eq!(p["baseline"]["run"], serde_json::Value::Null, "{p}");
    assert_eq!(
        payloads(&hooks).len(),
        4,
        "the fix's success went to all-hooks"
    );
    // Time for a duplicate to show up, if one were coming.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        payloads(&slack).len(),
        1,
        "a passing run is not sent to an on: [failed] sink"
    );
    assert_eq!(hooks.deliveries().len(), 4);
    assert_eq!(recoveries.deliveries().len(), 1);

    // One outbox row per run and sink; no URL or secret in the log or the outbox.
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT run_id, target FROM deliveries WHERE kind = 'notification' GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dup, 0);
    let log = std::fs::read_to_string(cfg.with_file_name("daemon.log")).unwrap_or_default();
    let outbox: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(last_error, '') || payload::text FROM deliveries")
            .fetch_all(&pool)
            .await
            .unwrap();
    for s in [SLACK_SECRET, HMAC_KEY, HMAC_KEY_2, hooks_url.as_str()] {
        assert!(!log.contains(s), "a sink's secret in the log: {s}");
        assert!(
            outbox.iter().all(|o| !o.contains(s)),
            "a sink's secret in the outbox"
        );
    }
    assert!(
        log.contains("shop-slack") || log.contains("notify:shop-slack"),
        "sinks are named in the log"
    );
    drop(daemon);
    db.drop_schema().await;
}
