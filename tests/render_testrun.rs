//! The TestRun and ConfigMap perfsync renders, from plain data: no cluster, no network.

use perfsync::config::{Config, Layout};
use perfsync::source::Tree;
use perfsync::spec::catalog::Index;
use perfsync::spec::model::RunnerSettings;
use perfsync::spec::render::{
    configmap, configmap_bytes, run_id, shell_safe, testrun, testrun_name, RunnerDefaults,
};

fn resolved(extra: &str) -> std::sync::Arc<perfsync::spec::catalog::ResolvedTest> {
    resolved_with(extra, &[])
}

fn resolved_with(
    extra: &str,
    files: &[(&str, &[u8])],
) -> std::sync::Arc<perfsync::spec::catalog::ResolvedTest> {
    let mut tree = Tree::new();
    for (path, content) in files {
        tree.insert_file(format!("tests/api/{path}"), content.to_vec());
    }
    tree.insert_file(
        "tests/api/perftest.yaml",
        format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: api\n  labels: {{team: qa}}\nspec:\n  script: main.js\n  targets: [http://127.0.0.1:1]\n  parallelism: 2\n  load: {{vus: 4, duration: 5s}}\n  tags: {{team: qa}}\n{extra}"),
    );
    tree.insert_file(
        "tests/api/main.js",
        "import { f } from './lib/f.js';\nexport default function () { f(); }\n",
    );
    tree.insert_file("tests/api/lib/f.js", "export function f() {}\n");
    let policy = Config::parse(
        "p",
        "policy:\n  allowedTargets: [http://127.0.0.1]\n  runner:\n    allowedSecrets: [api-credentials]\n    allowNodeSelector: true\nexecutor:\n  kind: kubernetes\n",
    )
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
        starter_image: Some("registry.example.com/k6-operator:starter".into()),
    }
}

#[test]
fn a_testrun_carries_labels_arguments_secrets_prometheus_and_merged_runner_settings() {
    let rt = resolved("  secretEnv:\n    - {name: API_TOKEN, secret: api-credentials, key: token}\n  runner:\n    nodeSelector: {pool: perf}\n");
    let run = run_id("api", &rt.revision, 3);
    let tr = serde_json::to_value(testrun(&rt, &run, &defaults())).unwrap();
    assert_eq!(tr["apiVersion"], "k6.io/v1alpha1");
    assert_eq!(tr["metadata"]["name"], testrun_name("api", &run).as_str());
    assert!(run.ends_with("-3"));
    let labels = &tr["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "perfsync");
    assert_eq!(labels["perfsync.dev/test"], "api");
    assert_eq!(labels["perfsync.dev/run"], run.as_str());
    assert_eq!(
        labels["team"], "qa",
        "the TestRun may carry the test's labels"
    );
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
    // The operator pastes these unquoted into `sh -c`: `p(95)` would be a syntax error.
    assert!(!args.contains("summary-trend-stats"), "{args}");
    for arg in args.split(' ') {
        assert!(shell_safe(arg), "`{arg}` in {args}");
    }
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
    assert_eq!(cm["metadata"]["labels"]["team"], "qa");
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

#[test]
fn pods_carry_perfsyncs_labels_only() {
    let rt = resolved("");
    let run = run_id("api", &rt.revision, 1);
    let tr = serde_json::to_value(testrun(&rt, &run, &defaults())).unwrap();
    let expected = serde_json::json!({
        "app.kubernetes.io/managed-by": "perfsync",
        "perfsync.dev/test": "api",
        "perfsync.dev/revision": &rt.revision[..10],
        "perfsync.dev/run": run,
    });
    // The initializer copies the runner's pod spec; the starter has its own.
    assert_eq!(tr["spec"]["runner"]["metadata"]["labels"], expected);
    assert_eq!(tr["spec"]["starter"]["metadata"]["labels"], expected);
    let mut keys: Vec<&String> = tr["spec"]["starter"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        vec!["automountServiceAccountToken", "image", "metadata"],
        "labels, no API token and the configured image: the operator's other starter settings stay"
    );
    assert_eq!(
        tr["spec"]["starter"]["automountServiceAccountToken"],
        "false"
    );
    assert_eq!(
        tr["spec"]["runner"]["automountServiceAccountToken"],
        "false"
    );
}

#[test]
fn the_testrun_is_named_within_the_operators_limits_and_keeps_the_run_id_as_label() {
    let long = "a234567890-234567890-234567890-234567890";
    let mut tree = Tree::new();
    for name in [long, "9lives"] {
        tree.insert_file(
            format!("tests/{name}/perftest.yaml"),
            format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: s.js\n  targets: [http://127.0.0.1:1]\n  parallelism: 9999\n"),
        );
        tree.insert_file(
            format!("tests/{name}/s.js"),
            "export default function () {}\n",
        );
    }
    let catalog = Index::build(&tree, Layout::default(), None).catalog();
    assert!(catalog.is_valid(), "{:?}", catalog.diagnostics);
    for rt in catalog.valid_tests() {
        let name = &rt.test.metadata.name;
        for attempt in [1, 10_000, u32::MAX] {
            let run = run_id(name, &rt.revision, attempt);
            let tr = testrun(rt, &run, &defaults());
            let trn = &tr.metadata.name;
            assert!(
                trn.len() <= 47 && trn.starts_with(|c: char| c.is_ascii_lowercase()),
                "{trn}"
            );
            assert_eq!(tr.metadata.labels["perfsync.dev/run"], run);
            assert!(run.len() <= 63, "{run}");
            let service = format!("{trn}-service-{}", tr.spec.parallelism);
            let initializer = format!("{trn}-initializer");
            assert!(
                service.len() <= 63 && initializer.len() <= 63,
                "{service} {initializer}"
            );
        }
    }
}

#[test]
fn the_configmap_size_counted_at_validation_is_what_the_apiserver_counts() {
    let binary: &[u8] = &[0xff, 0xfe, 0x00, 0x01, 0x80];
    let rt = resolved_with(
        "  thresholds:\n    http_req_duration: ['p(95)<500']\n",
        &[("data/blob.bin", binary), ("data/users.json", b"[1,2,3]")],
    );
    let cm = configmap(&rt, "load");
    assert_eq!(cm.binary_data.len(), 1);
    let decoded: usize = cm
        .binary_data
        .iter()
        .map(|(k, v)| {
            use base64::Engine;
            k.len()
                + base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .unwrap()
                    .len()
        })
        .sum();
    let text: usize = cm.data.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(
        configmap_bytes(&rt.bundle, &rt.test.spec.thresholds),
        (text + decoded) as u64
    );
}
