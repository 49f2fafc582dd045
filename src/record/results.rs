//! Results in PostgreSQL: a run's state changes, its summary (written once), the audit log.

use super::RecordError;
use crate::results::summary::RunSummary;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

/// Records a state change of a run (`running`, …) with its time.
pub async fn set_run_state(
    pool: &PgPool,
    run_id: &str,
    status: &str,
    details: serde_json::Value,
) -> Result<(), RecordError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE test_runs SET status = $2, updated_at = now(),
           started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN now() ELSE started_at END
         WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(run_id)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO test_run_events (run_id, status, details) VALUES ($1, $2, $3)")
        .bind(run_id)
        .bind(status)
        .bind(details)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

/// Writes the run's result once: a second call for the same run changes nothing and returns
/// `false`. The run's row, its final event and the audit entry land in the same transaction.
pub async fn record_result(
    pool: &PgPool,
    s: &RunSummary,
    git_commit: Option<&str>,
) -> Result<bool, RecordError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO test_results (run_id, test_id, start_time, end_time, status, summary, git_commit)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(&s.run.id)
    .bind(&s.run.test)
    .bind(parse_time(&s.run.start))
    .bind(parse_time(&s.run.end))
    .bind(s.status.as_str())
    .bind(serde_json::to_value(s).unwrap_or_default())
    .bind(git_commit)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE test_runs SET status = $2, ended_at = $3, started_at = coalesce(started_at, $4), updated_at = now() WHERE id = $1",
    )
    .bind(&s.run.id)
    .bind(s.status.as_str())
    .bind(parse_time(&s.run.end))
    .bind(parse_time(&s.run.start))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO test_run_events (run_id, status, details) VALUES ($1, $2, $3)")
        .bind(&s.run.id)
        .bind(s.status.as_str())
        .bind(serde_json::json!({"reason": s.reason}))
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ($1, 'run.finished', $2, $3, $4)")
        .bind(s.run.author.as_deref().unwrap_or("perfsync"))
        .bind(&s.run.test)
        .bind(&s.run.id)
        .bind(serde_json::json!({"status": s.status.as_str(), "trigger": s.run.trigger, "revision": s.run.revision, "commit": s.run.commit}))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// What the database says about a run a results file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub test: String,
    pub status: String,
    pub ended_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// Ended with a verdict (a superseded run never ran, a queued or running one is in flight).
    pub fn ended(&self) -> bool {
        self.ended_at.is_some() && crate::results::summary::EndState::parse(&self.status).is_some()
    }
}

/// The runs among `ids`, as `test_runs` has them.
pub async fn run_records(pool: &PgPool, ids: &[String]) -> Result<Vec<RunRecord>, RecordError> {
    let rows = sqlx::query("SELECT id, test, status, ended_at FROM test_runs WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(RunRecord {
                id: r.try_get("id")?,
                test: r.try_get("test")?,
                status: r.try_get("status")?,
                ended_at: r.try_get("ended_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(RecordError::from)
}

/// Restores a result the database lost from perfsync's own results file (its MAC verified
/// by the caller): only for a run `test_runs` holds as ended with exactly this test, verdict
/// and end time, so a file can never decide a run's result, only give back the one the
/// database already attests. Checked and written in one statement; audited as perfsync
/// (never an actor from the file). Returns whether it wrote the row.
pub async fn import_result(
    pool: &PgPool,
    s: &RunSummary,
    git_commit: &str,
    file: &str,
) -> Result<bool, RecordError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO test_results (run_id, test_id, start_time, end_time, status, summary, git_commit)
         SELECT $1, $2, $3, $4, $5, $6, $7 FROM test_runs
          WHERE id = $1 AND test = $2 AND status = $5 AND ended_at IS NOT NULL
            AND abs(extract(epoch FROM ended_at - $4::timestamptz)) < 0.001
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(&s.run.id)
    .bind(&s.run.test)
    .bind(parse_time(&s.run.start))
    .bind(parse_time(&s.run.end))
    .bind(s.status.as_str())
    .bind(serde_json::to_value(s).unwrap_or_default())
    .bind(git_commit)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    sqlx::query("INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ('perfsync', 'run.result-restored', $1, $2, $3)")
        .bind(&s.run.test)
        .bind(&s.run.id)
        .bind(serde_json::json!({"status": s.status.as_str(), "file": file, "commit": git_commit}))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Results not yet on the git remote, oldest first.
pub async fn unpushed(pool: &PgPool, limit: i64) -> Result<Vec<RunSummary>, RecordError> {
    let rows = sqlx::query("SELECT summary FROM test_results WHERE git_commit IS NULL ORDER BY end_time, run_id LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(summaries(rows))
}

pub async fn mark_pushed(
    pool: &PgPool,
    run_ids: &[String],
    commit: &str,
) -> Result<(), RecordError> {
    sqlx::query(
        "UPDATE test_results SET git_commit = $2 WHERE run_id = ANY($1) AND git_commit IS NULL",
    )
    .bind(run_ids)
    .bind(commit)
    .execute(pool)
    .await?;
    Ok(())
}

/// The most recent results of a test, newest first.
pub async fn recent(
    pool: &PgPool,
    test: Option<&str>,
    limit: i64,
) -> Result<Vec<RunSummary>, RecordError> {
    let rows = sqlx::query(
        "SELECT summary FROM test_results WHERE ($1::text IS NULL OR test_id = $1) ORDER BY end_time DESC, run_id DESC LIMIT $2",
    )
    .bind(test)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(summaries(rows))
}

pub async fn get(pool: &PgPool, run_id: &str) -> Result<Option<RunSummary>, RecordError> {
    let v: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT summary FROM test_results WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// The baseline for a test: a named run, or its latest succeeded run before `before_run`.
pub async fn baseline(
    pool: &PgPool,
    test: &str,
    named: Option<&str>,
    before_run: &str,
) -> Result<Option<RunSummary>, RecordError> {
    if let Some(id) = named {
        return get(pool, id).await;
    }
    let v: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT summary FROM test_results WHERE test_id = $1 AND status = 'succeeded' AND run_id <> $2 ORDER BY end_time DESC LIMIT 1",
    )
    .bind(test)
    .bind(before_run)
    .fetch_optional(pool)
    .await?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// Run ids with a recorded result, among `ids`.
pub async fn known_ids(pool: &PgPool, ids: &[String]) -> Result<Vec<String>, RecordError> {
    Ok(
        sqlx::query_scalar("SELECT run_id FROM test_results WHERE run_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?,
    )
}

/// The `summary` column of result rows, as summaries (rows that no longer parse are skipped).
fn summaries(rows: Vec<sqlx::postgres::PgRow>) -> Vec<RunSummary> {
    rows.into_iter()
        .filter_map(|r| r.try_get::<serde_json::Value, _>("summary").ok())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}
