//! perfsync's generic webhook: a documented, versioned JSON payload (`perfsync.dev/v1`),
//! signed like GitHub signs its webhooks: `X-Perfsync-Signature-256: sha256=<hex HMAC-SHA256
//! of the raw body under the sink's secret>`, so a receiver checks it with the same code.
//! https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
//!
//! Fields (README, "Commit status, merge-request comments and notifications"):
//! `version`, `event` (`run.finished`), `delivery` (the same on every attempt; drop repeats
//! by it), `run` {`id`, `test`, `revision`, `commit`, `trigger`, `author`, `status`,
//! `reason`, `start`, `end`, `url`}, `labels`, `metrics` {`p95Ms`, `errorRate`},
//! `baseline` {`run`, `p95Ms`, `p95ChangePercent`, `errorRateChangePoints`} or null,
//! `regression`, `recovered`, `matched` (the sink's `on:` entries the run matched). A field
//! perfsync knows nothing about is `null`; new fields may be added within `perfsync.dev/v1`,
//! a renamed or removed one makes `perfsync.dev/v2`.

use crate::record::outbox::RunEvent;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const VERSION: &str = "perfsync.dev/v1";
pub const EVENT: &str = "run.finished";
pub const SIGNATURE_HEADER: &str = "X-Perfsync-Signature-256";
pub const EVENT_HEADER: &str = "X-Perfsync-Event";
pub const DELIVERY_HEADER: &str = "X-Perfsync-Delivery";

/// The payload of a run's end.
pub fn payload(ev: &RunEvent, delivery: &str) -> Value {
    let baseline = ev.baseline_run.as_ref().map(|b| {
        json!({
            "run": b,
            "p95Ms": ev.baseline_p95_ms,
            "p95ChangePercent": ev.p95_change_percent,
            "errorRateChangePoints": ev.error_rate_change_points,
        })
    });
    json!({
        "version": VERSION,
        "event": EVENT,
        "delivery": delivery,
        "run": {
            "id": ev.run,
            "test": ev.test,
            "revision": ev.revision,
            "commit": ev.commit,
            "trigger": ev.trigger,
            "author": ev.author,
            "status": ev.verdict(),
            "reason": ev.reason,
            "start": ev.start,
            "end": ev.end,
            "url": ev.url,
        },
        "labels": ev.labels,
        "metrics": {"p95Ms": ev.p95_ms, "errorRate": ev.error_rate},
        "baseline": baseline,
        "regression": ev.regression,
        "recovered": ev.recovered,
        "matched": ev.matched,
    })
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_githubs_scheme() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload
        // "Hello, World!".
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn the_payload_is_versioned_and_complete() {
        let ev: RunEvent = serde_json::from_value(json!({
            "run": "r-1", "test": "checkout", "revision": "rev", "trigger": "change",
            "commit": "0123456789abcdef0123456789abcdef01234567", "status": "failed",
            "labels": {"team": "shop"}, "p95Ms": 312.0, "baselineRun": "r-0", "baselineP95Ms": 200.0,
            "p95ChangePercent": 56.0, "regression": true, "matched": ["failed", "regression"]
        }))
        .unwrap();
        let p = payload(&ev, "d1");
        assert_eq!(p["version"], "perfsync.dev/v1");
        assert_eq!(p["event"], "run.finished");
        assert_eq!(p["delivery"], "d1");
        assert_eq!(p["run"]["status"], "failed");
        assert_eq!(p["run"]["url"], Value::Null);
        assert_eq!(p["labels"]["team"], "shop");
        assert_eq!(p["metrics"]["p95Ms"], 312.0);
        assert_eq!(p["baseline"]["p95Ms"], 200.0);
        assert_eq!(p["matched"], json!(["failed", "regression"]));
    }
}
