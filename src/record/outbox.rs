//! The delivery outbox: commit statuses, merge-request comments and notifications, owed to
//! forges and sinks, kept in PostgreSQL (`deliveries`) and sent by one long-lived task.
//!
//! **Planning** happens when a run starts ([`Deliveries::run_started`]: a pending status per
//! forge) and right after its result is recorded ([`Deliveries::run_ended`]: the verdict
//! status, a comment update, one notification per sink whose filters match). Each is one
//! transaction that also writes the run event's `delivery_plans` row, so a plan is made once;
//! the unique key `(run, target, kind, event)` makes each row exist once. A crash between
//! recording a result and planning is closed by [`Deliveries::catch_up`], which plans every
//! result recorded since the outbox exists and not planned yet. Planning never touches the
//! network, so a forge or a sink never delays or blocks recording.
//!
//! **Sending** ([`Deliveries::run`]): due rows are claimed (`claimed_until`, `FOR UPDATE SKIP
//! LOCKED`, so replicas never send one row twice at once); rows of one target sharing an
//! `ordering_key` (a status context on a commit, a commit's comment) go out in order, one at a
//! time. A 2xx marks the row `sent`; a network error, 408, 429 or 5xx (and the forges'
//! documented rate-limit 403s) schedules another attempt with exponential backoff, honouring
//! `Retry-After`; any other answer, or `delivery.maxAttempts` failures, marks it `failed`
//! with the last status and error (never a secret). A restart resumes whatever is pending. A
//! row is sent until one attempt is answered 2xx, so a crash in the instant between a 2xx and
//! its mark sends it again; the generic webhook's `X-Perfsync-Delivery` id lets receivers
//! drop that repeat, and a comment is found again by its marker instead of posted twice.

use super::forge::{self, Forge, ForgeError};
use super::notify::{self, NotifyError, Sink};
use super::RecordError;
use crate::config::notifications::DeliveryConfig;
use crate::config::{Config, SecretError};
use crate::record::runs;
use crate::results::summary::{EndState, RunSummary};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Sink(#[from] NotifyError),
    #[error("delivery HTTP client: {0}")]
    Client(String),
}

/// What happened to a run, as the outbox keeps it (`deliveries.payload`) and every target
/// renders it: the same facts for a commit status, a comment row and a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub run: String,
    pub test: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The end state; `None` while the run runs (the start event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EndState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_change_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_change_points: Option<f64>,
    #[serde(default)]
    pub regression: bool,
    /// Succeeded after the test's previous verdict was failed, error or timeout.
    #[serde(default)]
    pub recovered: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The run's page on perfsync (`server.publicUrl`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The sink filters (`on:`) the event matched; notifications only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<String>,
}

impl RunEvent {
    /// `succeeded`, `failed`, … or `running`.
    pub fn verdict(&self) -> &'static str {
        self.status.map_or("running", EndState::as_str)
    }

    /// `312 ms`, or `-` without a figure.
    pub fn p95_text(&self) -> String {
        self.p95_ms.map_or("-".into(), ms)
    }

    /// `+12.3% vs 278 ms (run x)`: the comparison, or `no baseline`.
    pub fn comparison_text(&self) -> String {
        match (self.p95_change_percent, self.baseline_p95_ms) {
            (Some(c), Some(b)) => format!("{c:+.1}% vs {}", ms(b)),
            (Some(c), None) => format!("{c:+.1}% vs baseline"),
            _ if self.baseline_run.is_some() => "baseline without p95".into(),
            _ => "no baseline".into(),
        }
    }

    /// The commit's first 7 characters.
    pub fn short_commit(&self) -> Option<&str> {
        self.commit.as_deref().map(|c| c.get(..7).unwrap_or(c))
    }

    /// One line: `checkout failed: p95 312 ms, +12.3% vs 278 ms, regression`.
    pub fn summary_line(&self) -> String {
        let mut s = format!("{} {}", self.test, self.verdict());
        if self.status.is_some() {
            s.push_str(&format!(": p95 {}", self.p95_text()));
            if self.p95_ms.is_some() || self.baseline_run.is_some() {
                s.push_str(&format!(", {}", self.comparison_text()));
            }
            if self.regression {
                s.push_str(", regression");
            }
            if self.recovered {
                s.push_str(", recovered");
            }
        }
        s
    }
}

/// Milliseconds as people read them: `312 ms`, `1.25 s`, `0.41 ms`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Why an HTTP exchange with a forge or a sink did not succeed, and whether to try again.
/// Its message never holds a secret: URLs are left out, bodies are cut and masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HttpFailure {
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub retryable: bool,
    pub message: String,
}

impl HttpFailure {
    pub fn permanent(status: Option<u16>, message: impl Into<String>) -> HttpFailure {
        HttpFailure {
            status,
            retry_after: None,
            retryable: false,
            message: message.into(),
        }
    }
}

/// How much of an error answer's body is kept in the outbox and the log.
const BODY_SNIPPET: usize = 300;
/// The largest answer body read.
const MAX_BODY: usize = 1024 * 1024;

/// `Retry-After` (seconds or an HTTP date), else GitHub's documented `x-ratelimit-reset` when
/// `x-ratelimit-remaining` is 0; capped at an hour.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let cap = |d: Duration| d.min(Duration::from_secs(3600));
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(cap(Duration::from_secs(secs)));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(v) {
            let d = (at.with_timezone(&Utc) - now).to_std().unwrap_or_default();
            return Some(cap(d));
        }
    }
    if text("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = text("x-ratelimit-reset").and_then(|r| r.parse::<i64>().ok()) {
            let d = (reset - now.timestamp()).max(1) as u64;
            return Some(cap(Duration::from_secs(d)));
        }
    }
    None
}

/// Whether an answer is worth another attempt: 408, 425, 429, 5xx, and a 403 that is a rate
/// limit (GitHub answers its secondary rate limits 403 with `Retry-After`, and its primary
/// one with `x-ratelimit-remaining: 0`).
pub fn retryable(status: u16, rate_limited: bool) -> bool {
    matches!(status, 408 | 425 | 429) || status >= 500 || (status == 403 && rate_limited)
}

/// An error's message and its sources, without the URL (a sink's URL is its credential).
fn network_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Sends a request and reads the answer: the 2xx body, or why not (classified). `secrets`
/// are masked out of any answer text kept.
pub async fn execute(
    req: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<(u16, String), HttpFailure> {
    let resp = req.send().await.map_err(|e| HttpFailure {
        status: None,
        retry_after: None,
        retryable: true,
        message: format!("network: {}", network_message(e)),
    })?;
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers(), Utc::now());
    let mut body = Vec::new();
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if body.len() > MAX_BODY {
                    body.truncate(MAX_BODY);
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if (200..300).contains(&status) => {
                return Err(HttpFailure {
                    status: Some(status),
                    retry_after: None,
                    retryable: true,
                    message: format!("reading the answer: {}", network_message(e)),
                })
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&body).to_string();
    if (200..300).contains(&status) {
        return Ok((status, text));
    }
    let snippet: String = text.chars().take(BODY_SNIPPET).collect();
    let snippet = crate::results::mask::mask(snippet.trim(), secrets);
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let message = if snippet.is_empty() {
        format!("HTTP {status} {reason}")
    } else {
        format!("HTTP {status} {reason}: {snippet}")
    };
    Err(HttpFailure {
        status: Some(status),
        retry_after: after,
        retryable: retryable(status, after.is_some()),
        message,
    })
}

/// How a delivery came out when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Sent,
    /// Nothing to send it to (a commit without a merge request).
    Skipped(String),
}

/// A target's test labels, from the scheduler's catalog.
pub type LabelSource = Box<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// The configured forges and sinks, the outbox's database, and the sending loop.
pub struct Deliveries {
    pool: PgPool,
    forges: Vec<Forge>,
    sinks: Vec<Sink>,
    retry: DeliveryConfig,
    public_url: Option<String>,
    client: reqwest::Client,
    wake: Notify,
    labels: OnceLock<LabelSource>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries")
            .field(
                "forges",
                &self.forges.iter().map(|x| &x.name).collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self.sinks.iter().map(|x| &x.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A claimed row.
#[derive(Debug, Clone)]
struct Claimed {
    id: i64,
    run_id: String,
    target: String,
    kind: String,
    event: String,
    payload: serde_json::Value,
    attempts: i32,
}

/// Claimed rows per pass.
const BATCH: i64 = 32;
/// How often results recorded without a plan are looked for.
const CATCH_UP_EVERY: Duration = Duration::from_secs(30);
/// The longest sleep between two looks at the outbox (another replica may have enqueued).
const IDLE_POLL: Duration = Duration::from_secs(2);

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Deliveries {
    /// The outbox for `forges`, `notifications` and `delivery` of the config; `None` when
    /// neither forges nor sinks are configured. Every secret is resolved now, so a missing
    /// one stops the daemon at start, named by its key.
    pub fn from_config(config: &Config, pool: PgPool) -> Result<Option<Deliveries>, OutboxError> {
        if config.forges.is_empty() && config.notifications.is_empty() {
            return Ok(None);
        }
        let forges = config
            .forges
            .iter()
            .enumerate()
            .map(|(i, f)| Forge::from_config(f, i))
            .collect::<Result<Vec<_>, _>>()?;
        let sinks = config
            .notifications
            .iter()
            .enumerate()
            .map(|(i, s)| Sink::from_config(s, i))
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(config.delivery.request_timeout.as_duration())
            .user_agent(concat!("perfsync/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry a signed payload or a token elsewhere: not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OutboxError::Client(network_message(e)))?;
        Ok(Some(Deliveries {
            pool,
            forges,
            sinks,
            retry: config.delivery.clone(),
            public_url: config
                .server
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            client,
            wake: Notify::new(),
            labels: OnceLock::new(),
        }))
    }

    /// Where test labels come from (the scheduler's catalog); set once.
    pub fn set_labels(
        &self,
        f: impl Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync + 'static,
    ) {
        let _ = self.labels.set(Box::new(f));
    }

    fn labels_of(&self, test: &str) -> Option<BTreeMap<String, String>> {
        self.labels.get().and_then(|f| f(test))
    }

    fn run_url(&self, run: &str) -> Option<String> {
        self.public_url.as_ref().map(|u| format!("{u}/runs/{run}"))
    }

    /// How long a claimed row is left to its sender: a comment takes a few requests.
    fn lease(&self) -> Duration {
        self.retry.request_timeout.as_duration() * 4 + Duration::from_secs(5)
    }

    /// A run started: a pending status per forge on its commit. Never fails the caller; a
    /// database error is logged and the catch-up pass plans it later.
    pub async fn run_started(&self, run_id: &str) {
        match self.plan_started(run_id).await {
            Ok(n) if n > 0 => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) => {
                warn!(run = %run_id, error = %e, "could not plan the start's deliveries; the catch-up pass will")
            }
        }
    }

    /// A run's result was recorded: its statuses, comments and notifications. Never fails
    /// the caller (see [`Deliveries::run_started`]).
    pub async fn run_ended(&self, summary: &RunSummary) {
        match self.plan_ended(summary).await {
            Ok(n) if n > 0 => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) => {
                warn!(run = %summary.run.id, error = %e, "could not plan the result's deliveries; the catch-up pass will")
            }
        }
    }

    async fn lock_run(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        run: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("perfsync-deliveries/{run}"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records that the run's `event` is planned (with `details`); false when it was already.
    async fn plan(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        run: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        let planned = sqlx::query(
            "INSERT INTO delivery_plans (run_id, event, details) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(run)
        .bind(event)
        .bind(details)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(planned > 0)
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        run: &str,
        target: &str,
        kind: &str,
        event: &str,
        ordering_key: &str,
        payload: &RunEvent,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "INSERT INTO deliveries (run_id, target, kind, event, ordering_key, payload)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, target, kind, event) DO NOTHING",
        )
        .bind(run)
        .bind(target)
        .bind(kind)
        .bind(event)
        .bind(ordering_key)
        .bind(serde_json::to_value(payload).unwrap_or_default())
        .execute(&mut **tx)
        .await?
        .rows_affected())
    }

    /// Plans the start of a run; returns how many deliveries it enqueued.
    pub async fn plan_started(&self, run_id: &str) -> Result<u64, OutboxError> {
        let Some(row) = runs::get(&self.pool, run_id).await? else {
            return Ok(0);
        };
        let labels = self.labels_of(&row.test);
        let mut tx = self.pool.begin().await?;
        Self::lock_run(&mut tx, run_id).await?;
        // A run whose end is planned already gets nothing for its start: its verdict is out.
        let ended: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM delivery_plans WHERE run_id = $1 AND event = 'ended')",
        )
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
        if ended {
            return Ok(0);
        }
        if !Self::plan(
            &mut tx,
            run_id,
            "started",
            serde_json::json!({ "labels": labels }),
        )
        .await?
        {
            return Ok(0);
        }
        let event = RunEvent {
            run: row.id.clone(),
            test: row.test.clone(),
            revision: row.revision.clone(),
            commit: row.commit.clone(),
            trigger: row.trigger.clone(),
            author: row.author.clone(),
            status: None,
            reason: None,
            start: row.started_at.map(|t| t.to_rfc3339()),
            end: None,
            p95_ms: None,
            error_rate: None,
            baseline_run: None,
            baseline_p95_ms: None,
            p95_change_percent: None,
            error_rate_change_points: None,
            regression: false,
            recovered: false,
            labels: labels.unwrap_or_default(),
            url: self.run_url(&row.id),
            matched: Vec::new(),
        };
        let mut n = 0;
        if let Some(sha) = row.commit.as_deref().filter(|c| is_sha(c)) {
            for f in self.forges.iter().filter(|f| f.statuses) {
                let key = format!("status/{sha}/{}", f.context(&row.test));
                n += Self::insert(
                    &mut tx,
                    run_id,
                    &f.target(),
                    "status",
                    "started",
                    &key,
                    &event,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Plans the end of a run; returns how many deliveries it enqueued.
    pub async fn plan_ended(&self, s: &RunSummary) -> Result<u64, OutboxError> {
        let run_id = s.run.id.as_str();
        let mut tx = self.pool.begin().await?;
        Self::lock_run(&mut tx, run_id).await?;
        let started: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT details FROM delivery_plans WHERE run_id = $1 AND event = 'started'",
        )
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
        let labels: BTreeMap<String, String> = started
            .and_then(|d| {
                serde_json::from_value::<Option<BTreeMap<String, String>>>(d["labels"].clone()).ok()
            })
            .flatten()
            .or_else(|| self.labels_of(&s.run.test))
            .unwrap_or_default();
        if !Self::plan(
            &mut tx,
            run_id,
            "ended",
            serde_json::json!({ "labels": labels }),
        )
        .await?
        {
            return Ok(0);
        }
        let end = DateTime::parse_from_rfc3339(&s.run.end)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        // The test's previous verdict (aborted runs do not count): `recovered` is a success
        // after a failure.
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT status FROM test_results WHERE test_id = $1 AND run_id <> $2 AND end_time <= $3 AND status <> 'aborted'
             ORDER BY end_time DESC LIMIT 1",
        )
        .bind(&s.run.test)
        .bind(run_id)
        .bind(end)
        .fetch_optional(&mut *tx)
        .await?;
        let recovered = s.status == EndState::Succeeded
            && previous
                .as_deref()
                .is_some_and(|p| matches!(p, "failed" | "error" | "timeout"));
        let comparison = s.comparison.as_ref();
        let baseline_p95_ms: Option<f64> = match comparison {
            Some(c) => sqlx::query_scalar::<_, Option<f64>>(
                "SELECT (summary->'metrics'->'http_req_duration'->'values'->>'p(95)')::float8 FROM test_results WHERE run_id = $1",
            )
            .bind(&c.baseline_run)
            .fetch_optional(&mut *tx)
            .await?
            .flatten(),
            None => None,
        };
        let event = RunEvent {
            run: s.run.id.clone(),
            test: s.run.test.clone(),
            revision: s.run.revision.clone(),
            commit: s.run.commit.clone(),
            trigger: serde_json::to_value(s.run.trigger)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            author: s.run.author.clone(),
            status: Some(s.status),
            reason: s.reason.clone(),
            start: Some(s.run.start.clone()),
            end: Some(s.run.end.clone()),
            p95_ms: s.p95_ms(),
            error_rate: s.error_rate(),
            baseline_run: comparison.map(|c| c.baseline_run.clone()),
            baseline_p95_ms,
            p95_change_percent: comparison.and_then(|c| c.p95_change_percent),
            error_rate_change_points: comparison.and_then(|c| c.error_rate_change_points),
            regression: comparison.is_some_and(|c| c.regression)
                || s.regression.as_ref().is_some_and(|r| r.regressed),
            recovered,
            labels,
            url: self.run_url(run_id),
            matched: Vec::new(),
        };
        let mut n = 0;
        if let Some(sha) = s.run.commit.as_deref().filter(|c| is_sha(c)) {
            for f in &self.forges {
                let target = f.target();
                if f.statuses {
                    let key = format!("status/{sha}/{}", f.context(&s.run.test));
                    n += Self::insert(&mut tx, run_id, &target, "status", "ended", &key, &event)
                        .await?;
                    // The start's status, if still unsent and not being sent, is pointless now.
                    sqlx::query(
                        "UPDATE deliveries SET state = 'superseded', done_at = now()
                         WHERE run_id = $1 AND target = $2 AND kind = 'status' AND event = 'started'
                           AND state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())",
                    )
                    .bind(run_id)
                    .bind(&target)
                    .execute(&mut *tx)
                    .await?;
                }
                if f.comment {
                    let key = format!("comment/{sha}");
                    n += Self::insert(&mut tx, run_id, &target, "comment", "ended", &key, &event)
                        .await?;
                }
            }
        }
        for sink in &self.sinks {
            let matched = notify::filter::matched(&sink.on, sink.tests.as_ref(), &event);
            if matched.is_empty() {
                continue;
            }
            let ev = RunEvent {
                matched: matched.iter().map(|m| m.as_str().to_string()).collect(),
                ..event.clone()
            };
            let key = format!("run/{run_id}");
            n += Self::insert(
                &mut tx,
                run_id,
                &sink.target(),
                "notification",
                "ended",
                &key,
                &ev,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Since when results are planned by the catch-up pass: when the outbox's migration was
    /// applied (results recorded before it owe nothing), and never more than a week back.
    async fn since(&self) -> DateTime<Utc> {
        let week = Utc::now() - chrono::Duration::days(7);
        let installed: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT installed_on FROM _sqlx_migrations WHERE version = 3")
                .fetch_optional(&self.pool)
                .await
                .ok()
                .flatten();
        installed.map_or(week, |t| t.max(week))
    }

    /// Plans what a crash (or a database outage) left unplanned: results recorded without
    /// an `ended` plan, running runs without a `started` one. Returns how many it planned.
    pub async fn catch_up(&self) -> Result<usize, OutboxError> {
        let since = self.since().await;
        let mut done = 0;
        let ended: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT r.summary FROM test_results r
             WHERE r.recorded_at >= $1
               AND NOT EXISTS (SELECT 1 FROM delivery_plans p WHERE p.run_id = r.run_id AND p.event = 'ended')
             ORDER BY r.recorded_at LIMIT 100",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        for v in ended {
            let Ok(s) = serde_json::from_value::<RunSummary>(v) else {
                continue;
            };
            if self.plan_ended(&s).await? > 0 {
                info!(run = %s.run.id, "deliveries planned for a result recorded without them");
            }
            done += 1;
        }
        let started: Vec<String> = sqlx::query_scalar(
            "SELECT t.id FROM test_runs t
             WHERE t.status = 'running' AND t.started_at >= $1
               AND NOT EXISTS (SELECT 1 FROM delivery_plans p WHERE p.run_id = t.id)
             ORDER BY t.started_at LIMIT 100",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        for id in started {
            self.plan_started(&id).await?;
            done += 1;
        }
        if done > 0 {
            self.wake.notify_one();
        }
        Ok(done)
    }

    /// The delivery task: catches up, then sends due rows until shutdown. Errors are logged
    /// and retried; it returns only when `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        info!(
            forges = self.forges.len(),
            sinks = self.sinks.len(),
            "delivering commit statuses and notifications"
        );
        let mut last_catch_up: Option<tokio::time::Instant> = None;
        loop {
            if last_catch_up.is_none_or(|t| t.elapsed() >= CATCH_UP_EVERY) {
                if let Err(e) = self.catch_up().await {
                    warn!(error = %e, "delivery catch-up failed; will retry");
                }
                last_catch_up = Some(tokio::time::Instant::now());
            }
            let pass = tokio::select! {
                r = self.pass() => r,
                _ = shutdown.changed() => break,
            };
            let claimed = match pass {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "delivery pass failed; will retry");
                    0
                }
            };
            if claimed > 0 {
                continue;
            }
            let wait = self.next_due().await.unwrap_or(IDLE_POLL).min(IDLE_POLL);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// How long until the next pending row is due.
    async fn next_due(&self) -> Option<Duration> {
        let at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(greatest(next_at, coalesce(claimed_until, next_at))) FROM deliveries WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .ok()
        .flatten();
        at.map(|t| (t - Utc::now()).to_std().unwrap_or_default())
    }

    /// Claims due rows and sends them: targets side by side, each target's rows in order.
    /// Returns how many rows it claimed.
    pub async fn pass(&self) -> Result<usize, OutboxError> {
        let lease = self.lease().as_millis() as i64;
        let rows = sqlx::query(
            "UPDATE deliveries SET claimed_until = now() + make_interval(secs => $1::float8 / 1000)
             WHERE id IN (
               SELECT d.id FROM deliveries d
               WHERE d.state = 'pending' AND d.next_at <= now()
                 AND (d.claimed_until IS NULL OR d.claimed_until < now())
                 AND NOT EXISTS (SELECT 1 FROM deliveries o
                                 WHERE o.target = d.target AND o.ordering_key = d.ordering_key
                                   AND o.state = 'pending' AND o.id < d.id)
               ORDER BY d.id LIMIT $2
               FOR UPDATE SKIP LOCKED)
             RETURNING id, run_id, target, kind, event, payload, attempts",
        )
        .bind(lease)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    target: r.try_get("target")?,
                    kind: r.try_get("kind")?,
                    event: r.try_get("event")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        claimed.sort_by_key(|c| c.id);
        let n = claimed.len();
        let mut by_target: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        for c in claimed {
            by_target.entry(c.target.clone()).or_default().push(c);
        }
        let work = by_target.into_iter().map(|(target, rows)| {
            let span = tracing::info_span!("delivery", target = %target);
            async move {
                for row in rows {
                    self.deliver_and_mark(row).await;
                }
            }
            .instrument(span)
        });
        futures::future::join_all(work).await;
        Ok(n)
    }

    async fn deliver_and_mark(&self, row: Claimed) {
        let outcome = self.deliver(&row).await;
        let attempts = row.attempts + 1;
        let res = match outcome {
            Ok(Done::Sent) => {
                info!(run = %row.run_id, kind = %row.kind, event = %row.event, attempts, "delivered");
                sqlx::query(
                    "UPDATE deliveries SET state = 'sent', attempts = $2, done_at = now(), claimed_until = NULL, last_error = NULL WHERE id = $1",
                )
                .bind(row.id)
                .bind(attempts)
                .execute(&self.pool)
                .await
            }
            Ok(Done::Skipped(why)) => {
                info!(run = %row.run_id, kind = %row.kind, reason = %why, "nothing to deliver to");
                sqlx::query(
                    "UPDATE deliveries SET state = 'skipped', attempts = $2, done_at = now(), claimed_until = NULL, last_error = $3 WHERE id = $1",
                )
                .bind(row.id)
                .bind(attempts)
                .bind(&why)
                .execute(&self.pool)
                .await
            }
            Err(f) if f.retryable && (attempts as u32) < self.retry.max_attempts => {
                let wait = backoff(&self.retry, attempts as u32, f.retry_after);
                warn!(run = %row.run_id, kind = %row.kind, event = %row.event, attempts, status = ?f.status, error = %f.message, retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
                sqlx::query(
                    "UPDATE deliveries SET attempts = $2, next_at = now() + make_interval(secs => $3::float8 / 1000), claimed_until = NULL, last_status = $4, last_error = $5 WHERE id = $1",
                )
                .bind(row.id)
                .bind(attempts)
                .bind(wait.as_millis() as i64)
                .bind(f.status.map(i32::from))
                .bind(&f.message)
                .execute(&self.pool)
                .await
            }
            Err(f) => {
                let message = if f.retryable {
                    format!("gave up after {attempts} attempts: {}", f.message)
                } else {
                    f.message.clone()
                };
                warn!(run = %row.run_id, kind = %row.kind, event = %row.event, attempts, status = ?f.status, error = %message, "delivery failed for good");
                sqlx::query(
                    "UPDATE deliveries SET state = 'failed', attempts = $2, done_at = now(), claimed_until = NULL, last_status = $3, last_error = $4 WHERE id = $1",
                )
                .bind(row.id)
                .bind(attempts)
                .bind(f.status.map(i32::from))
                .bind(&message)
                .execute(&self.pool)
                .await
            }
        };
        if let Err(e) = res {
            // The row stays claimed until its lease ends, then is sent again.
            warn!(run = %row.run_id, error = %e, "could not mark a delivery; it is sent again after its lease");
        }
    }

    async fn deliver(&self, row: &Claimed) -> Result<Done, HttpFailure> {
        let event: RunEvent = serde_json::from_value(row.payload.clone())
            .map_err(|e| HttpFailure::permanent(None, format!("unreadable outbox payload: {e}")))?;
        let gone = || {
            HttpFailure::permanent(
                None,
                format!("`{}` is no longer in the configuration", row.target),
            )
        };
        if let Some(name) = row.target.strip_prefix("forge:") {
            let f = self
                .forges
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(gone)?;
            return match row.kind.as_str() {
                "status" => f
                    .set_status(&self.client, &event)
                    .await
                    .map(|_| Done::Sent)
                    .map_err(ForgeError::into_failure),
                "comment" => self.comment(f, &event).await,
                other => Err(HttpFailure::permanent(
                    None,
                    format!("unknown delivery kind `{other}`"),
                )),
            };
        }
        if let Some(name) = row.target.strip_prefix("notify:") {
            let s = self
                .sinks
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(gone)?;
            let id = delivery_id(&row.run_id, &row.target);
            return s
                .send(&self.client, &event, &id)
                .await
                .map(|_| Done::Sent)
                .map_err(NotifyError::into_failure);
        }
        Err(gone())
    }

    /// The commit's comment on its merge request, created once and then edited in place.
    async fn comment(&self, f: &Forge, ev: &RunEvent) -> Result<Done, HttpFailure> {
        let Some(sha) = ev.commit.as_deref() else {
            return Ok(Done::Skipped("the run has no commit".into()));
        };
        let db = |e: sqlx::Error| HttpFailure {
            status: None,
            retry_after: None,
            retryable: true,
            message: format!("database: {e}"),
        };
        let Some(mr) = f
            .merge_request(&self.client, sha)
            .await
            .map_err(ForgeError::into_failure)?
        else {
            return Ok(Done::Skipped(format!(
                "no merge request on {} brought commit {sha}",
                f.name
            )));
        };
        let rows = self.with_links(comment_rows(&self.pool, sha).await.map_err(db)?);
        let body = forge::comment_body(sha, &rows);
        let target = f.target();
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT comment_id FROM forge_comments WHERE target = $1 AND commit_sha = $2 AND merge_request = $3",
        )
        .bind(&target)
        .bind(sha)
        .bind(&mr)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let mut id = stored;
        if id.is_none() {
            // Posted before a crash kept its id from the database: found by its marker.
            id = f
                .find_comment(&self.client, &mr, &forge::comment_marker(sha))
                .await
                .map_err(ForgeError::into_failure)?;
        }
        let id = match id {
            Some(id) => match f.update_comment(&self.client, &mr, &id, &body).await {
                Ok(()) => id,
                // Deleted on the forge: a new one.
                Err(e) if e.status() == Some(404) => f
                    .create_comment(&self.client, &mr, &body)
                    .await
                    .map_err(ForgeError::into_failure)?,
                Err(e) => return Err(e.into_failure()),
            },
            None => f
                .create_comment(&self.client, &mr, &body)
                .await
                .map_err(ForgeError::into_failure)?,
        };
        sqlx::query(
            "INSERT INTO forge_comments (target, commit_sha, merge_request, comment_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target, commit_sha, merge_request) DO UPDATE SET comment_id = EXCLUDED.comment_id, updated_at = now()",
        )
        .bind(&target)
        .bind(sha)
        .bind(&mr)
        .bind(&id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(Done::Sent)
    }
}

/// A test's labels in a catalog (`None` when the test is not there or not valid).
pub fn labels_in(catalog: &crate::spec::Catalog, test: &str) -> Option<BTreeMap<String, String>> {
    let rt = catalog.test(test)?.resolved.as_ref()?;
    Some(
        rt.test
            .metadata
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// A delivery's stable id (the same on every attempt): receivers drop repeats by it.
pub fn delivery_id(run: &str, target: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{run}\n{target}").as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The wait before attempt `attempts + 1`: `Retry-After` when the answer gave one, else
/// `initialBackoff · 2^(attempts-1)` within `maxBackoff`, ±20% jitter.
pub fn backoff(cfg: &DeliveryConfig, attempts: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let base = cfg.initial_backoff.as_duration();
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(cfg.max_backoff.as_duration());
    capped.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// The latest run of every test at `sha` (newest attempt first), with its result if it has
/// ended: the rows of the commit's comment.
pub async fn comment_rows(pool: &PgPool, sha: &str) -> Result<Vec<forge::CommentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (t.test) t.id, t.test, t.status, r.summary
         FROM test_runs t LEFT JOIN test_results r ON r.run_id = t.id
         WHERE t.commit = $1 AND t.status <> 'superseded'
         ORDER BY t.test, t.created_at DESC, t.id DESC LIMIT 500",
    )
    .bind(sha)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let summary: Option<serde_json::Value> = r.try_get("summary")?;
        let summary = summary.and_then(|v| serde_json::from_value::<RunSummary>(v).ok());
        let run: String = r.try_get("id")?;
        out.push(forge::CommentRow {
            test: r.try_get("test")?,
            status: r.try_get("status")?,
            p95_ms: summary.as_ref().and_then(RunSummary::p95_ms),
            p95_change_percent: summary
                .as_ref()
                .and_then(|s| s.comparison.as_ref())
                .and_then(|c| c.p95_change_percent),
            regression: summary.as_ref().is_some_and(|s| {
                s.comparison.as_ref().is_some_and(|c| c.regression)
                    || s.regression.as_ref().is_some_and(|r| r.regressed)
            }),
            run,
            url: None,
        });
    }
    Ok(out)
}

impl Deliveries {
    /// The comment rows with their links (used by tests and the comment).
    pub fn with_links(&self, mut rows: Vec<forge::CommentRow>) -> Vec<forge::CommentRow> {
        for r in &mut rows {
            r.url = self.run_url(&r.run);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::duration::KDuration;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_takes_seconds_dates_and_githubs_reset() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 01 Jan 2025 00:00:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert("retry-after", HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3600)));
        let mut g = HeaderMap::new();
        g.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        g.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&(now.timestamp() + 42).to_string()).unwrap(),
        );
        assert_eq!(retry_after(&g, now), Some(Duration::from_secs(42)));
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn what_is_retried() {
        for s in [408, 429, 500, 502, 503] {
            assert!(retryable(s, false), "{s}");
        }
        for s in [400, 401, 404, 410, 422, 403] {
            assert!(!retryable(s, false), "{s}");
        }
        assert!(retryable(403, true), "a rate-limited 403");
    }

    #[test]
    fn backoff_doubles_within_bounds_and_honours_retry_after() {
        let cfg = DeliveryConfig {
            max_attempts: 10,
            initial_backoff: KDuration::from_secs(1),
            max_backoff: KDuration::from_secs(10),
            request_timeout: KDuration::from_secs(5),
        };
        for (attempts, nominal) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (4, 8.0), (9, 10.0)] {
            let d = backoff(&cfg, attempts, None).as_secs_f64();
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "{attempts}: {d}"
            );
        }
        assert_eq!(
            backoff(&cfg, 3, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn event_texts() {
        let mut e: RunEvent = serde_json::from_value(serde_json::json!({
            "run": "checkout-0123456789-1", "test": "checkout", "revision": "r",
            "trigger": "change", "status": "failed", "p95Ms": 312.4,
            "baselineRun": "checkout-x-1", "baselineP95Ms": 278.0, "p95ChangePercent": 12.37,
            "regression": true
        }))
        .unwrap();
        assert_eq!(
            e.summary_line(),
            "checkout failed: p95 312 ms, +12.4% vs 278 ms, regression"
        );
        e.status = None;
        assert_eq!(e.summary_line(), "checkout running");
        assert_eq!(ms(1250.0), "1.25 s");
        assert_eq!(ms(0.412), "0.41 ms");
        assert_eq!(delivery_id("a", "b").len(), 32);
        assert_ne!(delivery_id("a", "b"), delivery_id("a", "c"));
    }
}
