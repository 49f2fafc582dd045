//! The significance tests behind the gate: Student's and Welch's t, the z-score, Tukey's
//! fences. Each says whether the difference is significant, its p-value or score, and the
//! smallest difference it would have called significant (so the gate can tell "unchanged"
//! from "too noisy to say").

use super::dist::{normal_critical, normal_two_sided, t_critical, t_two_sided};
use super::gate::{GateConfig, Method};
use super::sample::{quantile_sorted, sorted, variance};

pub struct TestOutcome {
    pub significant: bool,
    pub p_value: Option<f64>,
    pub score: Option<f64>,
    /// Distance from the centre (transformed units) at which the test turns significant.
    pub detectable: f64,
}

/// The gate's test of `x` (the new value, or the new values' mean or median, already moved
/// within its error bound) against the baseline's `center`, in transformed units.
pub fn test(
    method: Method,
    base: &[f64],
    judged: &[f64],
    x: f64,
    center: f64,
    config: &GateConfig,
) -> TestOutcome {
    let diff = x - center;
    let (n1, n2) = (base.len() as f64, judged.len() as f64);
    let v1 = variance(base);
    let v2 = variance(judged);
    let (se, df) = match method {
        Method::Robust => return robust(base, x, config.robust_fence),
        Method::ZScore => (v1.sqrt() / n2.sqrt(), f64::INFINITY),
        Method::Welch => {
            let (a, b) = (v1 / n1, v2 / n2);
            let df = (a + b).powi(2) / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
            ((a + b).sqrt(), df)
        }
        _ => {
            let df = n1 + n2 - 2.0;
            let pooled = ((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / df;
            ((pooled * (1.0 / n1 + 1.0 / n2)).sqrt(), df)
        }
    };
    let critical = if df.is_infinite() {
        normal_critical(config.alpha)
    } else {
        t_critical(config.alpha, df)
    };
    if se == 0.0 || !se.is_finite() || df.is_nan() {
        // No spread at all (an error rate that was always 0): any difference is certain.
        let certain = diff != 0.0;
        return TestOutcome {
            significant: certain,
            p_value: Some(if certain { 0.0 } else { 1.0 }),
            score: None,
            detectable: 0.0,
        };
    }
    let score = diff / se;
    let p = if df.is_infinite() {
        normal_two_sided(score)
    } else {
        t_two_sided(score, df)
    };
    TestOutcome {
        significant: p <= config.alpha,
        p_value: Some(p),
        score: Some(score),
        detectable: critical * se,
    }
}

/// Tukey's fences around the baseline's quartiles.
fn robust(base: &[f64], x: f64, fence: f64) -> TestOutcome {
    let s = sorted(base);
    let (q1, med, q3) = (
        quantile_sorted(&s, 0.25),
        quantile_sorted(&s, 0.5),
        quantile_sorted(&s, 0.75),
    );
    let iqr = q3 - q1;
    let (low, high) = (q1 - fence * iqr, q3 + fence * iqr);
    TestOutcome {
        significant: x > high || x < low,
        p_value: None,
        score: (iqr > 0.0).then(|| (x - med) / iqr),
        detectable: (high - med).max(med - low),
    }
}
