//! The status page: server-rendered HTML, no JavaScript, refreshing itself. `/` shows the
//! sync, every test with its last verdict and a p95 history chart, and the active and queued
//! runs; `/runs/{id}` shows one run.
//!
//! Access (`server.page`): `public` shows verdicts and figures to anyone and runner logs only
//! to a reader signed in with the API token; `token` sends every page to `/login` until then.
//! `/login` is a plain form posting the token; on success the browser gets a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS) holding an expiry and an HMAC under a
//! key derived from the token (PBKDF2), never the token: every replica can check it, and a
//! stolen cookie does not give the token away. Every log line and reason passes through
//! [`super::mask::mask`] with every secret value this process knows.

use super::mask::{self, cap_line, MAX_LINE_CHARS};
use super::AppState;
use crate::config::{Config, PageAccess};
use crate::executor::run::LOG_TAIL_BYTES;
use crate::record::{results, runs};
use crate::results::RunSummary;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use warp::http::header::{HeaderValue, LOCATION, SET_COOKIE};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

/// The session cookie's name.
pub const COOKIE: &str = "perfsync_session";
/// How long a session lasts (the cookie's `Max-Age`, and the expiry inside its value).
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// PBKDF2 rounds turning the API token into the session key, so that guessing a weak token
/// from a stolen cookie costs this many HMACs per guess.
const KDF_ROUNDS: u32 = 50_000;
const KDF_SALT: &[u8] = b"perfsync status page session key v1";
/// How many lines of the end of each runner's log (its last `LOG_TAIL_BYTES`) are shown.
const TAIL_LINES: usize = 30;

/// How the status page is served, and the secret values of this process that `AppState`
/// does not hold already (the API token and webhook secrets are there).
#[derive(Default)]
pub struct PageSettings {
    pub access: PageAccess,
    /// Always mark the session cookie `Secure` (`server.secureCookie`).
    pub secure_cookie: bool,
    secrets: Vec<String>,
    session_key: OnceLock<[u8; 32]>,
}

impl PageSettings {
    pub fn new(access: PageAccess) -> PageSettings {
        PageSettings {
            access,
            ..PageSettings::default()
        }
    }

    pub fn with_secure_cookie(mut self, yes: bool) -> PageSettings {
        self.secure_cookie = yes;
        self
    }

    /// Further values to mask wherever a log or a reason is shown.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> PageSettings {
        self.secrets = secrets;
        self
    }

    /// `server.page`, `server.secureCookie`, and the values of the secrets the configuration
    /// names besides the API token and webhook secrets: the database URL's password, the git
    /// password or token (and one in the repository URL), the Grafana token. A secret that
    /// does not resolve is skipped (the daemon refuses to start without the ones it needs).
    pub fn from_config(config: &Config) -> PageSettings {
        let mut secrets = Vec::new();
        let mut url_password = |url: &str| {
            if let Some(p) = url::Url::parse(url)
                .ok()
                .and_then(|u| u.password().map(str::to_string))
            {
                secrets.push(percent_decode(&p));
                secrets.push(p);
            }
        };
        if let Ok(db) = config.database_url() {
            url_password(&db);
        }
        if let Ok(repo) = config.repository_url() {
            url_password(&repo);
        }
        if let Some(p) = config
            .repository
            .auth
            .as_ref()
            .and_then(|a| a.password.as_ref())
            .and_then(|p| p.resolve("repository.auth.password").ok())
        {
            secrets.push(p);
        }
        if let Some(t) = config
            .grafana
            .as_ref()
            .and_then(|g| g.token.resolve("grafana.token").ok())
        {
            secrets.push(t);
        }
        // Forge tokens, and the URLs and signing secrets of notification sinks (a Slack
        // webhook URL is its credential).
        for f in &config.forges {
            secrets.extend(f.token.resolve("forges[].token").ok());
        }
        for n in &config.notifications {
            secrets.extend(n.url.resolve("notifications[].url").ok());
            secrets.extend(
                n.secret
                    .as_ref()
                    .and_then(|s| s.resolve("notifications[].secret").ok()),
            );
        }
        PageSettings::new(config.server.page)
            .with_secure_cookie(config.server.secure_cookie)
            .with_secrets(secrets)
    }
}

/// `%XX` escapes decoded (a URL's password as the server receives it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match byte {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every secret value this process knows that no page or answer may show: the API token, the
/// webhook secrets, the configuration's other secrets, and — for the local executor, which
/// hands a runner the daemon's variables listed in `executor.local.secretEnv` — their values.
/// (The kubernetes executor never sees `secretEnv` values: they live in the cluster's
/// Secrets.) Each value also in its URL-encoded form.
pub fn known_secrets(state: &AppState) -> Vec<String> {
    let mut out: Vec<String> = state.api_token.iter().cloned().collect();
    out.extend(state.hook_secrets.values().cloned());
    out.extend(state.page.secrets.iter().cloned());
    if let Some(sched) = &state.scheduler {
        match sched.executor.as_ref() {
            crate::executor::Executor::Local(local) => out.extend(
                local
                    .secret_env
                    .iter()
                    .filter_map(|n| std::env::var(n).ok()),
            ),
            crate::executor::Executor::Kubernetes(k) => out.extend(k.secret_book.values()),
        }
    }
    let encoded: Vec<String> = out
        .iter()
        .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
        .collect();
    out.extend(encoded);
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

/// A run id as perfsync makes them (`<test>-<rev10>-<attempt>`): safe as a folder name.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One runner's log tail, masked, each line capped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunnerLog {
    pub index: u32,
    pub lines: Vec<String>,
}

/// The last `max` bytes of a file, read by seeking from its end, and whether the read began
/// after the file's start (inside a line). `executor::run::tail` drops that cut first line
/// itself, which loses a long last line whole (its only newline is the final one), so the
/// page reads the bytes and lets `mask::log_tail` decide.
fn read_end(path: &Path, max: u64) -> std::io::Result<(String, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), start > 0))
}

/// Each runner's log tail (`runner-<i>.log` in the run's folder), masked with `secrets`.
pub fn runner_logs(state: &AppState, run_id: &str, secrets: &[&str]) -> Vec<RunnerLog> {
    let Some(sched) = &state.scheduler else {
        return Vec::new();
    };
    if !plain_id(run_id) {
        return Vec::new();
    }
    let root = match sched.executor.as_ref() {
        crate::executor::Executor::Local(l) => &l.root,
        crate::executor::Executor::Kubernetes(k) => &k.root,
    };
    let dir = root.join(run_id);
    (1..=64)
        .map_while(|index| {
            let (text, starts_cut) =
                read_end(&dir.join(format!("runner-{index}.log")), LOG_TAIL_BYTES).ok()?;
            Some(RunnerLog {
                index,
                lines: mask::log_tail(&text, starts_cut, TAIL_LINES, secrets),
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// PBKDF2-HMAC-SHA256 of the API token (one block): the key session values are signed with.
fn derive_session_key(token: &str) -> [u8; 32] {
    let prf = hmac(token.as_bytes());
    let mut m = prf.clone();
    m.update(KDF_SALT);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut t = u;
    for _ in 1..KDF_ROUNDS {
        let mut m = prf.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        t.iter_mut().zip(u.iter()).for_each(|(a, b)| *a ^= b);
    }
    t
}

fn session_key(state: &AppState) -> Option<&[u8; 32]> {
    let token = state.api_token.as_deref().filter(|t| !t.is_empty())?;
    Some(
        state
            .page
            .session_key
            .get_or_init(|| derive_session_key(token)),
    )
}

fn session_mac(key: &[u8; 32], expires: i64) -> Hmac<Sha256> {
    let mut m = hmac(key);
    m.update(b"v1.");
    m.update(expires.to_string().as_bytes());
    m
}

/// A session value for the cookie: `v1.<expiry, unix seconds>.<hex HMAC>`.
pub fn session_value(state: &AppState, expires: i64) -> Option<String> {
    let key = session_key(state)?;
    Some(format!(
        "v1.{expires}.{}",
        hex(&session_mac(key, expires).finalize().into_bytes())
    ))
}

/// Whether `value` is a session this server issued and that has not expired (the HMAC is
/// compared in constant time).
pub fn session_valid(state: &AppState, value: &str, now: i64) -> bool {
    let Some(key) = session_key(state) else {
        return false;
    };
    let mut parts = value.splitn(3, '.');
    let (Some("v1"), Some(expires), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    if expires <= now || expires > now + SESSION_SECONDS + 60 {
        return false;
    }
    let Some(sig) = unhex(sig) else {
        return false;
    };
    session_mac(key, expires).verify_slice(&sig).is_ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries a valid session cookie.
pub fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    let now = chrono::Utc::now().timestamp();
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && session_valid(state, value, now))
}

/// Whether the request came over TLS, as far as this server can tell: a configured flag, or
/// the TLS-terminating proxy's `X-Forwarded-Proto` / `Forwarded: proto=https`.
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.page.secure_cookie
        || header(headers, "x-forwarded-proto")
            .and_then(|p| p.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || header(headers, "forwarded").is_some_and(|f| {
            f.split([';', ','])
                .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
        })
}

/// A form post from another site is refused: `Sec-Fetch-Site: cross-site`, or an `Origin`
/// that is not this host (`Host` or the proxy's `X-Forwarded-Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    if header(headers, "sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return false;
    }
    let Some(origin) = header(headers, "origin") else {
        return true;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    [header(headers, "host"), header(headers, "x-forwarded-host")]
        .into_iter()
        .flatten()
        .filter_map(|h| h.split(',').next())
        .any(|h| h.trim().eq_ignore_ascii_case(authority))
}

/// Where to go after signing in: a path on this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn with_header(mut r: Response, name: warp::http::header::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
    r
}

fn redirect(to: &str) -> Response {
    let mut r = page("perfsync", false, "<a href=\"/\">continue</a>");
    *r.status_mut() = StatusCode::SEE_OTHER;
    with_header(r, LOCATION, to)
}

fn to_login(next: &str) -> Response {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    redirect(&format!("/login?{q}"))
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2433;background:#f7f8fa}h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}th,td{padding:6px 10px;border-bottom:1px solid #e6e8ee;text-align:left;vertical-align:middle}\
th{background:#eef0f5;font-weight:600}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}.muted{color:#6b7280}\
code{font:12px ui-monospace,monospace;background:#eef0f5;padding:1px 4px;border-radius:3px}.card{background:#fff;padding:12px 16px;box-shadow:0 1px 2px #0001;margin-bottom:12px}\
pre{background:#0d1117;color:#e6edf3;padding:12px;overflow:auto;font-size:12px}a{color:#0969da}\
.access{margin:6px 0 0;color:#6b7280}input,button{font:inherit;padding:4px 8px}";

fn page(title: &str, refresh: bool, body: &str) -> Response {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    } else {
        ""
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}<meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        t = esc(title)
    );
    let mut r = warp::reply::html(html).into_response();
    for (name, value) in [
        ("cache-control", "no-store"),
        // No scripts, no framing (the login form cannot be clickjacked), forms post here only.
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    r
}

/// The line under each page's title: who reads it, and signing in or out.
fn access_bar(signed: bool, next: &str) -> String {
    if signed {
        "<form class=\"access\" method=\"post\" action=\"/logout\">Signed in · <button type=\"submit\">Sign out</button></form>".to_string()
    } else {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        format!("<div class=\"access\"><a href=\"/login?{}\">Sign in</a> with the API token to see runner logs</div>", esc(&q))
    }
}

fn verdict_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "ok",
        "failed" | "error" | "timeout" => "bad",
        _ => "warn",
    }
}

/// A small inline SVG line of p95 values (oldest left), with a dashed mark before each value
/// in `shifts` (where a change point says a new level began).
pub fn sparkline(values: &[f64], shifts: &[usize]) -> String {
    if values.is_empty() {
        return "<span class=\"muted\">no runs yet</span>".into();
    }
    let (w, h) = (160.0, 32.0);
    let max = values.iter().cloned().fold(f64::MIN, f64::max).max(1e-9);
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (v / max) * (h - 4.0)
            )
        })
        .collect();
    let last = points.last().cloned().unwrap_or_default();
    let (lx, ly) = last.split_once(',').unwrap_or(("0", "0"));
    let marks: String = shifts
        .iter()
        .filter(|i| **i > 0 && **i < values.len())
        .map(|i| {
            let x = (*i as f64 - 0.5) * step;
            format!("<line class=\"shift\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{h}\" stroke=\"#bf8700\" stroke-dasharray=\"3 2\"><title>p95 shift begins</title></line>")
        })
        .collect();
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"p95 history\">{marks}<polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/><circle cx=\"{lx}\" cy=\"{ly}\" r=\"3\" fill=\"#0969da\"/></svg>",
        points.join(" ")
    )
}

async fn index(state: Arc<AppState>, signed: bool) -> Response {
    let mut b = String::from("<h1>perfsync</h1><div class=\"muted\">GitOps for k6 load tests · refreshes every 5 s</div>");
    b.push_str(&access_bar(signed, "/"));
    let secrets = known_secrets(&state);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let Some(pool) = &state.pool else {
        return page("perfsync", true, &b);
    };
    let sync = sqlx::query_as::<_, (String, String, Option<String>, Option<chrono::DateTime<chrono::Utc>>, Option<String>)>(
        "SELECT repository, branch, last_commit, last_synced_at, last_error FROM sync_state ORDER BY repository LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    b.push_str("<h2>Sync</h2><div class=\"card\">");
    match sync {
        Some((repo, branch, commit, at, err)) => {
            let _ = write!(
                b,
                "Repository <code>{}</code> branch <code>{}</code><br>Last synced commit <code>{}</code> at {}",
                esc(&repo),
                esc(&branch),
                esc(commit.as_deref().map_or("–", |c| &c[..c.len().min(12)])),
                at.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            );
            if let Some(e) = err {
                let _ = write!(
                    b,
                    "<br><span class=\"bad\">Last sync failed:</span> {}",
                    esc(&cap_line(&mask::mask(&e, &refs), MAX_LINE_CHARS))
                );
            }
        }
        None => b.push_str("Not synced yet."),
    }
    b.push_str("</div>");

    let catalog = state.scheduler.as_ref().and_then(|s| s.catalog());
    b.push_str("<h2>Tests</h2><table><tr><th>Test</th><th>State</th><th>Last verdict</th><th>p95</th><th>p95 history</th><th>Last run</th></tr>");
    // Runs where a p95 shift began, for every test at once: the page refreshes every 5 s.
    let shifted: std::collections::BTreeSet<(String, String)> =
        crate::record::regressions::p95_shift_runs(pool)
            .await
            .unwrap_or_default();
    if let Some(c) = &catalog {
        for t in &c.tests {
            let name = t.name.clone().unwrap_or_else(|| t.file.clone());
            let history: Vec<RunSummary> = results::recent(pool, Some(&name), 20)
                .await
                .unwrap_or_default();
            let state_cell = match &t.resolved {
                Some(rt) if rt.test.spec.suspend => {
                    "<span class=\"warn\">suspended</span>".to_string()
                }
                Some(_) => "<span class=\"ok\">valid</span>".to_string(),
                None => "<span class=\"bad\">invalid</span>".to_string(),
            };
            let last = history.first();
            let verdict = last.map_or("<span class=\"muted\">–</span>".to_string(), |s| {
                let flagged = s.comparison.as_ref().is_some_and(|c| c.regression)
                    || s.regression.as_ref().is_some_and(|r| r.regressed);
                let reg = if flagged {
                    " <span class=\"warn\">regression</span>".to_string()
                } else {
                    String::new()
                };
                format!(
                    "<span class=\"{}\">{}</span>{reg}",
                    verdict_class(s.status.as_str()),
                    s.status.as_str()
                )
            });
            let p95 = last
                .and_then(|s| s.p95_ms())
                .map_or("–".to_string(), |v| format!("{v:.1} ms"));
            let mut points: Vec<(&str, f64)> = history
                .iter()
                .filter_map(|s| s.p95_ms().map(|v| (s.run.id.as_str(), v)))
                .collect();
            points.reverse();
            let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
            let marks: Vec<usize> = points
                .iter()
                .enumerate()
                .filter(|(_, (id, _))| shifted.contains(&(name.clone(), id.to_string())))
                .map(|(i, _)| i)
                .collect();
            let run_link = last.map_or("–".to_string(), |s| {
                format!("<a href=\"/runs/{id}\">{id}</a>", id = esc(&s.run.id))
            });
            let _ = write!(b, "<tr><td><b>{}</b><br><span class=\"muted\">{}</span></td><td>{state_cell}</td><td>{verdict}</td><td>{p95}</td><td>{}</td><td>{run_link}</td></tr>", esc(&name), esc(&t.file), sparkline(&values, &marks));
        }
    }
    b.push_str("</table>");

    b.push_str("<h2>Active and queued runs</h2><table><tr><th>Run</th><th>Test</th><th>State</th><th>Since</th></tr>");
    let mut any = false;
    for r in runs::running(pool)
        .await
        .unwrap_or_default()
        .into_iter()
        .chain(runs::queued(pool).await.unwrap_or_default())
    {
        any = true;
        let since = r.started_at.unwrap_or(r.created_at).format("%H:%M:%S UTC");
        let _ = write!(b, "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td class=\"warn\">{}</td><td>{since}</td></tr>", esc(&r.test), esc(&r.status), id = esc(&r.id));
    }
    if !any {
        b.push_str("<tr><td colspan=\"4\" class=\"muted\">None</td></tr>");
    }
    b.push_str("</table>");
    page("perfsync", true, &b)
}

fn commit_link(repo: Option<&str>, commit: &str) -> String {
    let short = esc(&commit[..commit.len().min(12)]);
    match repo.map(|r| r.trim_end_matches(".git")) {
        Some(r) if r.starts_with("https://github.com/") || r.starts_with("https://gitlab.com/") => {
            format!(
                "<a href=\"{}/commit/{}\"><code>{short}</code></a>",
                esc(r),
                esc(commit)
            )
        }
        _ => format!("<code>{short}</code>"),
    }
}

async fn run_page(state: Arc<AppState>, id: String, signed: bool) -> Response {
    let Some(pool) = &state.pool else {
        return page("perfsync", false, "no database");
    };
    let Some(row) = runs::get(pool, &id).await.ok().flatten() else {
        let mut r = page(
            "unknown run",
            false,
            &format!(
                "<h1>No run <code>{}</code></h1><a href=\"/\">back</a>",
                esc(&id)
            ),
        );
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let summary = results::get(pool, &id).await.ok().flatten();
    let secrets = known_secrets(&state);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    // Free text (reasons, notes, names from the run's own output): masked, capped, escaped.
    let text = |s: &str| esc(&cap_line(&mask::mask(s, &refs), MAX_LINE_CHARS));
    let status = summary
        .as_ref()
        .map(|s| s.status.as_str().to_string())
        .unwrap_or(row.status.clone());
    let mut b = format!(
        "<a href=\"/\">← all tests</a><h1>Run {}</h1>{}<div class=\"card\">Test <b>{}</b> · revision <code>{}</code> · commit {} · trigger {}<br>State <span class=\"{}\">{}</span>{}</div>",
        esc(&row.id),
        access_bar(signed, &format!("/runs/{id}")),
        esc(&row.test),
        esc(crate::spec::revision::short(&row.revision)),
        row.commit.clone().or_else(|| summary.as_ref().and_then(|s| s.run.commit.clone())).as_deref().map_or("–".to_string(), |c| commit_link(state.repository_url.as_deref(), c)),
        esc(&row.trigger),
        verdict_class(&status),
        esc(&status),
        summary.as_ref().and_then(|s| s.reason.clone()).map_or(String::new(), |r| format!(" — {}", text(&r)))
    );
    if let Some(s) = &summary {
        b.push_str("<h2>Thresholds</h2><table><tr><th>Metric</th><th>Threshold</th><th>Actual</th><th>Verdict</th></tr>");
        for t in &s.thresholds {
            let actual = t.actual.map_or(t.note.clone().unwrap_or_default(), |a| {
                format!(
                    "{a:.3}{}",
                    if t.approximate { " (approximate)" } else { "" }
                )
            });
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"{}\">{}</td></tr>",
                text(&t.metric),
                text(&t.expression),
                text(&actual),
                if t.ok { "ok" } else { "bad" },
                if t.ok { "pass" } else { "fail" }
            );
        }
        b.push_str("</table><h2>Metrics</h2><table><tr><th>Metric</th><th>Values</th></tr>");
        for (name, m) in &s.metrics {
            let vals = m.value_labels(" ", 2);
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                text(name),
                text(&vals.join(" · "))
            );
        }
        b.push_str("</table>");
        if let Some(r) = &s.regression {
            let _ = write!(
                b,
                "<h2>Statistical gate</h2><div class=\"muted\">series {}{} · each metric against the last accepted runs of its series</div><table><tr><th>Metric</th><th>Verdict</th><th>Effect</th><th>p-value / score</th><th>Baseline runs</th></tr>",
                text(r.series.get(..12).unwrap_or(&r.series)),
                if r.new_series { " (new series)" } else { "" }
            );
            for (metric, g) in &r.metrics {
                let verdict = format!("{:?}", g.verdict).to_lowercase();
                let class = match verdict.as_str() {
                    "regressed" => "bad",
                    "improved" | "unchanged" => "ok",
                    _ => "muted",
                };
                let unit = match g.effect_unit {
                    crate::results::stats::EffectUnit::Percent => " %",
                    crate::results::stats::EffectUnit::Points => " points",
                };
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td class=\"{class}\">{verdict}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    text(metric),
                    g.effect.map_or("–".into(), |e| format!("{e:+.1}{unit}")),
                    g.p_value
                        .map(|p| format!("p {p:.1e}"))
                        .or(g.score.map(|z| format!("score {z:.2}")))
                        .unwrap_or_else(|| "–".into()),
                    g.baseline_runs
                        .iter()
                        .map(|id| format!("<a href=\"/runs/{id}\">{id}</a>", id = esc(id)))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            b.push_str("</table>");
        }
        if let Some(c) = &s.comparison {
            let fmtp = |v: Option<f64>, unit: &str| {
                v.map_or("–".to_string(), |x| format!("{x:+.1}{unit}"))
            };
            let _ = write!(
                b,
                "<h2>Comparison</h2><div class=\"card\">Against <a href=\"/runs/{id}\">{id}</a>: p95 {}, error rate {}, throughput {} — {}</div>",
                fmtp(c.p95_change_percent, " %"),
                fmtp(c.error_rate_change_points, " points"),
                fmtp(c.throughput_change_percent, " %"),
                if c.regression { format!("<span class=\"warn\">regression: {}</span>", text(&c.reasons.join("; "))) } else { "<span class=\"ok\">no regression</span>".into() },
                id = esc(&c.baseline_run)
            );
        }
    }
    // Logs only for a reader signed in with the API token, whatever `server.page` says.
    if signed {
        for log in runner_logs(&state, &id, &refs) {
            let _ = write!(
                b,
                "<h2>Runner {} log (last lines)</h2><pre class=\"log\">{}</pre>",
                log.index,
                esc(&log.lines.join("\n"))
            );
        }
    }
    page(&format!("perfsync run {id}"), summary.is_none(), &b)
}

fn login_form(next: &str, message: Option<&str>) -> String {
    format!(
        "<h1>perfsync</h1><div class=\"card\"><form method=\"post\" action=\"/login\">{}<input type=\"hidden\" name=\"next\" value=\"{}\"><label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label> <button type=\"submit\">Sign in</button></form></div>",
        message.map_or(String::new(), |m| format!("<p class=\"bad\">{}</p>", esc(m))),
        esc(next)
    )
}

fn login_page(state: &AppState, next: &str, message: Option<&str>) -> Response {
    let message = match (&state.api_token, message) {
        (None, _) => {
            Some("No API token is configured (server.apiToken): signing in is not possible.")
        }
        (_, m) => m,
    };
    page("perfsync: sign in", false, &login_form(next, message))
}

fn login_get(state: Arc<AppState>, q: HashMap<String, String>) -> Response {
    login_page(&state, &safe_next(q.get("next").map(String::as_str)), None)
}

/// `POST /login` (`token=…&next=…`, form-encoded): the session cookie and a redirect to
/// `next`, or the form again with 401.
fn login_post(state: Arc<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let next = safe_next(form.get("next").map(String::as_str));
    if !same_origin(&headers) {
        let mut r = page(
            "perfsync: sign in",
            false,
            "<h1>Refused</h1><p>A sign-in form posted from another site is refused.</p>",
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let given = form.get("token").map(String::as_str).unwrap_or("");
    let ok = state
        .api_token
        .as_deref()
        .is_some_and(|expected| super::hooks::token_eq(given, expected));
    let value = ok
        .then(|| session_value(&state, chrono::Utc::now().timestamp() + SESSION_SECONDS))
        .flatten();
    let Some(value) = value else {
        tracing::info!("status page sign-in refused");
        let mut r = login_page(&state, &next, Some("That is not the API token."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let secure = if over_tls(&state, &headers) {
        "; Secure"
    } else {
        ""
    };
    with_header(
        redirect(&next),
        SET_COOKIE,
        &format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"),
    )
}

/// `POST /logout`: the cookie cleared.
fn logout(state: Arc<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        let mut r = page("perfsync", false, "<h1>Refused</h1>");
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let secure = if over_tls(&state, &headers) {
        "; Secure"
    } else {
        ""
    };
    with_header(
        redirect("/login"),
        SET_COOKIE,
        &format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    )
}

/// A page for a reader: `Ok(signed in)` when it may be shown, the way to `/login` otherwise.
fn gate(state: &AppState, headers: &HeaderMap, path: &str) -> Result<bool, Response> {
    let signed = signed_in(state, headers);
    match state.page.access {
        PageAccess::Token if !signed => Err(to_login(path)),
        _ => Ok(signed),
    }
}

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let index_r = warp::get()
        .and(warp::path::end())
        .and(warp::header::headers_cloned())
        .and(with_state.clone())
        .then(|h: HeaderMap, s: Arc<AppState>| async move {
            match gate(&s, &h, "/") {
                Ok(signed) => index(s, signed).await,
                Err(r) => r,
            }
        });
    let run_r = warp::get()
        .and(warp::path!("runs" / String))
        .and(warp::header::headers_cloned())
        .and(with_state.clone())
        .then(|id: String, h: HeaderMap, s: Arc<AppState>| async move {
            match gate(&s, &h, &format!("/runs/{id}")) {
                Ok(signed) => run_page(s, id, signed).await,
                Err(r) => r,
            }
        });
    let login_r = warp::get()
        .and(warp::path!("login"))
        .and(with_state.clone())
        .and(warp::query::<HashMap<String, String>>())
        .map(login_get);
    let login_post_r = warp::post()
        .and(warp::path!("login"))
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(4096))
        .and(warp::body::bytes())
        .map(login_post);
    let logout_r = warp::post()
        .and(warp::path!("logout"))
        .and(with_state)
        .and(warp::header::headers_cloned())
        .map(logout);
    index_r
        .or(run_r)
        .unify()
        .or(login_r)
        .unify()
        .or(login_post_r)
        .unify()
        .or(logout_r)
        .unify()
}
