//! The TestRun and ConfigMap perfsync renders, from plain data: no cluster, no network.

use perfsync::config::{Config, Layout};
use perfsync::source::Tree;
use perfsync::spec::catalog::Index;
use perfsync::spec::model::RunnerSettings;
use perfsync::spec::render::{configmap, run_id, testrun, RunnerDefaults};

fn resolved(extra: &str) -> std::sync::Arc<perfsync::spec::catalog::ResolvedTest> {
    let mut tree = Tree::new();
    tree.insert_file(
        "tests/api/perftest.yaml",
        format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: api\nspec:\n  script: main.js\n  targets: [http://127.0.0.1:1]\n  parallelism: 2\n  load: {{vus: 4, duration: 5s}}\n  tags: {{team: qa}}\n{extra}"),
    );
    tree.insert_file(
        "tests/api/main.js",
        "import { f } from './lib/f.js';\nexport default function () { f(); }\n",
    );
    tree.insert_file("tests/api/lib/f.js", "export function f() {}\n");
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let catalog = Index::build(&tree, Layout::default(), Some(policy)).catalog();
    assert!(catalog.is_valid(), "{:?}", catalog.diagnostics);
    let entry = catalog.tests.iter().find(|t| t.resolved.is_some()).unwrap();
    entry.resolved.clone().unwrap()
}

fn defaults() -> RunnerDefaults {
    RunnerDefaults {
        namespace: "load".into(),
        image: Some("registry.example.com/k6:1.1.0".into()),
        env: vec![(
            "K6_PROMETHEUS_RW_SERVER_URL".into(),
            "http://prom:9090/api/v1/write".into(),
        )],
        runner: RunnerSettings {
            service_account_name: Some("k6-runner".into()),
            node_selector: [("pool".to_string(), "load".to_string())].into(),
            ..RunnerSettings::default()
        },
    }
}

#[test]
fn a_testrun_carries_labels_arguments_secrets_prometheus_and_merged_runner_settings() {
    let rt = resolved("  secretEnv:\n    - {name: API_TOKEN, secret: api-credentials, key: token}\n  runner:\n    nodeSelector: {pool: perf}\n");
    let run = run_id("api", &rt.revision, 3);
    let tr = serde_json::to_value(testrun(&rt, &run, &defaults())).unwrap();
    assert_eq!(tr["apiVersion"], "k6.io/v1alpha1");
    assert_eq!(tr["metadata"]["name"], run.as_str());
    assert!(run.ends_with("-3"));
    let labels = &tr["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "perfsync");
    assert_eq!(labels["perfsync.dev/test"], "api");
    assert_eq!(labels["perfsync.dev/run"], run.as_str());
    assert_eq!(tr["spec"]["parallelism"], 2);
    assert!(
        tr["spec"].get("cleanup").is_none(),
        "never cleanup: post (the logs go with the pods)"
    );
    let args = tr["spec"]["arguments"].as_str().unwrap();
    assert!(
        args.contains(&format!("--tag testid={run}")) && args.contains("--tag team=qa"),
        "{args}"
    );
    assert!(args.contains("-o experimental-prometheus-rw"), "{args}");
    let runner = &tr["spec"]["runner"];
    // The test's own node selector wins; the config's service account and image fill in.
    assert_eq!(runner["nodeSelector"]["pool"], "perf");
    assert_eq!(runner["serviceAccountName"], "k6-runner");
    assert_eq!(runner["image"], "registry.example.com/k6:1.1.0");
    let env = runner["env"].as_array().unwrap();
    let secret = env.iter().find(|e| e["name"] == "API_TOKEN").unwrap();
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"]["name"],
        "api-credentials"
    );
    assert_eq!(secret["valueFrom"]["secretKeyRef"]["key"], "token");
    assert!(secret.get("value").is_none());
    assert!(env
        .iter()
        .any(|e| e["name"] == "K6_PROMETHEUS_RW_SERVER_URL"));
    // The bundle's files are mapped back to their folders in the runner's volume.
    let items = runner["volumes"][0]["configMap"]["items"]
        .as_array()
        .unwrap();
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&"main.js") && paths.contains(&"lib/f.js"),
        "{paths:?}"
    );
    let cm = serde_json::to_value(configmap(&rt, "load")).unwrap();
    assert_eq!(cm["immutable"], true);
    assert_eq!(
        cm["metadata"]["name"],
        runner["volumes"][0]["configMap"]["name"]
    );
    for i in items {
        assert!(cm["data"].get(i["key"].as_str().unwrap()).is_some(), "{i}");
    }
    assert!(cm["data"]["perfsync-entry.js"]
        .as_str()
        .unwrap()
        .contains("/perfsync/bundle/main.js"));
}

#[test]
fn without_prometheus_no_remote_write_output() {
    let rt = resolved("");
    let mut d = defaults();
    d.env.clear();
    let tr = serde_json::to_value(testrun(&rt, "api-x-1", &d)).unwrap();
    assert!(!tr["spec"]["arguments"]
        .as_str()
        .unwrap()
        .contains("prometheus"));
    assert!(tr["spec"]["runner"].get("env").is_none());
}
