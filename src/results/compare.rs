//! Comparing a run with its baseline: p95, error rate and throughput, and whether the change
//! is a regression past the policy's tolerance.

use super::summary::{Comparison, RunSummary};
use crate::config::RegressionTolerance;

pub fn compare(
    current: &RunSummary,
    baseline: &RunSummary,
    tol: &RegressionTolerance,
) -> Comparison {
    let pct = |now: Option<f64>, before: Option<f64>| match (now, before) {
        (Some(n), Some(b)) if b > 0.0 => Some((n - b) / b * 100.0),
        _ => None,
    };
    let p95 = pct(current.p95_ms(), baseline.p95_ms());
    let errors = match (current.error_rate(), baseline.error_rate()) {
        (Some(n), Some(b)) => Some((n - b) * 100.0),
        _ => None,
    };
    let rps = pct(current.rps(), baseline.rps());
    let mut reasons = Vec::new();
    if let Some(p) = p95.filter(|p| *p > tol.p95_percent) {
        reasons.push(format!("p95 rose {p:.1}% (tolerance {}%)", tol.p95_percent));
    }
    if let Some(e) = errors.filter(|e| *e > tol.error_rate_points) {
        reasons.push(format!(
            "error rate rose {e:.2} points (tolerance {})",
            tol.error_rate_points
        ));
    }
    Comparison {
        baseline_run: baseline.run.id.clone(),
        p95_change_percent: p95,
        error_rate_change_points: errors,
        throughput_change_percent: rps,
        regression: !reasons.is_empty(),
        reasons,
    }
}
