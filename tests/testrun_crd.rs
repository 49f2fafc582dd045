//! What perfsync renders survives the k6-operator's published TestRun CRDs whole: every
//! example test's TestRun, under v1.5.0 and v1.6.0, loses nothing to pruning (a field an
//! older operator does not know is dropped silently by a real apiserver) and validates.
//! The CRDs are the copies in `tests/fixtures/k6-operator/`.

#[path = "support/kube_api/mod.rs"]
mod kube_api;

use kube_api::{Coll, CrdSchema, Store};
use perfsync::config::Config;
use perfsync::source::dir::load_dir;
use perfsync::spec::render::{run_id, testrun, RunnerDefaults};
use perfsync::spec::{self, Options};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const CRDS: [&str; 2] = ["k6.io_testruns.v1.5.0.yaml", "k6.io_testruns.v1.6.0.yaml"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(file: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/k6-operator").join(file)).unwrap()
}

fn perftest_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            perftest_files(&p, out);
        } else if p.file_name().is_some_and(|n| n == "perftest.yaml") {
            out.push(p);
        }
    }
}

/// Every example test's TestRun, rendered with the example cluster config's runner defaults,
/// with and without Prometheus remote write: (test name, TestRun as JSON).
fn example_testruns() -> Vec<(String, Value)> {
    let examples = root().join("examples");
    let config = Config::load(&examples.join("kubernetes.yaml")).unwrap();
    let layout = config.repository.layout();
    let tree = load_dir(&examples, &[&layout.tests_dir, &layout.templates_dir]).unwrap();
    let cat = spec::build(
        &tree,
        &Options {
            layout: &layout,
            policy: Some(&config.policy),
        },
    );
    assert!(cat.is_valid(), "{:?}", cat.diagnostics);
    let mut files = Vec::new();
    perftest_files(&examples.join(&layout.tests_dir), &mut files);
    assert_eq!(
        cat.tests.len(),
        files.len(),
        "every example test is in the catalog"
    );
    let exec = config.executor.clone();
    let plain = RunnerDefaults {
        namespace: exec.namespace.clone().unwrap_or_else(|| "perfsync".into()),
        image: exec.runner_image.clone(),
        env: Vec::new(),
        runner: exec.runner.clone().unwrap_or_default(),
        starter_image: Some("registry.example.com/k6-operator:starter".into()),
    };
    let prometheus = RunnerDefaults {
        env: vec![(
            "K6_PROMETHEUS_RW_SERVER_URL".into(),
            "http://prometheus:9090/api/v1/write".into(),
        )],
        ..plain.clone()
    };
    let mut out = Vec::new();
    for entry in &cat.tests {
        let rt = entry.resolved.as_ref().expect("valid example");
        let name = &rt.test.metadata.name;
        for defaults in [&plain, &prometheus] {
            let run = run_id(name, &rt.revision, 1);
            let tr = serde_json::to_value(testrun(rt, &run, defaults)).unwrap();
            out.push((name.clone(), tr));
        }
    }
    out
}

/// Whether every leaf of `a` is in `b` with the same value (`b` may have defaults added).
fn contained(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| contained(v, w))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| contained(v, w))
        }
        _ => a == b,
    }
}

#[test]
fn every_example_testrun_is_kept_whole_by_both_published_crds() {
    let runs = example_testruns();
    assert!(runs.len() >= 12, "{} TestRuns", runs.len());
    for file in CRDS {
        let crd = CrdSchema::from_yaml(&fixture(file));
        for (name, tr) in &runs {
            let mut pruned = tr.clone();
            let paths = crd.prune(&mut pruned);
            assert!(
                paths.is_empty() && pruned == *tr,
                "{file} prunes {paths:?} from the TestRun of `{name}`"
            );
            let errs = crd.validate(tr);
            assert!(errs.is_empty(), "{file}: `{name}`: {errs:?}");
        }
        // And through the apiserver's admission: created, every rendered field kept.
        let store = Store::new();
        store.register_crd(&serde_yaml::from_str(&fixture(file)).unwrap());
        let testruns = Coll::new("k6.io", "testruns");
        for (i, (name, tr)) in runs.iter().enumerate() {
            let mut tr = tr.clone();
            tr["metadata"]["name"] =
                json!(format!("{}-{i}", tr["metadata"]["name"].as_str().unwrap()));
            let ns = tr["metadata"]["namespace"].as_str().unwrap().to_string();
            let stored = store
                .create(&testruns, &ns, tr.clone())
                .unwrap_or_else(|(code, s)| panic!("{file}: `{name}`: {code} {}", s["message"]));
            assert!(
                contained(&tr["spec"], &stored["spec"]),
                "{file}: `{name}`: sent {}\nstored {}",
                tr["spec"],
                stored["spec"]
            );
        }
    }
}

#[test]
fn the_check_sees_a_field_an_older_crd_lacks() {
    let (name, mut tr) = example_testruns().swap_remove(0);
    tr["spec"]["args"] = json!(["--tag", "testid=x"]);
    tr["spec"]["starter"] = json!({"metadata": {"labels": {"perfsync.dev/test": name}}});
    let old = CrdSchema::from_yaml(&fixture(CRDS[0]));
    let new = CrdSchema::from_yaml(&fixture(CRDS[1]));
    assert_eq!(old.prune(&mut tr.clone()), vec!["spec.args".to_string()]);
    assert!(new.prune(&mut tr.clone()).is_empty());
    tr["spec"]["runner"]["metadata"]["labelz"] = json!({"a": "b"});
    tr["spec"]["parallelism"] = json!("2");
    assert_eq!(
        new.prune(&mut tr.clone()),
        vec!["spec.runner.metadata.labelz".to_string()]
    );
    let errs: Vec<String> = new.validate(&tr).iter().map(|e| e.to_string()).collect();
    assert_eq!(errs, vec!["spec.parallelism: Invalid value: \"string\": spec.parallelism in body must be of type integer: \"string\"".to_string()]);
}

#[test]
fn the_fixtures_are_the_published_crds_unchanged() {
    let published = root().join("../shared/reference/k6-operator");
    if !published.is_dir() {
        eprintln!("{} is absent: nothing to compare", published.display());
        return;
    }
    for file in CRDS {
        let copy = std::fs::read(root().join("tests/fixtures/k6-operator").join(file)).unwrap();
        let original = std::fs::read(published.join(file)).unwrap();
        assert!(
            copy == original,
            "tests/fixtures/k6-operator/{file} differs from {}",
            published.join(file).display()
        );
    }
}
