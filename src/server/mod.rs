//! The HTTP edge (warp): webhooks, health, metrics and the API.

pub mod api;
pub mod hooks;
pub mod mask;
pub mod openapi;
pub mod page;
pub mod wait;

use crate::metrics::Metrics;
use crate::sync::triggers::Triggers;
use bytes::Bytes;
use hooks::token_eq;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

/// What the sync loop tells the health endpoints.
#[derive(Default)]
pub struct Health {
    pub last_sync_failed: AtomicBool,
}

pub struct AppState {
    pub triggers: Arc<Triggers>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub branch: String,
    /// Resolved webhook secrets by provider; a provider missing here is not served.
    pub hook_secrets: BTreeMap<&'static str, String>,
    pub api_token: Option<String>,
    pub pool: Option<PgPool>,
    pub scheduler: Option<Arc<crate::executor::scheduler::Scheduler>>,
    /// Shown (without credentials) and used for commit links on the status page.
    pub repository_url: Option<String>,
    /// Who may read the status page (`server.page`), and the other secrets to mask.
    pub page: page::PageSettings,
}

pub(crate) fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Errors have one shape everywhere: `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_reply(status, json!({"error": {"code": code, "message": message}}))
}

/// Checks `Authorization: Bearer …` against the configured API token.
pub fn authorized(state: &AppState, header: Option<&str>) -> Result<(), Response> {
    let Some(expected) = &state.api_token else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "api-disabled",
            "no API token is configured (server.apiToken)",
        ));
    };
    match header.and_then(|h| h.strip_prefix("Bearer ")) {
        Some(given) if token_eq(given.trim(), expected) => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )),
    }
}

async fn readyz(state: Arc<AppState>) -> Response {
    let db_ok = match &state.pool {
        Some(pool) => sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(pool)
            .await
            .is_ok(),
        None => true,
    };
    let sync_ok = !state.health.last_sync_failed.load(Ordering::Relaxed);
    let status = if db_ok && sync_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({"database": db_ok, "sync": sync_ok});
    // The local executor's sandbox: runs go without one (so readiness does not depend on
    // it), but the answer says so.
    if let Some(crate::executor::Executor::Local(local)) =
        state.scheduler.as_ref().map(|s| s.executor.as_ref())
    {
        body["sandbox"] = local.sandbox.status();
    }
    json_reply(status, body)
}

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = {
        let s = state.clone();
        warp::any().map(move || s.clone())
    };
    let hooks = warp::post()
        .and(warp::path!("hooks" / String))
        .and(warp::body::content_length_limit(hooks::MAX_BODY))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_state.clone())
        .map(
            |provider: String, headers: HeaderMap, body: Bytes, state: Arc<AppState>| {
                hooks::handle(&state, &provider, &headers, &body)
            },
        );
    let healthz = warp::get()
        .and(warp::path!("healthz"))
        .map(|| json_reply(StatusCode::OK, json!({"status": "ok"})));
    let readyz = warp::get()
        .and(warp::path!("readyz"))
        .and(with_state.clone())
        .then(readyz);
    let metrics = warp::get()
        .and(warp::path!("metrics"))
        .and(with_state.clone())
        .map(|s: Arc<AppState>| {
            warp::reply::with_header(
                s.metrics.encode(),
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response()
        });
    hooks
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(api::routes(state.clone()))
        .unify()
        .or(page::routes(state))
        .unify()
}
