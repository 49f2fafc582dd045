//! `/api/v1`: status, tests, runs, runner logs, manual runs, aborts, syncs. Every endpoint
//! needs the bearer token; every write is audited with the caller. Every answer is masked:
//! no secret value this process knows (see `page::known_secrets`) leaves in one.

use super::mask::{mask, mask_json};
use super::{authorized, error, json_reply, AppState};
use crate::executor::scheduler::AbortOutcome;
use crate::record::{results, runs};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// Who called, for the audit log: the token is never written, only that the API was used.
const API_ACTOR: &str = "api (bearer token)";

fn run_json(r: &runs::RunRow, summary: Option<&crate::results::RunSummary>) -> Value {
    json!({
        "id": r.id, "test": r.test, "revision": r.revision, "reason": r.reason, "trigger": r.trigger,
        "status": r.status, "commit": r.commit, "author": r.author,
        "createdAt": r.created_at, "startedAt": r.started_at, "endedAt": r.ended_at,
        "ended": r.ended_at.is_some(),
        "summary": summary,
    })
}

fn db_error(state: &AppState, e: impl std::fmt::Display) -> Response {
    let secrets = super::page::known_secrets(state);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database",
        &mask(&e.to_string(), &refs),
    )
}

/// A JSON answer with every secret value this process knows masked in every string.
fn answer(state: &AppState, status: StatusCode, mut body: Value) -> Response {
    let secrets = super::page::known_secrets(state);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    mask_json(&mut body, &refs);
    json_reply(status, body)
}

async fn status(state: Arc<AppState>) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    let sync = sqlx::query_as::<_, (String, String, Option<String>, Option<chrono::DateTime<chrono::Utc>>, Option<String>)>(
        "SELECT repository, branch, last_commit, last_synced_at, last_error FROM sync_state ORDER BY repository LIMIT 1",
    )
    .fetch_optional(pool)
    .await;
    let sync = match sync {
        Ok(s) => s.map(|(repository, branch, commit, at, err)| json!({"repository": repository, "branch": branch, "lastCommit": commit, "lastSyncedAt": at, "lastError": err})),
        Err(e) => return db_error(&state, e),
    };
    let queued = runs::queued(pool).await.map(|q| q.len()).unwrap_or(0);
    let active: Vec<Value> = state
        .scheduler
        .as_ref()
        .map(|s| s.active_runs())
        .unwrap_or_default()
        .into_iter()
        .map(|(id, test)| json!({"id": id, "test": test}))
        .collect();
    let catalog = state.scheduler.as_ref().and_then(|s| s.catalog());
    let (total, valid) = catalog
        .map(|c| (c.tests.len(), c.valid_tests().count()))
        .unwrap_or((0, 0));
    answer(
        &state,
        StatusCode::OK,
        json!({"sync": sync, "activeRuns": active, "queuedRuns": queued, "tests": {"total": total, "valid": valid, "invalid": total - valid}}),
    )
}

async fn tests(state: Arc<AppState>, name: Option<String>) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    let Some(catalog) = state.scheduler.as_ref().and_then(|s| s.catalog()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-synced",
            "the repository has not been synced yet",
        );
    };
    let mut out = Vec::new();
    for t in catalog
        .tests
        .iter()
        .filter(|t| name.is_none() || t.name == name)
    {
        let test_name = t.name.clone().unwrap_or_else(|| t.file.clone());
        let last = match results::recent(
            pool,
            Some(&test_name),
            if name.is_some() { 20 } else { 1 },
        )
        .await
        {
            Ok(l) => l,
            Err(e) => return db_error(&state, e),
        };
        let errors: Vec<_> = catalog
            .diagnostics
            .iter()
            .filter(|d| {
                d.file == t.file
                    || crate::source::tree::is_within(&d.file, crate::source::tree::parent(&t.file))
            })
            .collect();
        let mut v = json!({
            "name": test_name, "file": t.file, "valid": t.resolved.is_some(),
            "revision": t.resolved.as_ref().map(|r| r.revision.clone()),
            "suspended": t.resolved.as_ref().map(|r| r.test.spec.suspend),
            "schedule": t.resolved.as_ref().and_then(|r| r.test.spec.trigger.schedule.clone()),
            "errors": errors,
            "lastRun": last.first().map(|s| json!({"id": s.run.id, "status": s.status, "p95": s.p95_ms(), "errorRate": s.error_rate(), "rps": s.rps(),
                "regression": s.comparison.as_ref().map(|c| c.regression), "end": s.run.end})),
        });
        if name.is_some() {
            v["history"] = json!(last.iter().map(|s| json!({"id": s.run.id, "status": s.status, "p95": s.p95_ms(), "end": s.run.end})).collect::<Vec<_>>());
            v["spec"] = json!(t.resolved.as_ref().map(|r| r.test.spec.clone()));
        }
        out.push(v);
    }
    match name {
        Some(n) => match out.into_iter().next() {
            Some(v) => answer(&state, StatusCode::OK, v),
            None => error(
                StatusCode::NOT_FOUND,
                "unknown-test",
                &format!("no test named `{n}`"),
            ),
        },
        None => answer(&state, StatusCode::OK, json!(out)),
    }
}

async fn list_runs(state: Arc<AppState>, q: HashMap<String, String>) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    let rows = match runs::recent(pool, q.get("test").map(String::as_str), limit).await {
        Ok(r) => r,
        Err(e) => return db_error(&state, e),
    };
    let mut out = Vec::new();
    for r in &rows {
        let s = results::get(pool, &r.id).await.ok().flatten();
        let mut v = run_json(r, None);
        v["status"] = json!(s
            .as_ref()
            .map(|s| s.status.as_str())
            .unwrap_or(r.status.as_str()));
        v["p95"] = json!(s.as_ref().and_then(|s| s.p95_ms()));
        out.push(v);
    }
    answer(&state, StatusCode::OK, json!(out))
}

/// `GET /api/v1/runs/{id}[?wait=D]`: with `wait`, answers once the run has ended or after
/// `D` (at most [`super::wait::MAX_WAIT`]), whichever is first.
async fn get_run(state: Arc<AppState>, id: String, q: HashMap<String, String>) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    if let Some(w) = q.get("wait") {
        let wait = match crate::spec::duration::parse_duration(w) {
            Ok(d) => d,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-wait",
                    &format!("wait: {e} (a duration such as `30s`, at most 55s)"),
                )
            }
        };
        if let Err(e) = super::wait::until_ended(pool, &id, wait).await {
            return db_error(&state, e);
        }
    }
    match runs::get(pool, &id).await {
        Ok(Some(r)) => {
            let s = results::get(pool, &id).await.ok().flatten();
            answer(&state, StatusCode::OK, run_json(&r, s.as_ref()))
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown-run",
            &format!("no run `{id}`"),
        ),
        Err(e) => db_error(&state, e),
    }
}

/// `GET /api/v1/runs/{id}/logs`: each runner's log tail, masked, lines capped.
async fn run_logs(state: Arc<AppState>, id: String) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    match runs::get(pool, &id).await {
        Ok(Some(_)) => {
            let secrets = super::page::known_secrets(&state);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let logs = super::page::runner_logs(&state, &id, &refs);
            answer(&state, StatusCode::OK, json!({"run": id, "runners": logs}))
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown-run",
            &format!("no run `{id}`"),
        ),
        Err(e) => db_error(&state, e),
    }
}

async fn manual_run(state: Arc<AppState>, name: String) -> Response {
    let (Some(pool), Some(sched)) = (&state.pool, &state.scheduler) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "no scheduler");
    };
    let Some(catalog) = sched.catalog() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-synced",
            "the repository has not been synced yet",
        );
    };
    let Some(entry) = catalog.test(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown-test",
            &format!("no test named `{name}`"),
        );
    };
    let Some(rt) = &entry.resolved else {
        return error(
            StatusCode::CONFLICT,
            "invalid-test",
            &format!("test `{name}` is invalid; fix it first"),
        );
    };
    if rt.test.spec.suspend {
        return error(
            StatusCode::CONFLICT,
            "suspended",
            &format!("test `{name}` is suspended"),
        );
    }
    match runs::enqueue(pool, &name, &rt.revision, "manual", API_ACTOR, None).await {
        Ok(id) => {
            sched.wake();
            json_reply(StatusCode::ACCEPTED, json!({"run": id, "status": "queued"}))
        }
        Err(e) => db_error(&state, e),
    }
}

async fn abort(state: Arc<AppState>, id: String) -> Response {
    let Some(sched) = &state.scheduler else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "no scheduler");
    };
    match sched.abort(&id, API_ACTOR).await {
        Ok(AbortOutcome::Stopping) => json_reply(
            StatusCode::ACCEPTED,
            json!({"run": id, "status": "stopping"}),
        ),
        Ok(AbortOutcome::AbortedQueued) => {
            json_reply(StatusCode::OK, json!({"run": id, "status": "aborted"}))
        }
        Ok(AbortOutcome::NotActive(s)) => error(
            StatusCode::CONFLICT,
            "not-active",
            &format!("run `{id}` is {s}"),
        ),
        Ok(AbortOutcome::Unknown) => error(
            StatusCode::NOT_FOUND,
            "unknown-run",
            &format!("no run `{id}`"),
        ),
        Err(e) => db_error(&state, e),
    }
}

async fn sync(state: Arc<AppState>) -> Response {
    if let Some(pool) = &state.pool {
        if let Err(e) = runs::audit(pool, API_ACTOR, "sync.requested", None, None, json!({})).await
        {
            return db_error(&state, e);
        }
    }
    state.triggers.fire("api", None);
    json_reply(StatusCode::ACCEPTED, json!({"status": "sync-queued"}))
}

/// Runs the handler for an authorized request; answers with the refusal otherwise.
async fn authed<F, Fut>(a: Result<Arc<AppState>, Response>, handler: F) -> Response
where
    F: FnOnce(Arc<AppState>) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match a {
        Ok(s) => handler(s).await,
        Err(r) => r,
    }
}

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let s = state.clone();
    let auth = warp::header::optional::<String>("authorization")
        .and(warp::any().map(move || s.clone()))
        .and_then(|h: Option<String>, st: Arc<AppState>| async move {
            match authorized(&st, h.as_deref()) {
                Ok(()) => Ok::<_, warp::Rejection>(Ok(st)),
                Err(r) => Ok(Err(r)),
            }
        });
    let base = warp::path("api").and(warp::path("v1"));
    let openapi = base
        .and(warp::path!("openapi.json"))
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, super::openapi::document()));
    let status_r = base
        .and(warp::path!("status"))
        .and(warp::get())
        .and(auth.clone())
        .then(|a| authed(a, status));
    let tests_r = base
        .and(warp::path!("tests"))
        .and(warp::get())
        .and(auth.clone())
        .then(|a| authed(a, |s| tests(s, None)));
    let test_r = base
        .and(warp::path!("tests" / String))
        .and(warp::get())
        .and(auth.clone())
        .then(|n: String, a| authed(a, move |s| tests(s, Some(n))));
    let runs_r = base
        .and(warp::path!("runs"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(auth.clone())
        .then(|q, a| authed(a, move |s| list_runs(s, q)));
    let run_r = base
        .and(warp::path!("runs" / String))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(auth.clone())
        .then(|id, q, a| authed(a, move |s| get_run(s, id, q)));
    let logs_r = base
        .and(warp::path!("runs" / String / "logs"))
        .and(warp::get())
        .and(auth.clone())
        .then(|id, a| authed(a, move |s| run_logs(s, id)));
    let manual_r = base
        .and(warp::path!("tests" / String / "runs"))
        .and(warp::post())
        .and(auth.clone())
        .then(|n, a| authed(a, move |s| manual_run(s, n)));
    let abort_r = base
        .and(warp::path!("runs" / String / "abort"))
        .and(warp::post())
        .and(auth.clone())
        .then(|id, a| authed(a, move |s| abort(s, id)));
    let ack_r = base
        .and(warp::path!("runs" / String / "acknowledge"))
        .and(warp::post())
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::bytes())
        .and(auth.clone())
        .then(|id, body, a| authed(a, move |s| acknowledge(s, id, body)));
    let changes_r = base
        .and(warp::path!("changes"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(auth.clone())
        .then(|q, a| authed(a, move |s| changes(s, q)));
    let sync_r = base
        .and(warp::path!("sync"))
        .and(warp::post())
        .and(auth)
        .then(|a| authed(a, sync));
    openapi
        .or(status_r)
        .unify()
        .or(tests_r)
        .unify()
        .or(test_r)
        .unify()
        .or(runs_r)
        .unify()
        .or(run_r)
        .unify()
        .or(logs_r)
        .unify()
        .or(manual_r)
        .unify()
        .or(abort_r)
        .unify()
        .or(ack_r)
        .unify()
        .or(changes_r)
        .unify()
        .or(sync_r)
        .unify()
}

/// `POST /api/v1/runs/{id}/acknowledge` (`{"reason": "…"}`): a regression the team accepts;
/// later runs of its series are compared with it and what follows it.
async fn acknowledge(state: Arc<AppState>, id: String, body: bytes::Bytes) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    let reason = if body.is_empty() {
        String::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v["reason"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(500)
                .collect(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-body",
                    &format!("the body is JSON `{{\"reason\": \"…\"}}`: {e}"),
                )
            }
        }
    };
    use crate::record::regressions::{self, Acknowledged};
    match regressions::acknowledge(pool, &id, None, API_ACTOR, &reason, "api").await {
        Ok(Acknowledged::New) => answer(
            &state,
            StatusCode::CREATED,
            json!({"run": id, "acknowledged": true}),
        ),
        Ok(Acknowledged::Already) => answer(
            &state,
            StatusCode::OK,
            json!({"run": id, "acknowledged": true}),
        ),
        Ok(Acknowledged::UnknownRun) => error(
            StatusCode::NOT_FOUND,
            "unknown-run",
            &format!("no recorded run `{id}`"),
        ),
        Err(e) => db_error(&state, e),
    }
}

/// `GET /api/v1/changes[?test=T&limit=N]`: change points over the tests' series, newest first.
async fn changes(state: Arc<AppState>, q: HashMap<String, String>) -> Response {
    let Some(pool) = &state.pool else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database", "no database");
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    match crate::record::regressions::change_points(pool, q.get("test").map(String::as_str), limit)
        .await
    {
        Ok(list) => answer(&state, StatusCode::OK, json!(list)),
        Err(e) => db_error(&state, e),
    }
}
