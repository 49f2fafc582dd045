//! `perfsync run TEST [--wait]`: asks a running daemon (its API) to run a test now and, with
//! `--wait`, follows the run to its end with the API's long-poll and exits by its verdict: a
//! gate for CD pipelines (an Argo CD PostSync hook, a CI job step).
//!
//! Exit codes: 0 succeeded; 1 failed, error, timeout or aborted (a regression too with
//! `--fail-on-regression`, and a run that did not end within `--timeout`); 2 usage, a wrong
//! token, an unknown test, or a daemon that cannot be reached.

use super::{Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub test: String,
    /// Follow the run to its end and exit by its verdict.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait for the verdict.
    #[arg(long, default_value = "30m")]
    pub timeout: String,
    /// The daemon's base URL.
    #[arg(long, env = "PERFSYNC_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The API token (server.apiToken). Prefer PERFSYNC_API_TOKEN or --token-file: a command
    /// line is readable by every user of the host.
    #[arg(long, env = "PERFSYNC_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Exit 1 when the run is flagged as a regression, even if it succeeded.
    #[arg(long)]
    pub fail_on_regression: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How long one long-poll asks the daemon to hold the answer.
const POLL: &str = "30s";

#[derive(Debug, thiserror::Error)]
enum GateError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach perfsync at {server}: {why}")]
    Unreachable { server: String, why: String },
    #[error("perfsync answered {status}: {message}")]
    Refused { status: u16, message: String },
}

pub fn run(args: Args) -> i32 {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(gate(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn token(args: &Args) -> Result<String, GateError> {
    let t = match (&args.token, &args.token_file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| GateError::Usage(format!("--token-file {}: {e}", path.display())))?,
        (Some(t), None) => t.clone(),
        (None, None) => {
            return Err(GateError::Usage(
                "no API token: pass --token-file FILE, set PERFSYNC_API_TOKEN, or --token".into(),
            ))
        }
    };
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(GateError::Usage("the API token is empty".into()));
    }
    Ok(t)
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, GateError> {
        let url = format!("{}/api/v1{path}", self.base);
        let resp = self
            .client
            .request(method, &url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| GateError::Unreachable {
                server: self.base.clone(),
                why: e.without_url().to_string(),
            })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string();
            return Err(GateError::Refused { status, message });
        }
        Ok(body)
    }
}

async fn gate(args: &Args) -> Result<i32, GateError> {
    let timeout = crate::spec::duration::parse_duration(&args.timeout)
        .map_err(|e| GateError::Usage(format!("--timeout {}: {e}", args.timeout)))?;
    let base = args.server.trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(GateError::Usage(format!(
            "--server {base}: give an http:// or https:// URL"
        )));
    }
    let api = Api {
        client: reqwest::Client::builder()
            // A long-poll holds its answer up to POLL; more than that is a dead connection.
            .timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| GateError::Usage(e.to_string()))?,
        base,
        token: token(args)?,
    };
    let test = &args.test;
    let queued = api
        .call(reqwest::Method::POST, &format!("/tests/{}/runs", seg(test)))
        .await?;
    let Some(run) = queued["run"].as_str().map(str::to_string) else {
        return Err(GateError::Refused {
            status: 202,
            message: "the answer names no run".into(),
        });
    };
    if !args.wait {
        match args.format {
            Format::Json => println!("{queued}"),
            _ => println!("queued run {run} of test {test}"),
        }
        return Ok(EXIT_OK);
    }
    if args.format != Format::Json {
        eprintln!("queued run {run} of test {test}; waiting for its verdict");
    }
    let deadline = Instant::now() + timeout;
    let answer = loop {
        let r = api
            .call(
                reqwest::Method::GET,
                &format!("/runs/{}?wait={POLL}", seg(&run)),
            )
            .await?;
        if r["ended"] == Value::Bool(true) {
            break Some(r);
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    let Some(r) = answer else {
        eprintln!("run {run} did not end within {}", args.timeout);
        return Ok(EXIT_INVALID);
    };
    let status = r["status"].as_str().unwrap_or("unknown");
    let regression = r["summary"]["comparison"]["regression"] == Value::Bool(true);
    match args.format {
        Format::Json => println!("{r}"),
        _ => println!("{}", describe(&r)),
    }
    Ok(
        if status == "succeeded" && !(regression && args.fail_on_regression) {
            EXIT_OK
        } else {
            EXIT_INVALID
        },
    )
}

/// A path segment: test names and run ids are DNS labels, but a typo must not change the path.
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One line per fact, as a person reads it in a pipeline log.
fn describe(r: &Value) -> String {
    let s = &r["summary"];
    let mut out = format!(
        "run {} of test {}: {}",
        r["id"].as_str().unwrap_or("?"),
        r["test"].as_str().unwrap_or("?"),
        r["status"].as_str().unwrap_or("unknown")
    );
    if let Some(reason) = s["reason"].as_str().or(r["reason"].as_str()) {
        out.push_str(&format!("\n  reason: {reason}"));
    }
    let p95 = s["metrics"]["http_req_duration"]["values"]["p(95)"].as_f64();
    if let Some(p) = p95 {
        out.push_str(&format!("\n  p95: {p:.1} ms"));
    }
    let c = &s["comparison"];
    if let Some(base) = c["baselineRun"].as_str() {
        let change = c["p95ChangePercent"]
            .as_f64()
            .map(|p| format!("p95 {p:+.1}%"))
            .unwrap_or_else(|| "p95 not comparable".into());
        let flag = if c["regression"] == Value::Bool(true) {
            " (regression)"
        } else {
            ""
        };
        out.push_str(&format!("\n  against {base}: {change}{flag}"));
    }
    for t in s["thresholds"].as_array().into_iter().flatten() {
        if t["ok"] == Value::Bool(false) {
            out.push_str(&format!(
                "\n  threshold failed: {} {}",
                t["metric"].as_str().unwrap_or("?"),
                t["expression"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}
