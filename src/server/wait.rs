//! The long-poll of a run's end (`GET /api/v1/runs/{id}?wait=30s`): the answer comes when the
//! run has ended or the wait is over, whichever is first, so a CD gate needs no polling loop.
//! Any replica can answer: a trigger announces every state change of a run on a PostgreSQL
//! channel (`migrations/0004_run_events_notify.sql`), and each waiting request listens on it.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The longest wait one request may ask for: proxies in front of the daemon commonly cut idle
/// requests after 60 s, and a client simply asks again.
pub const MAX_WAIT: Duration = Duration::from_secs(55);
pub const CHANNEL: &str = "perfsync_run_events";
/// Each waiting request holds one PostgreSQL connection of its own; past this many at once, a
/// request is answered at once (the client asks again).
const MAX_WAITERS: usize = 64;
/// A notification lost while the listener reconnects is caught by looking again this often.
const RECHECK: Duration = Duration::from_secs(5);

fn waiters() -> &'static Semaphore {
    static W: OnceLock<Semaphore> = OnceLock::new();
    W.get_or_init(|| Semaphore::new(MAX_WAITERS))
}

/// Whether run `id` has ended; `None` for an unknown run.
async fn ended(pool: &PgPool, id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar::<_, bool>("SELECT ended_at IS NOT NULL FROM test_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Returns once run `id` has ended, is unknown, or `wait` is over.
pub async fn until_ended(pool: &PgPool, id: &str, wait: Duration) -> Result<(), sqlx::Error> {
    let Ok(_permit) = waiters().try_acquire() else {
        return Ok(());
    };
    // Listening first, then looking: an end between the two is not missed.
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    loop {
        if ended(pool, id).await? != Some(false) {
            return Ok(());
        }
        let next = deadline.min(Instant::now() + RECHECK);
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) if n.payload() == id => break,
                    Ok(_) => continue,
                    // The listener reconnects on its next call; look again now.
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(next) => break,
            }
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
    }
}
