//! Runs in PostgreSQL: the queue the scheduler reads, and runs asked for by people and cron.

use super::RecordError;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub test: String,
    pub revision: String,
    pub reason: String,
    pub trigger: String,
    pub status: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, test, revision, reason, trigger, status, commit, author, created_at, started_at, ended_at";

fn row(r: sqlx::postgres::PgRow) -> Result<RunRow, sqlx::Error> {
    Ok(RunRow {
        id: r.try_get("id")?,
        test: r.try_get("test")?,
        revision: r.try_get("revision")?,
        reason: r.try_get("reason")?,
        trigger: r.try_get("trigger")?,
        status: r.try_get("status")?,
        commit: r.try_get("commit")?,
        author: r.try_get("author")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

async fn select(pool: &PgPool, filter: &'static str) -> Result<Vec<RunRow>, RecordError> {
    let sql = format!("SELECT {COLUMNS} FROM test_runs WHERE {filter} ORDER BY created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(row).collect::<Result<_, _>>()?)
}

pub async fn queued(pool: &PgPool) -> Result<Vec<RunRow>, RecordError> {
    select(pool, "status = 'queued'").await
}

pub async fn running(pool: &PgPool) -> Result<Vec<RunRow>, RecordError> {
    select(pool, "status = 'running'").await
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<RunRow>, RecordError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM test_runs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(r.map(row).transpose()?)
}

/// Recent runs (any state), newest first.
pub async fn recent(
    pool: &PgPool,
    test: Option<&str>,
    limit: i64,
) -> Result<Vec<RunRow>, RecordError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM test_runs WHERE ($1::text IS NULL OR test = $1) ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(test)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(row).collect::<Result<_, _>>()?)
}

/// Older queued revisions of a test, overtaken by a newer one: they never run.
pub async fn supersede(pool: &PgPool, ids: &[String]) -> Result<(), RecordError> {
    let mut tx = pool.begin().await?;
    for id in ids {
        let n = sqlx::query("UPDATE test_runs SET status = 'superseded', ended_at = now(), updated_at = now() WHERE id = $1 AND status = 'queued'")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            sqlx::query("INSERT INTO test_run_events (run_id, status) VALUES ($1, 'superseded')")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Queues a run outside a sync (`manual` from the API, `schedule` from cron) and audits it.
pub async fn enqueue(
    pool: &PgPool,
    test: &str,
    revision: &str,
    reason: &str,
    actor: &str,
    commit: Option<&str>,
) -> Result<String, RecordError> {
    let mut tx = pool.begin().await?;
    // Serialises attempts of one test and revision between concurrent callers.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("{test}/{revision}"))
        .execute(&mut *tx)
        .await?;
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE test = $1 AND revision = $2")
            .bind(test)
            .bind(revision)
            .fetch_one(&mut *tx)
            .await?;
    let id = crate::spec::render::run_id(
        test,
        revision,
        u32::try_from(attempts).unwrap_or(u32::MAX - 1) + 1,
    );
    sqlx::query("INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status, commit, author) VALUES ($1, $2, $3, $4, $5, $5, 'queued', $6, $7)")
        .bind(&id)
        .bind(test)
        .bind(revision)
        .bind(attempts as i32 + 1)
        .bind(reason)
        .bind(commit)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ($1, 'run.requested', $2, $3, $4)")
        .bind(actor)
        .bind(test)
        .bind(&id)
        .bind(serde_json::json!({"reason": reason, "revision": revision}))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn audit(
    pool: &PgPool,
    actor: &str,
    action: &str,
    test: Option<&str>,
    run: Option<&str>,
    details: serde_json::Value,
) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor)
    .bind(action)
    .bind(test)
    .bind(run)
    .bind(details)
    .execute(pool)
    .await?;
    Ok(())
}
