//! The status page behind the API token (`server.page: token`), runner logs for signed-in
//! readers only (also with `page: public`), and secret values masked wherever a log or a
//! reason is shown or returned: over raw HTTP, through the daemon with a real k6 run, and in
//! headless Chromium with JavaScript off.

mod support;

use chrono::Utc;
use perfsync::config::{Config, PageAccess, RegressionTolerance};
use perfsync::executor::local::LocalExecutor;
use perfsync::executor::scheduler::Scheduler;
use perfsync::metrics::Metrics;
use perfsync::record::recorder::Recorder;
use perfsync::results::build::{merged_metrics, summarize, Inputs};
use perfsync::results::summary::RunTrigger;
use perfsync::results::{Ending, RunReport, RunnerReport};
use perfsync::server::page::{session_valid, session_value, PageSettings, COOKIE};
use perfsync::server::{routes, AppState, Health};
use perfsync::sync::triggers::Triggers;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use support::daemon::*;
use support::parts::*;
use support::*;

const TOKEN: &str = "page-api-token-7Qx2vB";
const HOOK: &str = "page-hook-secret-k9Lm";
const DB_PASSWORD: &str = "db-pass-Zr4Tq8";
const RUN: &str = "checkout-cccccccccc-1";
const LOG_LINE: &str = "runner says hello from its log";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// One HTTP answer, headers included.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `name=value` of the session cookie this answer sets.
    fn session_cookie(&self) -> String {
        let set = self.header("set-cookie").expect("a Set-Cookie header");
        let pair = set.split(';').next().unwrap().trim().to_string();
        assert!(pair.starts_with(&format!("{COOKIE}=")), "{set}");
        pair
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn sign_in(addr: SocketAddr) -> String {
    let a = request(
        addr,
        "POST",
        "/login",
        &[FORM],
        &format!("token={TOKEN}&next=%2F"),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);
    a.session_cookie()
}

/// A run whose runner's reason carries the API token and a webhook secret, as a reason read
/// from a pod's log might.
fn summary() -> perfsync::results::RunSummary {
    let start = Utc::now();
    let k6_summary = json!({"state": {"testRunDurationMs": 10000.0}, "metrics": {
        "http_req_duration": {"type": "trend", "values": {"avg": 50.0, "min": 1.0, "max": 200.0, "med": 50.0, "p(95)": 120.0, "count": 500.0}},
        "http_reqs": {"type": "counter", "values": {"count": 500.0, "rate": 50.0}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.0, "passes": 0.0, "fails": 500.0}}}});
    let report = RunReport {
        run_id: RUN.into(),
        test: "checkout".into(),
        revision: "c".repeat(64),
        commit: Some("d".repeat(40)),
        author: Some("Ada".into()),
        trigger: RunTrigger::Change,
        executor: "local".into(),
        parallelism: 1,
        start,
        end: start + chrono::Duration::seconds(10),
        ending: Ending::Finished,
        runners: vec![RunnerReport {
            index: 1,
            exit_code: Some(0),
            reason: Some(format!("its log ended with {TOKEN} and {HOOK}")),
            summary: Some(k6_summary),
        }],
    };
    let th = perfsync::spec::model::Thresholds::from_iter([(
        "http_req_duration".to_string(),
        vec![perfsync::spec::model::ThresholdEntry::Expr(
            "p(95)<500".into(),
        )],
    )]);
    let metrics = merged_metrics(&report, &th);
    summarize(Inputs {
        report: &report,
        thresholds: &th,
        metrics,
        notes: vec![],
        baseline: None,
        tolerance: &RegressionTolerance::default(),
    })
}

struct Site {
    addr: SocketAddr,
    app: Arc<AppState>,
    db: Option<TestDb>,
    _state: tempfile::TempDir,
}

impl Site {
    async fn close(mut self) {
        if let Some(db) = self.db.take() {
            db.drop_schema().await;
        }
    }
}

async fn serve(app: Arc<AppState>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes(app)).incoming(listener).run());
    addr
}

fn app(
    page: PageSettings,
    pool: Option<sqlx::PgPool>,
    scheduler: Option<Arc<Scheduler>>,
) -> Arc<AppState> {
    Arc::new(AppState {
        triggers: Arc::new(Triggers::new()),
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(Health::default()),
        branch: "main".into(),
        hook_secrets: [("github", HOOK.to_string())].into_iter().collect(),
        api_token: Some(TOKEN.into()),
        pool,
        scheduler,
        repository_url: None,
        page,
    })
}

/// The server with one recorded run whose runner wrote `log`, the database password known
/// to it as a secret.
async fn site(access: PageAccess, log: &str) -> Site {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status) VALUES ($1, 'checkout', 'c', 1, 'changed', 'webhook:github', 'queued')")
        .bind(RUN)
        .execute(&pool)
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::new(pool.clone(), state.path(), None, None));
    recorder.record(&summary()).await.unwrap();
    let root = state.path().join("runs");
    std::fs::create_dir_all(root.join(RUN)).unwrap();
    std::fs::write(root.join(RUN).join("runner-1.log"), log).unwrap();
    let executor = LocalExecutor {
        grace: std::time::Duration::from_secs(1),
        ..LocalExecutor::new("k6", root)
    };
    let scheduler = Arc::new(Scheduler::new(
        pool.clone(),
        perfsync::executor::Executor::Local(executor),
        recorder,
        Config::default().policy,
        None,
    ));
    let app = app(
        PageSettings::new(access).with_secrets(vec![DB_PASSWORD.into()]),
        Some(pool),
        Some(scheduler),
    );
    Site {
        addr: serve(app.clone()).await,
        app,
        db: Some(db),
        _state: state,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_page_token_every_page_sends_a_reader_without_a_session_to_login() {
    let s = site(PageAccess::Token, &format!("{LOG_LINE}\n")).await;
    for (path, next) in [
        ("/".to_string(), "%2F".to_string()),
        (format!("/runs/{RUN}"), format!("%2Fruns%2F{RUN}")),
    ] {
        let a = request(s.addr, "GET", &path, &[], "").await;
        assert_eq!(a.status, 303, "{path}: {}", a.body);
        assert_eq!(
            a.header("location"),
            Some(format!("/login?next={next}").as_str())
        );
        assert!(
            !a.body.contains("checkout") && !a.body.contains(LOG_LINE),
            "{path} shows nothing: {}",
            a.body
        );
    }
    // Cookies the server did not issue, or no longer honours, open nothing.
    let now = Utc::now().timestamp();
    let good = session_value(&s.app, now + 600).unwrap();
    let (head, sig) = good.rsplit_once('.').unwrap();
    let flipped = format!(
        "{head}.{}{}",
        if sig.starts_with('0') { '1' } else { '0' },
        &sig[1..]
    );
    let longer = format!("v1.{}.{sig}", now + 601);
    let expired = session_value(&s.app, now - 5).unwrap();
    for forged in [TOKEN.to_string(), flipped, longer, expired, String::new()] {
        let cookie = format!("{COOKIE}={forged}");
        let a = request(
            s.addr,
            "GET",
            &format!("/runs/{RUN}"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(a.status, 303, "{forged:?} is no session");
        assert!(!session_valid(&s.app, &forged, now));
    }
    assert!(session_valid(&s.app, &good, now));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_sets_an_httponly_strict_session_cookie_that_is_not_the_token() {
    let s = site(PageAccess::Token, &format!("{LOG_LINE}\n")).await;
    let form = request(s.addr, "GET", &format!("/login?next=/runs/{RUN}"), &[], "").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("<form method=\"post\" action=\"/login\"")
            && form.body.contains("type=\"password\" name=\"token\"")
            && form
                .body
                .contains(&format!("name=\"next\" value=\"/runs/{RUN}\"")),
        "{}",
        form.body
    );
    assert!(!form.body.contains("<script"), "no JavaScript");

    // A wrong token, or none, is refused and sets nothing.
    for body in [
        "token=not-the-token&next=%2F".to_string(),
        "next=%2F".into(),
        format!("token={TOKEN}x&next=%2F"),
    ] {
        let a = request(s.addr, "POST", "/login", &[FORM], &body).await;
        assert_eq!(a.status, 401, "{body}");
        assert!(a.header("set-cookie").is_none(), "{body}");
        assert!(a.body.contains("not the API token"), "{}", a.body);
    }
    // A form posted from another site is refused even with the right token.
    let a = request(
        s.addr,
        "POST",
        "/login",
        &[FORM, ("Origin", "http://evil.example")],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(a.header("set-cookie").is_none());

    let origin = format!("http://{}", s.addr);
    let a = request(
        s.addr,
        "POST",
        "/login",
        &[FORM, ("Origin", &origin)],
        &format!("token={TOKEN}&next=%2Fruns%2F{RUN}"),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        a.header("location"),
        Some(format!("/runs/{RUN}").as_str()),
        "back where the reader was going"
    );
    let set = a.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|p| p == attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure ({set})");
    let cookie = a.session_cookie();
    let value = cookie.split_once('=').unwrap().1;
    assert_ne!(value, TOKEN);
    assert!(!set.contains(TOKEN), "the cookie does not hold the token");

    // Behind a TLS proxy the cookie is Secure; an offsite `next` goes home instead.
    let a = request(
        s.addr,
        "POST",
        "/login",
        &[FORM, ("X-Forwarded-Proto", "https")],
        &format!("token={TOKEN}&next=%2F%2Fevil.example%2F"),
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/"));
    assert!(a
        .header("set-cookie")
        .unwrap()
        .split("; ")
        .any(|p| p == "Secure"));

    // With the cookie, the pages and the log tail.
    let page = request(
        s.addr,
        "GET",
        &format!("/runs/{RUN}"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Runner 1 log") && page.body.contains(LOG_LINE),
        "{}",
        page.body
    );
    let home = request(s.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Sign out"), "{}", home.body);

    // Logging out clears the cookie.
    let out = request(s.addr, "POST", "/logout", &[("Cookie", &cookie)], "").await;
    assert_eq!(out.status, 303);
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with(&format!("{COOKIE}=;")) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_flag_marks_the_cookie_secure_and_no_token_means_no_sign_in() {
    let secure = serve(app(
        PageSettings::new(PageAccess::Token).with_secure_cookie(true),
        None,
        None,
    ))
    .await;
    let a = request(secure, "POST", "/login", &[FORM], &format!("token={TOKEN}")).await;
    assert_eq!(a.status, 303);
    assert!(a
        .header("set-cookie")
        .unwrap()
        .split("; ")
        .any(|p| p == "Secure"));

    // `page: token` without `server.apiToken`: closed, not open.
    let mut state = Arc::into_inner(app(PageSettings::new(PageAccess::Token), None, None)).unwrap();
    state.api_token = None;
    let closed = serve(Arc::new(state)).await;
    assert_eq!(request(closed, "GET", "/", &[], "").await.status, 303);
    let a = request(closed, "POST", "/login", &[FORM], "token=").await;
    assert_eq!(a.status, 401);
    assert!(a.header("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_page_public_an_anonymous_reader_sees_verdicts_and_figures_but_no_log() {
    let s = site(PageAccess::Public, &format!("{LOG_LINE}\n")).await;
    let home = request(s.addr, "GET", "/", &[], "").await;
    assert_eq!(home.status, 200, "public: no sign-in needed");
    let page = request(s.addr, "GET", &format!("/runs/{RUN}"), &[], "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("p(95)&lt;500") && page.body.contains("http_req_duration"),
        "figures are public: {}",
        page.body
    );
    assert!(
        !page.body.contains(LOG_LINE) && !page.body.contains("Runner 1 log"),
        "no log for an anonymous reader: {}",
        page.body
    );
    assert!(page.body.contains("/login?next="), "a way to sign in");
    let cookie = sign_in(s.addr).await;
    let page = request(
        s.addr,
        "GET",
        &format!("/runs/{RUN}"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert!(page.body.contains(LOG_LINE), "{}", page.body);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_and_long_lines_capped_on_the_page_and_in_the_api() {
    // Runner 1: secrets and a 50,000-character line inside the tail that is read; runner 2:
    // a 100,000-character last line, longer than the tail itself.
    let log = format!(
        "{LOG_LINE}\ntoken={TOKEN} hook={HOOK} db={DB_PASSWORD}\n{}\nthe last line\n",
        "y".repeat(50_000)
    );
    let s = site(PageAccess::Token, &log).await;
    std::fs::write(
        s._state.path().join("runs").join(RUN).join("runner-2.log"),
        format!("first line\n{}\n", "x".repeat(100_000)),
    )
    .unwrap();
    let cookie = sign_in(s.addr).await;
    let page = request(
        s.addr,
        "GET",
        &format!("/runs/{RUN}"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(
        html.contains("token=*** hook=*** db=***") && html.contains("the last line"),
        "{html}"
    );
    assert!(
        html.contains("its log ended with *** and ***"),
        "the reason is masked too"
    );
    for secret in [TOKEN, HOOK, DB_PASSWORD] {
        assert!(!html.contains(secret), "{secret} on the page");
    }
    assert!(html.contains(&"y".repeat(2_000)) && !html.contains(&"y".repeat(2_001)));
    assert!(
        html.contains("48000 more characters cut"),
        "a marker says so"
    );
    assert!(
        html.contains("Runner 2 log") && html.contains("the start of this line was cut"),
        "{html}"
    );
    assert!(html.contains(&"x".repeat(2_000)) && !html.contains(&"x".repeat(2_001)));
    assert!(html.len() < 40_000, "the page stays small: {}", html.len());

    let auth = format!("Bearer {TOKEN}");
    let logs = request(
        s.addr,
        "GET",
        &format!("/api/v1/runs/{RUN}/logs"),
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(logs.status, 200, "{}", logs.body);
    for secret in [TOKEN, HOOK, DB_PASSWORD] {
        assert!(!logs.body.contains(secret), "{secret} in the API");
    }
    let v: Value = serde_json::from_str(&logs.body).unwrap();
    let lines: Vec<&str> = v["runners"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(v["runners"][0]["index"], 1);
    assert!(lines.contains(&"token=*** hook=*** db=***"), "{lines:?}");
    let capped = lines.iter().find(|l| l.starts_with("yyy")).unwrap();
    assert!(capped.chars().count() < 2_100 && capped.ends_with("more characters cut]"));
    let last = v["runners"][1]["lines"].as_array().unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    assert!(last[0].as_str().unwrap().chars().count() < 2_100);

    let run = request(
        s.addr,
        "GET",
        &format!("/api/v1/runs/{RUN}"),
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(run.status, 200);
    let v: Value = serde_json::from_str(&run.body).unwrap();
    assert_eq!(
        v["summary"]["reason"],
        "runner 1: its log ended with *** and ***"
    );
    assert!(!run.body.contains(TOKEN) && !run.body.contains(HOOK));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_a_local_run_prints_is_masked_on_the_page_and_in_the_api() {
    if !k6_available() {
        return;
    }
    const PRINTED: &str = "script-secret-V4lue-93";
    let remote = Remote::new();
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  apiToken: {{env: PAGE_API_TOKEN}}\n  page: token\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\nexecutor:\n  kind: local\n  local:\n    secretEnv: [API_TOKEN]\nresults:\n  writeBack: false\n",
            remote.path_url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &cfg,
        &db.url,
        port,
        &[("PAGE_API_TOKEN", TOKEN), ("API_TOKEN", PRINTED)],
    );
    wait_baseline(&pool).await;
    remote.commit(
        &[
            ("tests/leaky/perftest.yaml", Some("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: leaky\nspec:\n  script: script.js\n  targets: [http://127.0.0.1:1]\n  load: {vus: 1, duration: 1s}\n  secretEnv:\n    - {name: API_TOKEN, secret: api-credentials, key: token}\n  timeout: 1m\n")),
            ("tests/leaky/script.js", Some("import { sleep } from 'k6';\nexport default function () {\n  console.log(`token is ${__ENV.API_TOKEN}`);\n  sleep(0.3);\n}\n")),
        ],
        "a test that prints its secret",
    );
    let auth = format!("Bearer {TOKEN}");
    let a = request(
        daemon.addr,
        "POST",
        "/api/v1/sync",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(a.status, 202);
    let run_id: String = wait_for("the leaky run's result", 90, || async {
        sqlx::query_scalar::<_, String>("SELECT run_id FROM test_results WHERE test_id = 'leaky'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;

    let anonymous = request(daemon.addr, "GET", &format!("/runs/{run_id}"), &[], "").await;
    assert_eq!(anonymous.status, 303, "the daemon serves `page: token`");
    let cookie = sign_in(daemon.addr).await;
    let page = request(
        daemon.addr,
        "GET",
        &format!("/runs/{run_id}"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("token is ***"), "{}", page.body);
    assert!(!page.body.contains(PRINTED), "the printed secret is masked");

    let logs = request(
        daemon.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(logs.status, 200);
    assert!(logs.body.contains("token is ***"), "{}", logs.body);
    assert!(!logs.body.contains(PRINTED));
    let run = request(
        daemon.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}"),
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(run.status, 200);
    assert!(!run.body.contains(PRINTED) && !run.body.contains(TOKEN));
    // The runner really printed it: the log file holds the value, the page never does.
    let raw = std::fs::read_to_string(
        dir.path()
            .join("state/runs")
            .join(&run_id)
            .join("runner-1.log"),
    )
    .unwrap();
    assert!(raw.contains(PRINTED), "{raw}");
    drop(daemon);
    db.drop_schema().await;
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), with
/// the page's JavaScript turned off: what a person does, typing and pressing Enter.
mod cdp {
    use serde_json::{json, Value};
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    pub struct Browser {
        child: Child,
        to: std::fs::File,
        from: mpsc::Receiver<Value>,
        pending: Vec<Value>,
        next: u64,
        _profile: tempfile::TempDir,
    }

    /// A pipe whose ends sit at fd 10 or above and close on exec.
    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors; F_DUPFD_CLOEXEC copies them above 9.
        unsafe {
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let high = fds.map(|fd| {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                libc::close(fd);
                h
            });
            assert!(high.iter().all(|fd| *fd >= 10));
            (high[0], high[1])
        }
    }

    impl Browser {
        pub fn launch(bin: &str) -> Browser {
            let profile = tempfile::tempdir().unwrap();
            let (to_read, to_write) = pipe();
            let (from_read, from_write) = pipe();
            let mut cmd = Command::new(bin);
            cmd.args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            // SAFETY: only dup2 between fork and exec; Chromium reads fd 3, writes fd 4.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(to_read, 3) < 0 || libc::dup2(from_write, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("start chromium");
            // SAFETY: each descriptor is owned here and closed once.
            let (to, from) = unsafe {
                drop(OwnedFd::from_raw_fd(to_read));
                drop(OwnedFd::from_raw_fd(from_write));
                (
                    std::fs::File::from(OwnedFd::from_raw_fd(to_write)),
                    std::fs::File::from(OwnedFd::from_raw_fd(from_read)),
                )
            };
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut r = BufReader::new(from);
                loop {
                    let mut msg = Vec::new();
                    match r.read_until(0, &mut msg) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            msg.pop();
                            if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                                if tx.send(v).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            Browser {
                child,
                to,
                from: rx,
                pending: Vec::new(),
                next: 0,
                _profile: profile,
            }
        }

        fn recv(&mut self) -> Value {
            self.from
                .recv_timeout(Duration::from_secs(30))
                .expect("chromium answers over the pipe")
        }

        pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
            self.next += 1;
            let id = self.next;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if let Some(s) = session {
                msg["sessionId"] = json!(s);
            }
            let mut bytes = serde_json::to_vec(&msg).unwrap();
            bytes.push(0);
            self.to.write_all(&bytes).unwrap();
            loop {
                let m = self.recv();
                if m["id"] == json!(id) {
                    assert!(m.get("error").is_none(), "{method}: {m}");
                    return m["result"].clone();
                }
                self.pending.push(m);
            }
        }

        /// Forgets events seen so far of this kind (before an action that causes a new one).
        pub fn forget(&mut self, method: &str) {
            self.pending.retain(|m| m["method"] != json!(method));
        }

        pub fn wait_event(&mut self, session: &str, method: &str) -> Value {
            let matches =
                |m: &Value| m["method"] == json!(method) && m["sessionId"] == json!(session);
            if let Some(i) = self.pending.iter().position(matches) {
                return self.pending.remove(i);
            }
            loop {
                let m = self.recv();
                if matches(&m) {
                    return m;
                }
                self.pending.push(m);
            }
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    assert!(
        found.is_some() || std::env::var_os("CI").is_none(),
        "CI installs Debian's chromium (scripts/setup.sh)"
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_javascript_signs_in_with_the_form_and_sees_the_run() {
    let Some(bin) = chromium() else { return };
    let s = site(
        PageAccess::Token,
        &format!("{LOG_LINE}\nsecret {TOKEN} here\n"),
    )
    .await;
    let addr = s.addr;
    let (url, html, cookies) = tokio::task::spawn_blocking(move || {
        let mut b = cdp::Browser::launch(bin);
        let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}))
            ["targetId"]
            .clone();
        let session = b.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        let s = Some(session.as_str());
        b.call(s, "Page.enable", json!({}));
        b.call(
            s,
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        );
        let location = |b: &mut cdp::Browser| {
            let h = b.call(s, "Page.getNavigationHistory", json!({}));
            let i = h["currentIndex"].as_u64().unwrap() as usize;
            h["entries"][i]["url"].as_str().unwrap().to_string()
        };
        let html = |b: &mut cdp::Browser| {
            let doc = b.call(s, "DOM.getDocument", json!({"depth": -1}))["root"]["nodeId"].clone();
            b.call(s, "DOM.getOuterHTML", json!({"nodeId": doc}))["outerHTML"]
                .as_str()
                .unwrap()
                .to_string()
        };

        b.forget("Page.loadEventFired");
        b.call(
            s,
            "Page.navigate",
            json!({"url": format!("http://{addr}/runs/{RUN}")}),
        );
        b.wait_event(&session, "Page.loadEventFired");
        let at = location(&mut b);
        assert!(
            at.starts_with(&format!("http://{addr}/login?next=")),
            "sent to the login form: {at}"
        );
        let login = html(&mut b);
        assert!(!login.contains(LOG_LINE), "{login}");

        let doc = b.call(s, "DOM.getDocument", json!({"depth": -1}))["root"]["nodeId"].clone();
        let input = b.call(
            s,
            "DOM.querySelector",
            json!({"nodeId": doc, "selector": "input[name=token]"}),
        )["nodeId"]
            .clone();
        b.call(s, "DOM.focus", json!({"nodeId": input}));
        b.call(s, "Input.insertText", json!({"text": TOKEN}));
        b.forget("Page.loadEventFired");
        for kind in ["keyDown", "keyUp"] {
            let mut key = json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
            if kind == "keyDown" {
                key["text"] = json!("\r");
            }
            b.call(s, "Input.dispatchKeyEvent", key);
        }
        b.wait_event(&session, "Page.loadEventFired");
        let url = location(&mut b);
        let page = html(&mut b);
        let cookies = b.call(
            s,
            "Network.getCookies",
            json!({"urls": [format!("http://{addr}/")]}),
        )["cookies"]
            .clone();
        (url, page, cookies)
    })
    .await
    .unwrap();
    assert_eq!(url, format!("http://{addr}/runs/{RUN}"), "{html}");
    assert!(
        html.contains(LOG_LINE) && html.contains("secret *** here"),
        "{html}"
    );
    assert!(!html.contains(TOKEN));
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == COOKIE)
        .unwrap_or_else(|| panic!("the session cookie: {cookies}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/");
    assert_ne!(session["value"], TOKEN);
    s.close().await;
}

#[test]
fn the_page_defaults_to_public_and_the_shipped_manifests_ask_for_the_token() {
    let default = Config::parse("perfsync.yaml", "server:\n  listen: 127.0.0.1:1\n").unwrap();
    assert_eq!(default.server.page, PageAccess::Public);
    let token = Config::parse(
        "perfsync.yaml",
        "server:\n  page: token\n  secureCookie: true\n",
    )
    .unwrap();
    assert_eq!(token.server.page, PageAccess::Token);
    assert!(token.server.secure_cookie);
    assert!(Config::parse("perfsync.yaml", "server:\n  page: private\n").is_err());

    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/configmap.yaml"),
    )
    .unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let shipped = Config::parse(
        "manifests/base/configmap.yaml",
        doc["data"]["perfsync.yaml"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(shipped.server.page, PageAccess::Token);
}
