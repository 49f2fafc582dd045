//! The long-lived sync tasks: one loop running one sync at a time, and the poll timer.

use super::triggers::{describe, needs_sync, Triggers};
use super::{SyncOutcome, Syncer};
use crate::server::Health;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, Instrument};

/// Runs syncs as triggers arrive until `shutdown` turns true. Each finished sync's outcome is
/// sent on `outcomes` (the scheduler's input) when given.
pub async fn sync_loop(
    mut syncer: Syncer,
    triggers: Arc<Triggers>,
    health: Arc<Health>,
    outcomes: Option<mpsc::Sender<SyncOutcome>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let batch = tokio::select! {
            b = triggers.next() => b,
            _ = shutdown.changed() => return,
        };
        if *shutdown.borrow() {
            return;
        }
        if !needs_sync(&batch, syncer.synced_commit()) {
            info!(trigger = %describe(&batch), "already synced at the announced commit");
            continue;
        }
        let trigger = describe(&batch);
        for t in &batch {
            syncer
                .metrics()
                .sync_triggers
                .get_or_create(&crate::metrics::TriggerLabel {
                    trigger: t.kind.clone(),
                })
                .inc();
        }
        let span = tracing::info_span!("sync", trigger = %trigger);
        let result = syncer.sync(&trigger).instrument(span).await;
        health
            .last_sync_failed
            .store(result.is_err(), Ordering::Relaxed);
        release_freed_memory();
        // A failed sync is retried on its own, with backoff, whatever else triggers syncs.
        let lost_race = matches!(
            &result,
            Err(super::SyncError::Record(
                crate::record::RecordError::Conflict { .. }
            ))
        );
        if lost_race {
            // Another process recorded this commit first: sync again at once, from what it
            // recorded, so this process's scheduler gets the catalog without a backoff.
            triggers.fire("retry", None);
        } else if result.is_err() {
            failures = failures.saturating_add(1);
            let delay = Duration::from_secs((2u64 << failures.min(5)).min(60));
            let t = triggers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                t.fire("retry", None);
            });
        } else {
            failures = 0;
        }
        if let (Ok(outcome), Some(tx)) = (result, &outcomes) {
            if tx.send(outcome).await.is_err() {
                return;
            }
        }
    }
}

/// Fires a `poll` trigger every `interval` plus up to `jitter`. An interval of zero disables it.
pub async fn poll_loop(
    triggers: Arc<Triggers>,
    interval: Duration,
    jitter: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        let _ = shutdown.changed().await;
        return;
    }
    loop {
        let extra = Duration::from_millis(fastrand::u64(0..=jitter.as_millis() as u64));
        tokio::select! {
            _ = tokio::time::sleep(interval + extra) => triggers.fire("poll", None),
            _ = shutdown.changed() => return,
        }
    }
}

/// Hands memory freed by a sync (parsing, diffs) back to the operating system, so an idle
/// daemon's footprint is what it keeps, not what a sync briefly needed.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
