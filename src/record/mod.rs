//! Record stage: PostgreSQL (sync state, runs, results, audit), later git write-back and Grafana.

pub mod db;
pub mod forge;
pub mod git_results;
pub mod grafana;
pub mod notify;
pub mod outbox;
pub mod recorder;
pub mod regressions;
pub mod results;
pub mod runs;
pub mod seal;
pub mod sync_state;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("sync of {repository}@{branch} lost a race: the state moved from {expected:?} to {found:?}; it will be planned again")]
    Conflict {
        repository: String,
        branch: String,
        expected: Option<String>,
        found: Option<String>,
    },
}
