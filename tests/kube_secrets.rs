//! The Secrets a test's `secretEnv` names on the kubernetes executor: allowed by name or by
//! the label the operator puts on them (`policy.runner.allowedSecretLabel`), checked before a
//! TestRun exists, and their values masked in the runner log the API serves and in every
//! stored record, although the runner printed them.

mod support;

use support::kube_api::Coll;
use support::kube_ground::*;
use support::parts::*;
use support::*;

const LABEL: &str = "perfsync.dev/runner-secret";

fn secret(g: &Ground, name: &str, labelled: bool, value: &str) {
    let labels = if labelled {
        serde_json::json!({ LABEL: "true" })
    } else {
        serde_json::json!({})
    };
    g.api
        .store
        .create(
            &Coll::new("", "secrets"),
            NS,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "labels": labels},
                "data": {"token": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value)}}),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_allowed_by_label_runs_masked_and_an_unlabelled_one_starts_nothing() {
    if !k6_available() {
        return;
    }
    let g = ground().await;
    let port = free_port();
    let cfg = g.config("a", port, "");
    let d = g.start(&cfg, port);
    g.baseline().await;
    let value = "labelled-s3cret-91d2";
    secret(&g, "team-creds", true, value);
    secret(&g, "someone-elses", false, "unlabelled-s3cret-77ab");
    let t = g.target;
    let printing = format!(
        "import http from 'k6/http';\nexport const options = {{ vus: 1, iterations: 2 }};\nexport default function () {{\n  console.log('token is ' + __ENV.API_TOKEN);\n  http.get(`${{__ENV.BASE_URL}}/api/items`);\n}}\n"
    );
    let mut all = files(
        &Spec {
            extra: "  secretEnv:\n    - {name: API_TOKEN, secret: team-creds, key: token}\n",
            ..Spec::new("labelled")
        },
        t,
        &printing,
    );
    all.extend(files(
        &Spec {
            extra: "  secretEnv:\n    - {name: API_TOKEN, secret: someone-elses, key: token}\n",
            ..Spec::new("unlabelled")
        },
        t,
        &printing,
    ));
    let head = g.push(&all, "two tests with secrets");
    github_push(d.addr, SECRET, &head).await;

    let (run, verdict, reason) = g.result("labelled", 90).await;
    assert_eq!(verdict, "succeeded", "{reason:?}\n{}", g.logs());
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http(
        d.addr,
        "GET",
        &format!("/api/v1/runs/{run}/logs"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The runner did print it: the API shows where, masked.
    assert!(body.contains("token is ***"), "{body}");
    assert!(!body.contains(value), "{body}");

    let (_, verdict, reason) = g.result("unlabelled", 60).await;
    assert_eq!(verdict, "error");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("Secret `someone-elses`")
            && reason.contains("policy.runner.allowedSecretLabel")
            && reason.contains(LABEL),
        "{reason}"
    );
    assert!(!reason.contains("unlabelled-s3cret"), "{reason}");
    assert!(
        g.objects("k6.io", "testruns", "perfsync.dev/test=unlabelled")
            .is_empty(),
        "a refused Secret starts nothing"
    );
    for leak in [value, "unlabelled-s3cret-77ab"] {
        assert!(!g.logs().contains(leak), "the daemon's log holds {leak}");
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM test_results WHERE summary::text LIKE '%' || $1 || '%'",
        )
        .bind(leak)
        .fetch_one(&g.pool)
        .await
        .unwrap();
        assert_eq!(stored, 0, "PostgreSQL holds {leak}");
    }
}
