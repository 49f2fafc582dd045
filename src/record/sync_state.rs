//! The sync's state in PostgreSQL. Recording a sync is one transaction: the planned runs, the
//! tests' revisions and the new last commit land together or not at all.

use super::RecordError;
use crate::plan::{Known, Plan, Prior};
use crate::source::git::CommitInfo;
use crate::spec::Catalog;
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;

pub async fn load_prior(
    pool: &PgPool,
    repository: &str,
    branch: &str,
) -> Result<Prior, RecordError> {
    let commit: Option<String> = sqlx::query_scalar(
        "SELECT last_commit FROM sync_state WHERE repository = $1 AND branch = $2",
    )
    .bind(repository)
    .bind(branch)
    .fetch_optional(pool)
    .await?
    .flatten();
    let rows = sqlx::query("SELECT name, revision, template_revision, file, valid FROM perf_tests")
        .fetch_all(pool)
        .await?;
    let mut tests = BTreeMap::new();
    for r in rows {
        tests.insert(
            r.try_get::<String, _>("name")?,
            Known {
                revision: r.try_get("revision")?,
                template_revision: r.try_get("template_revision")?,
                file: r.try_get("file")?,
                valid: r.try_get("valid")?,
            },
        );
    }
    Ok(Prior { commit, tests })
}

/// A planned run as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    pub id: String,
    pub test: String,
    pub revision: String,
}

pub struct SyncRecord<'a> {
    pub repository: &'a str,
    pub branch: &'a str,
    pub plan: &'a Plan,
    pub catalog: &'a Catalog,
    pub prior: &'a Prior,
    pub head: &'a CommitInfo,
    pub trigger: &'a str,
}

/// Records a planned sync atomically. Fails with [`RecordError::Conflict`] when the state no
/// longer starts where the plan did (another sync got there first).
pub async fn record_sync(
    pool: &PgPool,
    rec: &SyncRecord<'_>,
) -> Result<Vec<QueuedRun>, RecordError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO sync_state (repository, branch) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(rec.repository)
    .bind(rec.branch)
    .execute(&mut *tx)
    .await?;
    let current: Option<String> = sqlx::query_scalar(
        "SELECT last_commit FROM sync_state WHERE repository = $1 AND branch = $2 FOR UPDATE",
    )
    .bind(rec.repository)
    .bind(rec.branch)
    .fetch_one(&mut *tx)
    .await?;
    if current != rec.plan.from {
        return Err(RecordError::Conflict {
            repository: rec.repository.to_string(),
            branch: rec.branch.to_string(),
            expected: rec.plan.from.clone(),
            found: current,
        });
    }
    let author = format!("{} <{}>", rec.head.author_name, rec.head.author_email);
    let mut queued = Vec::new();
    for run in &rec.plan.runs {
        let attempts: i64 =
            sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE test = $1 AND revision = $2")
                .bind(&run.test)
                .bind(&run.revision)
                .fetch_one(&mut *tx)
                .await?;
        let attempt = u32::try_from(attempts).unwrap_or(u32::MAX - 1) + 1;
        let id = crate::spec::render::run_id(&run.test, &run.revision, attempt);
        sqlx::query(
            "INSERT INTO test_runs (id, test, revision, attempt, reason, trigger, status, commit, author) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)",
        )
        .bind(&id)
        .bind(&run.test)
        .bind(&run.revision)
        .bind(attempt as i32)
        .bind(run.reason.as_str())
        .bind(rec.trigger)
        .bind(&rec.head.sha)
        .bind(&author)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO audit_log (actor, action, test, run_id, details) VALUES ($1, 'run.planned', $2, $3, $4)")
            .bind(&author)
            .bind(&run.test)
            .bind(&id)
            .bind(serde_json::json!({"reason": run.reason.as_str(), "revision": run.revision, "commit": rec.head.sha, "trigger": rec.trigger}))
            .execute(&mut *tx)
            .await?;
        queued.push(QueuedRun {
            id,
            test: run.test.clone(),
            revision: run.revision.clone(),
        });
    }
    // Only tests whose recorded state moves are written, so a sync costs what it changes; the
    // rows go in one statement each for valid and invalid tests (a first sync writes them all).
    let mut valid = ValidRows::default();
    let mut invalid = InvalidRows::default();
    for entry in &rec.catalog.tests {
        let Some(name) = &entry.name else { continue };
        let known = rec.prior.tests.get(name);
        match &entry.resolved {
            Some(rt) => {
                let unchanged = known.is_some_and(|k| {
                    k.valid
                        && k.file == entry.file
                        && k.revision.as_deref() == Some(rt.revision.as_str())
                });
                if unchanged {
                    continue;
                }
                valid.name.push(name.clone());
                valid.file.push(entry.file.clone());
                valid.revision.push(rt.revision.clone());
                valid.template.push(rt.template.clone());
                valid.template_revision.push(rt.template_revision.clone());
                valid
                    .spec
                    .push(serde_json::to_value(&rt.test.spec).unwrap_or_default());
            }
            None => {
                let errors = rec
                    .plan
                    .invalid
                    .iter()
                    .find(|i| i.file == entry.file)
                    .map(|i| i.errors.clone())
                    .unwrap_or_default();
                invalid.name.push(name.clone());
                invalid.file.push(entry.file.clone());
                invalid
                    .errors
                    .push(serde_json::to_value(&errors).unwrap_or_default());
            }
        }
    }
    if !valid.name.is_empty() {
        sqlx::query(
            "INSERT INTO perf_tests (name, file, revision, template, template_revision, commit, author, valid, errors, spec, updated_at)
             SELECT n, f, r, t, tr, $6, $7, true, '[]', s, now()
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $8::jsonb[]) AS x(n, f, r, t, tr, s)
             ON CONFLICT (name) DO UPDATE SET file = EXCLUDED.file, revision = EXCLUDED.revision, template = EXCLUDED.template,
               template_revision = EXCLUDED.template_revision, commit = EXCLUDED.commit, author = EXCLUDED.author,
               valid = true, errors = '[]', spec = EXCLUDED.spec, updated_at = now()",
        )
        .bind(&valid.name)
        .bind(&valid.file)
        .bind(&valid.revision)
        .bind(&valid.template)
        .bind(&valid.template_revision)
        .bind(&rec.head.sha)
        .bind(&author)
        .bind(&valid.spec)
        .execute(&mut *tx)
        .await?;
    }
    if !invalid.name.is_empty() {
        sqlx::query(
            "INSERT INTO perf_tests (name, file, commit, author, valid, errors, updated_at)
             SELECT n, f, $4, $5, false, e, now() FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS x(n, f, e)
             ON CONFLICT (name) DO UPDATE SET valid = false, errors = EXCLUDED.errors, commit = EXCLUDED.commit, updated_at = now()",
        )
        .bind(&invalid.name)
        .bind(&invalid.file)
        .bind(&invalid.errors)
        .bind(&rec.head.sha)
        .bind(&author)
        .execute(&mut *tx)
        .await?;
    }
    for removed in &rec.plan.removed {
        sqlx::query("DELETE FROM perf_tests WHERE name = $1")
            .bind(&removed.test)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO audit_log (actor, action, test, details) VALUES ($1, 'test.removed', $2, $3)")
            .bind(&author)
            .bind(&removed.test)
            .bind(serde_json::json!({"commit": rec.head.sha}))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM test_templates")
        .execute(&mut *tx)
        .await?;
    for t in &rec.catalog.templates {
        let Some(name) = &t.name else { continue };
        let content = t
            .resolved
            .as_ref()
            .map(|r| serde_json::to_value(&r.template).unwrap_or_default());
        let revision = t
            .resolved
            .as_ref()
            .map(|r| crate::spec::revision::template_revision(&r.template, &r.files));
        sqlx::query(
            "INSERT INTO test_templates (name, file, revision, valid, content, commit) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&t.file)
        .bind(revision)
        .bind(t.resolved.is_some())
        .bind(content)
        .bind(&rec.head.sha)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE sync_state SET last_commit = $3, last_synced_at = now(), last_attempt_at = now(), last_error = NULL WHERE repository = $1 AND branch = $2",
    )
    .bind(rec.repository)
    .bind(rec.branch)
    .bind(&rec.plan.to)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(queued)
}

/// Notes a failed sync attempt without touching the last synced commit.
pub async fn record_failure(
    pool: &PgPool,
    repository: &str,
    branch: &str,
    error: &str,
) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO sync_state (repository, branch, last_attempt_at, last_error) VALUES ($1, $2, now(), $3)
         ON CONFLICT (repository, branch) DO UPDATE SET last_attempt_at = now(), last_error = $3",
    )
    .bind(repository)
    .bind(branch)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Default)]
struct ValidRows {
    name: Vec<String>,
    file: Vec<String>,
    revision: Vec<String>,
    template: Vec<Option<String>>,
    template_revision: Vec<Option<String>>,
    spec: Vec<serde_json::Value>,
}

#[derive(Default)]
struct InvalidRows {
    name: Vec<String>,
    file: Vec<String>,
    errors: Vec<serde_json::Value>,
}
