//! A test cannot choose its runner's privileges (kubernetes executor): image, service
//! account, node placement, resources and Secrets stay within `policy.runner`, checked by
//! `perfsync validate` as a merge-request pipeline runs it, each refusal naming the policy key
//! and the line. What perfsync renders never lets a runner mount an API token.

use std::path::Path;
use std::process::Command;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const SCRIPT: &str = "import http from 'k6/http';\nexport default function () { http.get('http://127.0.0.1:18080/'); }\n";

fn spec(name: &str, extra: &str) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:18080]\n{extra}")
}

const CONFIG: &str = "policy:\n  allowedTargets: [http://127.0.0.1]\n  runner:\n    allowedImages: [\"registry.example.com/k6:*\"]\n    allowedSecrets: [\"k6-*\"]\n    maxCpu: \"2\"\n    maxMemory: 4Gi\nexecutor:\n  kind: kubernetes\n  namespace: perfsync-runs\n";

/// Validates one test with `extra` spec lines; the JSON errors.
fn errors(extra: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tests/t/perftest.yaml", &spec("t", extra));
    write(dir.path(), "tests/t/script.js", SCRIPT);
    write(dir.path(), "perfsync.yaml", CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["validate", "--format", "json", "--config"])
        .arg(dir.path().join("perfsync.yaml"))
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["errors"].as_array().cloned().unwrap_or_default()
}

fn refused(extra: &str, key: &str, line: u64) {
    let errs = errors(extra);
    let hit = errs.iter().find(|e| {
        e["code"] == "policy-denied" && e["message"].as_str().unwrap_or("").contains(key)
    });
    let hit = hit.unwrap_or_else(|| panic!("`{key}` not refused: {errs:?}"));
    assert_eq!(hit["line"].as_u64(), Some(line), "{hit}");
    assert!(hit["file"]
        .as_str()
        .unwrap_or("")
        .ends_with("tests/t/perftest.yaml"));
}

#[test]
fn a_test_cannot_take_privileges_the_policy_does_not_give() {
    refused(
        "  runner:\n    image: evil.example/k6:latest\n",
        "policy.runner.allowedImages",
        9,
    );
    refused(
        "  runner:\n    serviceAccountName: perfsync\n",
        "serviceAccountName is the operator's alone",
        9,
    );
    refused(
        "  runner:\n    nodeSelector: {pool: gpu}\n",
        "policy.runner.allowNodeSelector",
        9,
    );
    refused(
        "  runner:\n    tolerations: [{key: dedicated, operator: Exists}]\n",
        "policy.runner.allowTolerations",
        9,
    );
    refused(
        "  runner:\n    resources: {limits: {cpu: \"8\"}}\n",
        "policy.runner.maxCpu",
        9,
    );
    refused(
        "  runner:\n    resources:\n      requests: {memory: 16Gi}\n",
        "policy.runner.maxMemory",
        10,
    );
    // perfsync's own Secret (git token, database URL, API token, webhook secret) by name.
    refused(
        "  secretEnv:\n    - {name: STOLEN, secret: perfsync, key: api-token}\n",
        "policy.runner.allowedSecrets",
        9,
    );
    // Within the policy: nothing refused.
    let ok = errors("  runner:\n    image: registry.example.com/k6:1.1.0\n    resources: {limits: {cpu: 1500m, memory: 2Gi}}\n  secretEnv:\n    - {name: API_TOKEN, secret: k6-api, key: token}\n");
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn no_runner_pod_mounts_an_api_token() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tests/t/perftest.yaml", &spec("t", ""));
    write(dir.path(), "tests/t/script.js", SCRIPT);
    write(dir.path(), "perfsync.yaml", CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["render", "--config"])
        .arg(dir.path().join("perfsync.yaml"))
        .arg(dir.path())
        .arg("t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = text
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str(d).ok())
        .collect();
    let tr = docs.iter().find(|d| d["kind"] == "TestRun").unwrap();
    // The initializer is a copy of the runner: both, and the starter, go without a token.
    assert_eq!(
        tr["spec"]["runner"]["automountServiceAccountToken"], "false",
        "{tr}"
    );
    assert_eq!(
        tr["spec"]["starter"]["automountServiceAccountToken"], "false",
        "{tr}"
    );
}
