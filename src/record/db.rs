use super::RecordError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects lazily-checked: the pool is created now, connections as needed, so a database
/// that is down at start makes `/readyz` fail instead of the process.
pub fn pool(url: &str) -> Result<PgPool, RecordError> {
    let opts = PgConnectOptions::from_str(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts))
}

pub async fn migrate(pool: &PgPool) -> Result<(), RecordError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Shows a database URL without its password.
pub fn redact(url: &str) -> String {
    crate::source::git::redact_url(url)
}
