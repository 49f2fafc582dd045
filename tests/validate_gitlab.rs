//! `perfsync validate --format gitlab`: a GitLab Code Quality report, checked against the fields
//! GitLab documents for a custom tool's report (docs.gitlab.com, "Code Quality", "Implement a
//! custom tool" / "Code Quality report format"): a JSON array of objects with `description`,
//! `check_name`, `fingerprint` (unique), `severity` (`info`, `minor`, `major`, `critical` or
//! `blocker`), `location.path` (relative to the project root) and `location.lines.begin`; no
//! byte order mark at the start of the file.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn perfsync(args: &[&str], path_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perfsync"));
    cmd.args(args);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    cmd.output().expect("run perfsync")
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn spec(name: &str) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:18080]\n"
    )
}

const POLICY: &str = "policy:\n  allowedTargets: [http://127.0.0.1]\n";
const GOOD: &str = "import http from 'k6/http';\nexport default function () { http.get('http://127.0.0.1:18080/'); }\n";
// Two identical findings in one file (same code, file and message), on lines 3 and 4.
const TWICE: &str = "import http from 'k6/http';\nexport default function () {\n  http.get('http://10.0.0.1/');\n  http.get('http://10.0.0.1/');\n}\n";
// Options k6 alone can work out: a warning (`limit-unchecked`) when k6 is not installed.
const UNCHECKED: &str = "import http from 'k6/http';\nexport const options = { vus: Number(__ENV.VUS) };\nexport default function () { http.get('http://127.0.0.1:18080/'); }\n";

fn report(out: &Output) -> Vec<Value> {
    let stdout = &out.stdout;
    assert!(
        !stdout.starts_with(&[0xEF, 0xBB, 0xBF]),
        "GitLab's parser refuses a byte order mark"
    );
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    v.as_array()
        .unwrap_or_else(|| panic!("the report is a JSON array: {v}"))
        .clone()
}

/// Every documented field, with its documented type and values, and nothing GitLab ignores.
fn check_documented_fields(issue: &Value, repo: &Path) {
    let o = issue.as_object().unwrap();
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "check_name",
            "description",
            "fingerprint",
            "location",
            "severity"
        ],
        "{issue}"
    );
    assert!(!issue["description"].as_str().unwrap().is_empty());
    let check = issue["check_name"].as_str().unwrap();
    assert!(check.starts_with("perfsync/"), "{check}");
    let fp = issue["fingerprint"].as_str().unwrap();
    assert!(
        fp.len() == 32 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "an MD5-sized hex fingerprint: {fp}"
    );
    let severity = issue["severity"].as_str().unwrap();
    assert!(
        ["info", "minor", "major", "critical", "blocker"].contains(&severity),
        "{severity}"
    );
    let path = issue["location"]["path"].as_str().unwrap();
    assert!(
        !path.starts_with('/') && !path.starts_with("./") && !path.contains('\\'),
        "a path relative to the project root: {path}"
    );
    assert!(
        repo.join(path).is_file(),
        "{path} is a file of the repository"
    );
    let begin = issue["location"]["lines"]["begin"].as_u64().unwrap();
    assert!(begin >= 1, "{issue}");
    // At most one past the last line: a parser's end of file after the final newline.
    let lines = std::fs::read_to_string(repo.join(path))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(begin <= lines + 1, "line {begin} of {path} ({lines} lines)");
}

#[test]
fn findings_become_a_code_quality_report_with_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    write(repo, "tests/ok/perftest.yaml", &spec("ok"));
    write(repo, "tests/ok/script.js", GOOD);
    write(repo, "tests/twice/perftest.yaml", &spec("twice"));
    write(repo, "tests/twice/script.js", TWICE);
    // A spec that is not YAML: the finding names the spec file.
    write(repo, "tests/broken/perftest.yaml", "apiVersion: [\n");
    write(repo, "tests/broken/script.js", GOOD);
    write(repo, "policy.yaml", POLICY);
    let cfg = repo.join("policy.yaml");
    let args = [
        "validate",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "gitlab",
        repo.to_str().unwrap(),
    ];
    let out = perfsync(&args, None);
    assert_eq!(out.status.code(), Some(1), "invalid tests fail the job");
    let issues = report(&out);
    assert_eq!(issues.len(), 3, "{issues:#?}");
    for i in &issues {
        check_documented_fields(i, repo);
        assert_eq!(i["severity"], "major", "an error refuses the test: {i}");
    }
    // The two identical findings: each on its own line, each with its own fingerprint.
    let twice: Vec<&Value> = issues
        .iter()
        .filter(|i| i["location"]["path"] == "tests/twice/script.js")
        .collect();
    assert_eq!(twice.len(), 2);
    let mut lines: Vec<u64> = twice
        .iter()
        .map(|i| i["location"]["lines"]["begin"].as_u64().unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, [3, 4]);
    for i in &twice {
        assert_eq!(i["check_name"], "perfsync/target-not-allowed");
        assert!(
            i["description"].as_str().unwrap().contains("10.0.0.1"),
            "{i}"
        );
    }
    let broken = issues
        .iter()
        .find(|i| i["location"]["path"] == "tests/broken/perftest.yaml")
        .expect("the spec that is not YAML");
    assert_eq!(broken["check_name"], "perfsync/yaml-syntax");
    let mut fps: Vec<&str> = issues
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap())
        .collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), issues.len(), "fingerprints are unique");

    // The job log still shows the findings (stdout is the artifact).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tests/twice/script.js:3:"), "{stderr}");
    assert!(stderr.contains("errors"), "{stderr}");

    // Stable: the same findings give the same fingerprints in the next pipeline, also when a
    // line above them moved them down (GitLab compares fingerprints to tell new from fixed).
    let again = report(&perfsync(&args, None));
    let fp_of = |issues: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = issues
            .iter()
            .map(|i| i["fingerprint"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(fp_of(&issues), fp_of(&again));
    write(
        repo,
        "tests/twice/script.js",
        &format!("// a comment above\n{TWICE}"),
    );
    let moved = report(&perfsync(&args, None));
    assert_eq!(fp_of(&issues), fp_of(&moved));
    let moved_lines: Vec<u64> = moved
        .iter()
        .filter(|i| i["location"]["path"] == "tests/twice/script.js")
        .map(|i| i["location"]["lines"]["begin"].as_u64().unwrap())
        .collect();
    assert!(
        moved_lines.contains(&4) && moved_lines.contains(&5),
        "{moved_lines:?}"
    );

    // A fixed test drops out of the report; a valid repository is an empty array and exit 0.
    write(repo, "tests/twice/script.js", GOOD);
    std::fs::remove_dir_all(repo.join("tests/broken")).unwrap();
    let out = perfsync(&args, None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report(&out), Vec::<Value>::new());
}

#[test]
fn a_warning_is_a_minor_finding_and_leaves_the_job_green() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    write(repo, "tests/vus/perftest.yaml", &spec("vus"));
    write(repo, "tests/vus/script.js", UNCHECKED);
    write(repo, "policy.yaml", POLICY);
    let cfg = repo.join("policy.yaml");
    // No k6 on PATH: the script's VUs cannot be worked out, which is a warning.
    let out = perfsync(
        &[
            "validate",
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "gitlab",
            repo.to_str().unwrap(),
        ],
        Some("/nonexistent"),
    );
    assert_eq!(out.status.code(), Some(0), "a warning keeps the test valid");
    let issues = report(&out);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    check_documented_fields(&issues[0], repo);
    assert_eq!(issues[0]["severity"], "minor");
    assert_eq!(issues[0]["check_name"], "perfsync/limit-unchecked");
    assert_eq!(issues[0]["location"]["path"], "tests/vus/script.js");
}
