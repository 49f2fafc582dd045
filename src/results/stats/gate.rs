//! The per-run gate: one metric of a new run against the last K accepted runs of its series.
//!
//! A regression needs both a significant difference (a t-test or z-score on log values, or
//! a robust IQR fence when the baseline is short) and an effect at least the policy's
//! tolerance. The value's measurement error is given the benefit of the doubt: the test
//! uses the point of the value's error interval closest to the baseline, so a shift smaller
//! than the error is never significant.

use super::sample::{mean, quantile_sorted, sorted};
use super::significance::test;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GateError {
    #[error("the significance level must lie in (0, 1), not {0}")]
    Alpha(f64),
    #[error("at least 2 earlier runs are needed to measure noise, not {0}")]
    MinRuns(usize),
    #[error("the window ({window}) must hold at least the minimum of runs ({min_runs})")]
    Window { window: usize, min_runs: usize },
    #[error("the minimum effect must be a finite number ≥ 0, not {0}")]
    MinEffect(f64),
    #[error("the robust fence must be a finite number > 0, not {0}")]
    Fence(f64),
    #[error("the upper-bound slack must be a finite number ≥ 0, not {0}")]
    Slack(f64),
    #[error("the noise limit must be a finite number ≥ 1, not {0}")]
    NoiseLimit(f64),
}

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Latency, error rate.
    HigherIsWorse,
    /// Request rate, checks rate.
    LowerIsWorse,
}

/// How values are compared and in what unit the effect is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Scale {
    /// Positive values whose noise is multiplicative (latencies, request rates): tested on
    /// logarithms, effect in percent of the baseline's geometric mean.
    Log,
    /// Rates in [0, 1] (error rate, checks rate), which may sit at 0: tested as they are,
    /// effect in percentage points.
    Points,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EffectUnit {
    Percent,
    Points,
}

/// How the new value is told from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// `robust` below `robustBelow` baseline runs, `student` from there on.
    #[default]
    Auto,
    /// Student's t-test with pooled variance. For a single new value this is the prediction
    /// interval test: t = (x − mean) / (s·√(1 + 1/K)), K − 1 degrees of freedom.
    Student,
    /// Welch's t-test (unequal variances); needs two or more current values (a window of
    /// new runs), and is Student's test for one.
    Welch,
    /// z = (x − mean) / s against the normal: ignores that s is itself estimated, so it
    /// cries wolf more than the t-tests on short baselines.
    ZScore,
    /// Tukey's fences: significant beyond Q3 + fence·IQR or below Q1 − fence·IQR; an
    /// outlier in the baseline hardly moves them. No p-value.
    Robust,
}

/// How far a value may be from the truth.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ErrorBound {
    /// Exact (k6's own value, counts).
    #[default]
    Exact,
    /// Within ± `fraction` of the value (histogram bucket width: 0.007 for ±0.7 %).
    Relative { fraction: f64 },
    /// At or above the truth, by an unknown amount (the worst runner's percentile standing
    /// for several runners'); the gate assumes at most `upperBoundSlack` above.
    UpperBound,
}

/// One run's value of the metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub run_id: String,
    pub value: f64,
    #[serde(default)]
    pub bound: ErrorBound,
}

impl Observation {
    pub fn exact(run_id: impl Into<String>, value: f64) -> Self {
        Observation {
            run_id: run_id.into(),
            value,
            bound: ErrorBound::Exact,
        }
    }
}

/// What a metric is: which way is worse, its scale, and the smallest effect that counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricRule {
    pub direction: Direction,
    pub scale: Scale,
    /// Percent for `log`, points for `points` (the policy's tolerance).
    pub min_effect: f64,
}

impl MetricRule {
    /// A latency (p50/p95/p99, a custom Trend), tolerance in percent.
    pub fn latency(tolerance_percent: f64) -> Self {
        Self::new(Direction::HigherIsWorse, Scale::Log, tolerance_percent)
    }
    /// `http_req_failed`'s rate, tolerance in points.
    pub fn error_rate(tolerance_points: f64) -> Self {
        Self::new(Direction::HigherIsWorse, Scale::Points, tolerance_points)
    }
    /// `http_reqs`' rate (requests per second), tolerance in percent.
    pub fn request_rate(tolerance_percent: f64) -> Self {
        Self::new(Direction::LowerIsWorse, Scale::Log, tolerance_percent)
    }
    /// `checks`' rate, tolerance in points.
    pub fn checks_rate(tolerance_points: f64) -> Self {
        Self::new(Direction::LowerIsWorse, Scale::Points, tolerance_points)
    }
    pub fn new(direction: Direction, scale: Scale, min_effect: f64) -> Self {
        MetricRule {
            direction,
            scale,
            min_effect,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct GateConfig {
    pub method: Method,
    /// Significance level (two-sided) of the t-tests and the z-score.
    pub alpha: f64,
    /// Fewer earlier runs than this and the verdict is `inconclusive`.
    pub min_runs: usize,
    /// K: only the last `window` baseline runs are used.
    pub window: usize,
    /// `auto` uses the robust rule below this many baseline runs.
    pub robust_below: usize,
    /// Tukey's fence multiplier for `robust` (1.5 "outside", 3 "far out").
    pub robust_fence: f64,
    /// How far above the truth an `upperBound` value may be, as a fraction (0.05: the
    /// worst-runner rule measured 1–5 % high with 3–5 runners).
    pub upper_bound_slack: f64,
    /// `inconclusive` when the smallest effect the test could call significant is more than
    /// this many times the minimum effect: the baseline is too noisy to judge at that
    /// tolerance. `None` turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_limit: Option<f64>,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            method: Method::Auto,
            alpha: 0.01,
            min_runs: 3,
            window: 10,
            robust_below: 8,
            robust_fence: 3.0,
            upper_bound_slack: 0.05,
            noise_limit: Some(3.0),
        }
    }
}

impl GateConfig {
    pub fn validate(&self) -> Result<(), GateError> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(GateError::Alpha(self.alpha));
        }
        if self.min_runs < 2 {
            return Err(GateError::MinRuns(self.min_runs));
        }
        if self.window < self.min_runs {
            return Err(GateError::Window {
                window: self.window,
                min_runs: self.min_runs,
            });
        }
        if !(self.robust_fence.is_finite() && self.robust_fence > 0.0) {
            return Err(GateError::Fence(self.robust_fence));
        }
        if !(self.upper_bound_slack.is_finite() && self.upper_bound_slack >= 0.0) {
            return Err(GateError::Slack(self.upper_bound_slack));
        }
        if let Some(l) = self.noise_limit {
            if !(l.is_finite() && l >= 1.0) {
                return Err(GateError::NoiseLimit(l));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    Inconclusive,
}

/// Why a verdict is `inconclusive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum InconclusiveReason {
    /// Fewer usable baseline runs than `minRuns`.
    TooFewRuns,
    /// The effect reaches the minimum but is not significant, or the baseline is too noisy
    /// for the test to see an effect near the minimum (`noiseLimit`).
    TooNoisy,
    /// The new value is missing, not finite, or not positive on a log scale.
    NoValue,
}

/// The gate's answer for one metric of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<InconclusiveReason>,
    /// The method applied (`auto` resolved, `welch` on one value becomes `student`).
    pub method: Method,
    /// Two-sided p-value (t-tests, z-score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// t, z, or for `robust` the distance from the median in IQRs; absent when the
    /// baseline has no spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The change from the baseline as observed: positive when the value rose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    /// The smallest change the value's error bound allows, which is what was judged; absent
    /// for exact values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_within_bound: Option<f64>,
    pub effect_unit: EffectUnit,
    pub min_effect: f64,
    /// The smallest effect the test would have called significant with this baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectable_effect: Option<f64>,
    /// The baseline's centre in the metric's unit: geometric mean (log scale), mean, or
    /// median (`robust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_center: Option<f64>,
    /// The runs the value was compared with, oldest first.
    pub baseline_runs: Vec<String>,
    /// Whether this run may join the baseline of later runs: not when it regressed, nor
    /// when it moved past the tolerance the worse way and only the noise kept that from
    /// being significant. A missed step would otherwise creep into the baseline and hide
    /// itself from every later run. An acknowledgement overrides this.
    pub joins_baseline: bool,
}

/// Judges one new run's value against earlier runs (oldest first; the gate keeps the last
/// `config.window`). The caller passes only accepted runs: succeeded, not themselves
/// flagged unless acknowledged, of the same series.
pub fn gate_run(
    current: &Observation,
    baseline: &[Observation],
    rule: &MetricRule,
    config: &GateConfig,
) -> Result<GateResult, GateError> {
    gate(std::slice::from_ref(current), baseline, rule, config)
}

/// [`gate_run`] for one or more current values: several new runs judged together (Welch's
/// test needs two or more).
pub fn gate(
    current: &[Observation],
    baseline: &[Observation],
    rule: &MetricRule,
    config: &GateConfig,
) -> Result<GateResult, GateError> {
    config.validate()?;
    if !(rule.min_effect.is_finite() && rule.min_effect >= 0.0) {
        return Err(GateError::MinEffect(rule.min_effect));
    }
    let scale = Transform(rule.scale);
    let window = &baseline[baseline.len().saturating_sub(config.window)..];
    let (runs, base): (Vec<String>, Vec<f64>) = window
        .iter()
        .filter_map(|o| scale.to(o.value).map(|u| (o.run_id.clone(), u)))
        .unzip();
    let mut result = GateResult {
        verdict: Verdict::Inconclusive,
        reason: None,
        method: config.method,
        p_value: None,
        score: None,
        effect: None,
        effect_within_bound: None,
        effect_unit: scale.unit(),
        min_effect: rule.min_effect,
        detectable_effect: None,
        baseline_center: None,
        baseline_runs: runs,
        joins_baseline: false,
    };
    let observed: Option<Vec<f64>> = current.iter().map(|o| scale.to(o.value)).collect();
    let observed = match observed {
        Some(v) if !v.is_empty() => v,
        _ => {
            result.reason = Some(InconclusiveReason::NoValue);
            return Ok(result);
        }
    };
    if base.len() < config.min_runs {
        result.reason = Some(InconclusiveReason::TooFewRuns);
        result.joins_baseline = true;
        return Ok(result);
    }
    let method = resolve(config, base.len(), observed.len());
    result.method = method;
    let center = if method == Method::Robust {
        quantile_sorted(&sorted(&base), 0.5)
    } else {
        mean(&base)
    };
    // Benefit of the doubt: each value moves within its error interval towards the centre.
    let judged: Vec<f64> = current
        .iter()
        .zip(&observed)
        .map(|(o, &u)| {
            let (lo, hi) = scale.interval(o, u, config.upper_bound_slack);
            // Not f64::clamp, which panics on a reversed interval.
            center.max(lo).min(hi)
        })
        .collect();
    let pick = |xs: &[f64]| {
        if method == Method::Robust {
            quantile_sorted(&sorted(xs), 0.5)
        } else {
            mean(xs)
        }
    };
    let (seen, tested) = (pick(&observed), pick(&judged));
    result.baseline_center = Some(scale.from(center));
    result.effect = Some(scale.effect(seen, center));
    let effect = scale.effect(tested, center);
    if current.iter().any(|o| o.bound != ErrorBound::Exact) {
        result.effect_within_bound = Some(effect);
    }
    let test = test(method, &base, &judged, tested, center, config);
    result.p_value = test.p_value;
    result.score = test.score.filter(|s| s.is_finite());
    let detectable = scale.effect(center + test.detectable, center).abs();
    result.detectable_effect = Some(detectable);
    let big = rule.min_effect > 0.0 && effect.abs() >= rule.min_effect;
    let reaches = effect != 0.0 && effect.abs() >= rule.min_effect;
    let worse = match rule.direction {
        Direction::HigherIsWorse => effect > 0.0,
        Direction::LowerIsWorse => effect < 0.0,
    };
    let too_noisy = config
        .noise_limit
        .is_some_and(|l| rule.min_effect > 0.0 && detectable > l * rule.min_effect);
    (result.verdict, result.reason) = if test.significant && reaches {
        let v = if worse {
            Verdict::Regressed
        } else {
            Verdict::Improved
        };
        (v, None)
    } else if big || too_noisy {
        (Verdict::Inconclusive, Some(InconclusiveReason::TooNoisy))
    } else {
        (Verdict::Unchanged, None)
    };
    result.joins_baseline = match result.verdict {
        Verdict::Regressed => false,
        Verdict::Inconclusive => !(big && worse),
        Verdict::Improved | Verdict::Unchanged => true,
    };
    Ok(result)
}

fn resolve(config: &GateConfig, baseline: usize, current: usize) -> Method {
    match config.method {
        Method::Auto if baseline < config.robust_below => Method::Robust,
        Method::Auto => Method::Student,
        Method::Welch if current < 2 => Method::Student,
        m => m,
    }
}

/// Log or linear, and the unit the effect is told in.
#[derive(Clone, Copy)]
struct Transform(Scale);

impl Transform {
    fn to(self, v: f64) -> Option<f64> {
        match self.0 {
            Scale::Log if v.is_finite() && v > 0.0 => Some(v.ln()),
            Scale::Points if v.is_finite() => Some(v),
            _ => None,
        }
    }
    fn from(self, u: f64) -> f64 {
        match self.0 {
            Scale::Log => u.exp(),
            Scale::Points => u,
        }
    }
    fn unit(self) -> EffectUnit {
        match self.0 {
            Scale::Log => EffectUnit::Percent,
            Scale::Points => EffectUnit::Points,
        }
    }
    /// Percent of the baseline's (geometric) centre, or points of a 0–1 rate.
    fn effect(self, u: f64, center: f64) -> f64 {
        match self.0 {
            Scale::Log => (u - center).exp_m1() * 100.0,
            Scale::Points => (u - center) * 100.0,
        }
    }
    /// Where the true value may lie, in transformed units.
    fn interval(self, o: &Observation, u: f64, slack: f64) -> (f64, f64) {
        let (lo, hi) = match o.bound {
            ErrorBound::Exact => return (u, u),
            ErrorBound::Relative { fraction } if fraction.is_finite() && fraction > 0.0 => (
                o.value * (1.0 - fraction.min(1.0)),
                o.value * (1.0 + fraction),
            ),
            ErrorBound::Relative { .. } => return (u, u),
            ErrorBound::UpperBound => (o.value / (1.0 + slack), o.value),
        };
        let lo = self.to(lo).unwrap_or(f64::NEG_INFINITY).min(u);
        (lo, self.to(hi).unwrap_or(u).max(u))
    }
}
