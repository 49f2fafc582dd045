//! The statistical gate's history in PostgreSQL: a series' earlier results, the
//! acknowledgements a team made, and the change points found over each series.

use super::RecordError;
use crate::results::regression::Shift;
use crate::results::summary::RunSummary;
use sqlx::{PgPool, Row};
use std::collections::BTreeSet;

/// The test's earlier results of `series`, oldest first (at most `limit`, the newest).
pub async fn history(
    pool: &PgPool,
    test: &str,
    series: &str,
    before_run: &str,
    limit: i64,
) -> Result<Vec<RunSummary>, RecordError> {
    let rows = sqlx::query(
        "SELECT summary FROM test_results
         WHERE test_id = $1 AND summary->'regression'->>'series' = $2 AND run_id <> $3
         ORDER BY end_time DESC LIMIT $4",
    )
    .bind(test)
    .bind(series)
    .bind(before_run)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<RunSummary> = rows
        .into_iter()
        .filter_map(|r| r.try_get::<serde_json::Value, _>("summary").ok())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    out.reverse();
    Ok(out)
}

/// Whether the test has any earlier result at all (so an empty series history means a new
/// series, not a new test).
pub async fn test_has_results(
    pool: &PgPool,
    test: &str,
    before_run: &str,
) -> Result<bool, RecordError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM test_results WHERE test_id = $1 AND run_id <> $2)",
    )
    .bind(test)
    .bind(before_run)
    .fetch_one(pool)
    .await?)
}

pub async fn acknowledged(pool: &PgPool, test: &str) -> Result<BTreeSet<String>, RecordError> {
    Ok(
        sqlx::query_scalar("SELECT run_id FROM acknowledgements WHERE test_id = $1")
            .bind(test)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect(),
    )
}

/// What [`acknowledge`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Acknowledged {
    New,
    Already,
    /// No result of that run (or of another test than named).
    UnknownRun,
}

/// Accepts run `run_id`'s regression: later runs of its series are compared with it and
/// what follows it. Audited with `actor`.
pub async fn acknowledge(
    pool: &PgPool,
    run_id: &str,
    of_test: Option<&str>,
    actor: &str,
    reason: &str,
    source: &str,
) -> Result<Acknowledged, RecordError> {
    let mut tx = pool.begin().await?;
    let test: Option<String> =
        sqlx::query_scalar("SELECT test_id FROM test_results WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(test) = test.filter(|t| of_test.is_none_or(|o| o == t)) else {
        return Ok(Acknowledged::UnknownRun);
    };
    let n = sqlx::query(
        "INSERT INTO acknowledgements (run_id, test_id, actor, reason, source) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(&test)
    .bind(actor)
    .bind(reason)
    .bind(source)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(Acknowledged::Already);
    }
    sqlx::query("INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ($1, 'run.acknowledged', $2, $3, $4)")
        .bind(actor)
        .bind(&test)
        .bind(run_id)
        .bind(serde_json::json!({"reason": reason, "source": source}))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Acknowledged::New)
}

/// Replaces the change points of `series` of `test` with `shifts`; returns those that are
/// new (a metric's shift at a run not stored before).
pub async fn replace_change_points<'a>(
    pool: &PgPool,
    test: &str,
    series: &str,
    shifts: &'a [Shift],
) -> Result<Vec<&'a Shift>, RecordError> {
    let mut tx = pool.begin().await?;
    let old: BTreeSet<(String, String)> = sqlx::query_as(
        "DELETE FROM change_points WHERE test_id = $1 AND series = $2 RETURNING metric, run_id",
    )
    .bind(test)
    .bind(series)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    for s in shifts {
        let end = chrono::DateTime::parse_from_rfc3339(&s.end)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        sqlx::query(
            "INSERT INTO change_points (test_id, series, metric, run_id, commit, run_end, p_value, change_percent, point)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(test)
        .bind(series)
        .bind(&s.metric)
        .bind(&s.run_id)
        .bind(&s.commit)
        .bind(end)
        .bind(s.point.p_value)
        .bind(s.point.change_percent)
        .bind(serde_json::to_value(&s.point).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(shifts
        .iter()
        .filter(|s| !old.contains(&(s.metric.clone(), s.run_id.clone())))
        .collect())
}

/// Change points, newest first; of one test when named.
pub async fn change_points(
    pool: &PgPool,
    test: Option<&str>,
    limit: i64,
) -> Result<Vec<Shift>, RecordError> {
    let rows = sqlx::query(
        "SELECT test_id, series, metric, run_id, commit, run_end, point FROM change_points
         WHERE $1::text IS NULL OR test_id = $1 ORDER BY run_end DESC, metric LIMIT $2",
    )
    .bind(test)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let point: serde_json::Value = r.try_get("point")?;
        let Ok(point) = serde_json::from_value(point) else {
            continue;
        };
        let end: chrono::DateTime<chrono::Utc> = r.try_get("run_end")?;
        out.push(Shift {
            test: r.try_get("test_id")?,
            series: r.try_get("series")?,
            metric: r.try_get("metric")?,
            run_id: r.try_get("run_id")?,
            commit: r.try_get("commit")?,
            end: end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            point,
        });
    }
    Ok(out)
}

/// `(test, first run)` of every stored p95 shift: what the status page marks.
pub async fn p95_shift_runs(pool: &PgPool) -> Result<BTreeSet<(String, String)>, RecordError> {
    Ok(sqlx::query_as::<_, (String, String)>(
        "SELECT test_id, run_id FROM change_points WHERE metric = 'p95'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}
