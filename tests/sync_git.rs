//! The sync against a real git remote (`git daemon` on loopback) and the real PostgreSQL.

mod support;

use perfsync::config::{Config, Layout};
use perfsync::metrics::Metrics;
use perfsync::plan::Reason;
use perfsync::source::git::{GitAuth, GitSource};
use perfsync::sync::Syncer;
use std::path::Path;
use std::sync::Arc;
use support::*;

fn syncer(url: &str, state: &Path, pool: sqlx::PgPool) -> Syncer {
    let src = GitSource::new(url, "main", state, GitAuth::default());
    let policy = Config::parse(
        "perfsync.yaml",
        "policy:\n  allowedTargets: [http://127.0.0.1]\n",
    )
    .unwrap()
    .policy;
    Syncer::new(
        src,
        Layout::default(),
        policy,
        pool,
        Arc::new(Metrics::new()),
    )
}

fn runs(o: &perfsync::sync::SyncOutcome) -> Vec<(String, Reason)> {
    o.plan
        .runs
        .iter()
        .map(|r| (r.test.clone(), r.reason))
        .collect()
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_change_plans_exactly_the_tests_it_touches() {
    let mut remote = Remote::new();
    let url = remote.serve(None);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    let mut files = tests_files(3);
    files.insert("templates/tpl/template.yaml".into(), "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTemplate\nmetadata:\n  name: tpl\nspec:\n  category: api\n  script: s.js\n  params:\n    P: {default: a}\n".into());
    files.insert(
        "templates/tpl/s.js".into(),
        "export default function () { console.log('${P}'); }\n".into(),
    );
    files.insert("tests/from-tpl/perftest.yaml".into(), "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: from-tpl\nspec:\n  template: {name: tpl}\n  targets: [http://127.0.0.1:18080]\n".into());
    let c1 = remote.commit(&as_files(&files), "initial");
    let mut s = syncer(&url, state.path(), pool.clone());

    let first = s.sync("test").await.unwrap();
    assert!(
        first.plan.is_baseline() && first.plan.runs.is_empty(),
        "the first sync records a baseline only"
    );
    assert_eq!(first.head, c1);
    assert_eq!(count(&pool, "SELECT count(*) FROM perf_tests").await, 4);

    remote.commit(
        &[
            ("tests/t1/script.js", Some(&script("changed"))),
            ("tests/t9/perftest.yaml", Some(&spec("t9", "script.js"))),
            ("tests/t9/script.js", Some(&script("t9"))),
        ],
        "change t1, add t9",
    );
    let second = s.sync("test").await.unwrap();
    assert_eq!(
        runs(&second),
        vec![("t1".into(), Reason::Changed), ("t9".into(), Reason::New)]
    );
    assert_eq!(second.queued.len(), 2);

    remote.commit(
        &[(
            "templates/tpl/s.js",
            Some("export default function () { console.log('${P}!'); }\n"),
        )],
        "template",
    );
    assert_eq!(
        runs(&s.sync("test").await.unwrap()),
        vec![("from-tpl".into(), Reason::TemplateChanged)]
    );

    remote.commit(
        &[
            ("results/t1/run.json", Some("{}")),
            ("README.md", Some("docs")),
        ],
        "results and docs",
    );
    let quiet = s.sync("test").await.unwrap();
    assert!(
        quiet.plan.runs.is_empty() && quiet.plan.removed.is_empty(),
        "results/ never triggers anything"
    );

    remote.commit(&[("tests/t2", None)], "delete t2");
    let removed = s.sync("test").await.unwrap();
    assert_eq!(
        removed
            .plan
            .removed
            .iter()
            .map(|r| r.test.as_str())
            .collect::<Vec<_>>(),
        vec!["t2"]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM perf_tests WHERE name = 't2'").await,
        0
    );

    // Up to date: nothing planned, nothing recorded twice.
    assert!(s.sync("test").await.unwrap().up_to_date);
    assert_eq!(count(&pool, "SELECT count(*) FROM test_runs").await, 3);
    db.drop_schema().await;
}

#[tokio::test]
async fn suspend_and_on_change_false_record_the_revision_without_running() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(2)), "initial");
    let mut s = syncer(&remote.path_url(), state.path(), db.pool().await);
    s.sync("test").await.unwrap();
    let suspended = format!("{}  suspend: true\n", spec("t0", "script.js"));
    let manual = format!(
        "{}  trigger: {{onChange: false}}\n",
        spec("t1", "script.js")
    );
    remote.commit(
        &[
            ("tests/t0/perftest.yaml", Some(&suspended)),
            ("tests/t1/perftest.yaml", Some(&manual)),
        ],
        "quiet",
    );
    let o = s.sync("test").await.unwrap();
    assert!(o.plan.runs.is_empty(), "{:?}", o.plan.runs);
    let why: Vec<&str> = o.plan.skipped.iter().map(|k| k.why).collect();
    assert_eq!(why, vec!["suspended", "onChange is false"]);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_force_push_compares_content_so_unchanged_tests_never_rerun() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(3)), "initial");
    remote.commit(&[("tests/t0/script.js", Some(&script("v2")))], "t0 v2");
    let mut s = syncer(&remote.path_url(), state.path(), db.pool().await);
    s.sync("test").await.unwrap();
    // Rewrite history: a new root commit holding t0 v2 (unchanged), t1 changed, t2 as before.
    git(&remote.work, &["checkout", "-q", "--orphan", "rewritten"]);
    let mut files = tests_files(3);
    files.insert("tests/t0/script.js".into(), script("v2"));
    files.insert("tests/t1/script.js".into(), script("rewritten"));
    let head = remote.commit(&as_files(&files), "rewritten history");
    let o = s.sync("test").await.unwrap();
    assert_eq!(o.head, head);
    assert_eq!(runs(&o), vec![("t1".into(), Reason::Changed)]);
    // A restarted daemon (no cached snapshot) plans the same from the database.
    remote.commit(
        &[("tests/t2/script.js", Some(&script("after-restart")))],
        "t2",
    );
    let mut restarted = syncer(&remote.path_url(), state.path(), db.pool().await);
    assert_eq!(
        runs(&restarted.sync("test").await.unwrap()),
        vec![("t2".into(), Reason::Changed)]
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn a_revert_runs_the_old_script_again() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(1)), "A");
    let mut s = syncer(&remote.path_url(), state.path(), pool.clone());
    s.sync("test").await.unwrap();
    remote.commit(&[("tests/t0/script.js", Some(&script("B")))], "B");
    let b = s.sync("test").await.unwrap();
    git(&remote.work, &["revert", "--no-edit", "HEAD"]);
    git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
    let a = s.sync("test").await.unwrap();
    git(&remote.work, &["revert", "--no-edit", "HEAD"]);
    git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
    let b2 = s.sync("test").await.unwrap();
    assert_eq!(b.queued[0].revision, b2.queued[0].revision);
    assert_ne!(
        b.queued[0].id, b2.queued[0].id,
        "the same revision again is a new attempt"
    );
    assert!(b2.queued[0].id.ends_with("-2"));
    assert_ne!(a.queued[0].revision, b.queued[0].revision);
    assert_eq!(count(&pool, "SELECT count(*) FROM test_runs").await, 3);
    db.drop_schema().await;
}

#[tokio::test]
async fn the_remote_going_away_fails_the_sync_until_it_is_back() {
    let mut remote = Remote::new();
    let url = remote.serve(None);
    let port = remote.port;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(2)), "initial");
    let mut s = syncer(&url, state.path(), pool.clone());
    s.sync("test").await.unwrap();
    remote.commit(&[("tests/t0/script.js", Some(&script("x")))], "while down");
    remote.stop();
    let err = s.sync("test").await.unwrap_err().to_string();
    assert!(err.contains("fetch"), "{err}");
    let last_error: Option<String> = sqlx::query_scalar("SELECT last_error FROM sync_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(last_error.is_some_and(|e| e.contains("127.0.0.1")));
    remote.serve(Some(port));
    let back = s.sync("test").await.unwrap();
    assert_eq!(runs(&back), vec![("t0".into(), Reason::Changed)]);
    let cleared: Option<String> = sqlx::query_scalar("SELECT last_error FROM sync_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cleared, None);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_deleted_branch_is_an_error_naming_it() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(1)), "initial");
    let mut s = syncer(&remote.path_url(), state.path(), db.pool().await);
    s.sync("test").await.unwrap();
    git(&remote.work, &["push", "-q", "origin", "HEAD:other"]);
    git(&remote.bare, &["symbolic-ref", "HEAD", "refs/heads/other"]);
    git(&remote.work, &["push", "-q", "origin", "--delete", "main"]);
    let err = s.sync("test").await.unwrap_err().to_string();
    assert!(err.contains("branch `main` does not exist"), "{err}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_commit_breaking_every_test_removes_none_and_runs_none() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(3)), "initial");
    let mut s = syncer(&remote.path_url(), state.path(), pool.clone());
    s.sync("test").await.unwrap();
    let broken: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("tests/t{i}/perftest.yaml"),
                "kind: PerfTest\n: : broken".to_string(),
            )
        })
        .collect();
    remote.commit(
        &broken
            .iter()
            .map(|(a, b)| (a.as_str(), Some(b.as_str())))
            .collect::<Vec<_>>(),
        "break all",
    );
    let o = s.sync("test").await.unwrap();
    assert!(o.plan.runs.is_empty() && o.plan.removed.is_empty());
    assert_eq!(o.plan.invalid.len(), 3);
    assert!(o.plan.invalid.iter().all(|i| i
        .errors
        .iter()
        .any(|e| e.code == perfsync::spec::Code::YamlSyntax)));
    // Fixing them back to the same content runs nothing: the revisions were kept.
    remote.commit(&as_files(&tests_files(3)), "fix all");
    let fixed = s.sync("test").await.unwrap();
    assert!(
        fixed.plan.runs.is_empty() && fixed.plan.invalid.is_empty(),
        "{:?}",
        fixed.plan
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM perf_tests WHERE valid").await,
        3
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn empty_repositories_and_huge_files_are_handled() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&[("README.md", Some("no tests yet"))], "empty");
    let mut s = syncer(&remote.path_url(), state.path(), db.pool().await);
    let o = s.sync("test").await.unwrap();
    assert!(o.plan.runs.is_empty() && o.plan.invalid.is_empty());
    let mut files = tests_files(1);
    files.insert("tests/t0/big.bin".into(), "x".repeat(20 * 1024 * 1024));
    remote.commit(&as_files(&files), "huge file");
    let o = s.sync("test").await.unwrap();
    assert_eq!(o.plan.invalid.len(), 1);
    assert_eq!(
        o.plan.invalid[0].errors[0].code,
        perfsync::spec::Code::LimitExceeded
    );
    assert_eq!(o.plan.invalid[0].errors[0].file, "tests/t0/big.bin");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_commit_past_the_repository_limits_is_refused_naming_it_and_the_limit() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    let first = remote.commit(&as_files(&tests_files(2)), "two tests");
    let src = GitSource::new(&remote.path_url(), "main", state.path(), GitAuth::default())
        .with_limits(perfsync::source::Limits {
            max_entries: 6,
            max_bytes: 4096,
        });
    let policy = Config::parse(
        "perfsync.yaml",
        "policy:\n  allowedTargets: [http://127.0.0.1]\n",
    )
    .unwrap()
    .policy;
    let mut s = Syncer::new(
        src,
        Layout::default(),
        policy,
        pool.clone(),
        Arc::new(Metrics::new()),
    );
    s.sync("test").await.unwrap();
    let last = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT last_commit FROM sync_state")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(last().await.as_deref(), Some(first.as_str()));

    // Four files more: eight, past six (the snapshot is updated incrementally here).
    let over = remote.commit(&as_files(&tests_files(4)), "four tests");
    let err = s.sync("test").await.unwrap_err().to_string();
    assert!(
        err.contains(&over) && err.contains("more than 6") && err.contains("maxTreeEntries"),
        "{err}"
    );
    assert_eq!(
        last().await.as_deref(),
        Some(first.as_str()),
        "nothing of it recorded"
    );
    // The next sync reads the commit whole, and refuses it the same way.
    assert!(s
        .sync("test")
        .await
        .unwrap_err()
        .to_string()
        .contains(&over));

    // Back within the entries, but one file of 5 KiB: past 4096 bytes.
    let big = "x".repeat(5000);
    let files = [
        ("tests/t2/perftest.yaml", None),
        ("tests/t2/script.js", None),
        ("tests/t3/perftest.yaml", None),
        ("tests/t3/script.js", None),
        ("tests/t0/data.txt", Some(big.as_str())),
    ];
    let heavy = remote.commit(&files, "drop two tests, add data");
    let err = s.sync("test").await.unwrap_err().to_string();
    assert!(
        err.contains(&heavy)
            && err.contains("more than 4096 bytes")
            && err.contains("maxTreeBytes"),
        "{err}"
    );
    let fixed = remote.commit(&[("tests/t0/data.txt", None)], "drop the data");
    s.sync("test").await.unwrap();
    assert_eq!(last().await.as_deref(), Some(fixed.as_str()));
    db.drop_schema().await;
}

#[tokio::test]
async fn a_crash_before_the_state_is_written_replans_the_same_runs_once() {
    let remote = Remote::new();
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    remote.commit(&as_files(&tests_files(3)), "initial");
    let mut s = syncer(&remote.path_url(), state.path(), pool.clone());
    s.sync("test").await.unwrap();
    remote.commit(
        &[
            ("tests/t0/script.js", Some(&script("a"))),
            ("tests/t2/script.js", Some(&script("b"))),
        ],
        "two changes",
    );
    s.fail_before_commit = true;
    assert!(s.sync("test").await.is_err());
    assert_eq!(
        count(&pool, "SELECT count(*) FROM test_runs").await,
        0,
        "nothing of the crashed sync was kept"
    );
    // The restarted daemon plans the same runs, once.
    let mut restarted = syncer(&remote.path_url(), state.path(), pool.clone());
    let o = restarted.sync("test").await.unwrap();
    assert_eq!(
        runs(&o),
        vec![
            ("t0".into(), Reason::Changed),
            ("t2".into(), Reason::Changed)
        ]
    );
    assert!(restarted.sync("test").await.unwrap().up_to_date);
    // A second process whose cached state is older loses the race instead of planning twice.
    let mut other = syncer(&remote.path_url(), state.path(), pool.clone());
    assert!(other.sync("test").await.unwrap().up_to_date);
    remote.commit(&[("tests/t1/script.js", Some(&script("c")))], "one more");
    assert_eq!(
        runs(&restarted.sync("test").await.unwrap()),
        vec![("t1".into(), Reason::Changed)]
    );
    let err = other.sync("test").await.unwrap_err().to_string();
    assert!(err.contains("lost a race"), "{err}");
    assert!(
        other.sync("test").await.unwrap().up_to_date,
        "after reloading, it is up to date"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM test_runs").await, 3);
    db.drop_schema().await;
}

#[tokio::test]
async fn http_remotes_authenticate_with_a_token_from_the_environment_and_never_leak_it() {
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(1)), "initial");
    let port = http_git::serve(remote.bare.parent().unwrap(), "ci-bot", "tok-3f9a-secret");
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;

    // Without credentials the fetch fails, and says why.
    let mut anon = Syncer::new(
        GitSource::new(&url, "main", state.path(), GitAuth::default()),
        Layout::default(),
        policy.clone(),
        pool.clone(),
        Arc::new(Metrics::new()),
    );
    let err = anon.sync("test").await.unwrap_err().to_string();
    assert!(err.contains("credentials"), "{err}");

    // The token comes from an environment variable named in the config, never the config text.
    std::env::set_var("PERFSYNC_TEST_GIT_TOKEN", "tok-3f9a-secret");
    let cfg = Config::parse(
        "perfsync.yaml",
        "repository:\n  url: http://127.0.0.1/x.git\n  auth:\n    username: ci-bot\n    password: {env: PERFSYNC_TEST_GIT_TOKEN}\n",
    )
    .unwrap();
    assert!(!format!("{cfg:?}").contains("tok-3f9a-secret"));
    let auth = cfg.git_auth().unwrap();
    assert!(
        !format!("{auth:?}").contains("tok-3f9a-secret"),
        "Debug redacts the password"
    );
    let mut s = Syncer::new(
        GitSource::new(&url, "main", state.path(), auth.clone()),
        Layout::default(),
        policy.clone(),
        pool.clone(),
        Arc::new(Metrics::new()),
    );
    let o = s.sync("test").await.unwrap();
    assert!(o.plan.is_baseline());

    // A token written into the URL is redacted wherever the URL is shown.
    let in_url = format!("http://ci-bot:tok-3f9a-secret@127.0.0.1:{port}/missing.git");
    let mut leaky = Syncer::new(
        GitSource::new(&in_url, "main", state.path(), GitAuth::default()),
        Layout::default(),
        policy,
        pool.clone(),
        Arc::new(Metrics::new()),
    );
    let err = leaky.sync("test").await.unwrap_err().to_string();
    assert!(!err.contains("tok-3f9a-secret"), "{err}");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(last_error, '') || repository FROM sync_state")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        stored.iter().all(|e| !e.contains("tok-3f9a-secret")),
        "{stored:?}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn a_local_repository_is_watched_and_polls_fire_on_time() {
    use perfsync::sync::triggers::Triggers;
    use perfsync::sync::watch::{local_git_dir, watch};
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(1)), "initial");
    let triggers = Arc::new(Triggers::new());
    let dir = local_git_dir(&remote.path_url()).expect("a bare repository is a local git dir");
    let _watcher = watch(&dir, "main", triggers.clone()).unwrap();
    remote.commit(
        &[("tests/t0/script.js", Some(&script("watched")))],
        "watched",
    );
    let batch = tokio::time::timeout(std::time::Duration::from_secs(10), triggers.next())
        .await
        .expect("a watch trigger");
    assert!(batch.iter().any(|t| t.kind == "watch"), "{batch:?}");
    assert_eq!(local_git_dir("https://example.com/x.git"), None);

    let (_tx, rx) = tokio::sync::watch::channel(false);
    let polls = Arc::new(Triggers::new());
    tokio::spawn(perfsync::sync::run::poll_loop(
        polls.clone(),
        std::time::Duration::from_millis(20),
        std::time::Duration::from_millis(20),
        rx,
    ));
    let batch = tokio::time::timeout(std::time::Duration::from_secs(10), polls.next())
        .await
        .expect("a poll trigger");
    assert_eq!(batch[0].kind, "poll");
}

#[tokio::test]
async fn ssh_remotes_use_a_key_file_and_check_the_host_key() {
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs openssh-server (scripts/setup.sh)"
        );
        eprintln!("sshd not installed; skipping");
        return;
    }
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(1)), "initial");
    let keys = tempfile::tempdir().unwrap();
    let k = |n: &str| keys.path().join(n);
    for (name, kind) in [
        ("host", "ed25519"),
        ("client", "ed25519"),
        ("stranger", "ed25519"),
    ] {
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(k(name))
            .status()
            .unwrap();
    }
    std::fs::copy(k("client.pub"), k("authorized_keys")).unwrap();
    let port = free_port();
    std::fs::write(
        k("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {}\nPasswordAuthentication no\n",
            k("host").display(),
            k("authorized_keys").display(),
            k("sshd.pid").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut daemon = std::process::Command::new(sshd)
        .arg("-D")
        .arg("-f")
        .arg(k("sshd_config"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let host_pub = std::fs::read_to_string(k("host.pub")).unwrap();
    let known = format!("[127.0.0.1]:{port} {host_pub}");
    let url = format!("ssh://root@127.0.0.1:{port}{}", remote.bare.display());
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let auth = |key: &str, known: &str| GitAuth {
        ssh_key: Some(k(key)),
        known_hosts: Some(known.to_string()),
        ..Default::default()
    };
    let mk = |a: GitAuth, state: &Path| {
        Syncer::new(
            GitSource::new(&url, "main", state, a),
            Layout::default(),
            policy.clone(),
            pool.clone(),
            Arc::new(Metrics::new()),
        )
    };

    let s1 = tempfile::tempdir().unwrap();
    let o = mk(auth("client", &known), s1.path()).sync("test").await;
    let s2 = tempfile::tempdir().unwrap();
    let wrong_key = mk(auth("stranger", &known), s2.path()).sync("test").await;
    let s3 = tempfile::tempdir().unwrap();
    let stranger_pub = std::fs::read_to_string(k("stranger.pub")).unwrap();
    let wrong_host = mk(
        auth("client", &format!("[127.0.0.1]:{port} {stranger_pub}")),
        s3.path(),
    )
    .sync("test")
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(o
        .expect("fetch over ssh with the key file")
        .plan
        .is_baseline());
    assert!(
        wrong_key.is_err(),
        "a key the server does not know is refused"
    );
    let err = wrong_host.unwrap_err().to_string();
    assert!(err.contains("host key") || err.contains("hostkey"), "{err}");
    db.drop_schema().await;
}
