//! The statistical regression gate of one run, and change points over a series' history.
//! Pure: the recorder loads the history and stores what this returns.
//!
//! A run belongs to a series ([`series_inputs`]): its test plus what changes what is
//! measured. Each run contributes one value per tracked metric ([`TRACKED`]); each value is
//! judged against the last K accepted runs of its series ([`judge`]). Accepted: succeeded,
//! and not itself flagged, unless acknowledged; an acknowledgement restarts the baseline at
//! the acknowledged run, so the new level is what later runs are compared with.

use super::stats::{
    self, ChangePoint, ChangePointConfig, ErrorBound, GateConfig, GateResult, MetricRule,
    Observation, SeriesInputs, Verdict,
};
use super::summary::{EndState, RunSummary, Source};
use crate::config::RegressionTolerance;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a native-histogram percentile from Prometheus may be off by: measured on a target
/// with a known delay distribution, med/p90/p95 within ±0.7 % and p99 up to 2.8 % high.
pub const HISTOGRAM_BOUND: f64 = 0.03;

/// The metrics every run is judged on: `(name, k6 metric, value, scale factor)`. Rates are
/// judged in percentage points (×100).
pub const TRACKED: [(&str, &str, &str, f64); 6] = [
    ("p50", "http_req_duration", "med", 1.0),
    ("p95", "http_req_duration", "p(95)", 1.0),
    ("p99", "http_req_duration", "p(99)", 1.0),
    ("errorRate", "http_req_failed", "rate", 100.0),
    ("requestRate", "http_reqs", "rate", 1.0),
    ("checksRate", "checks", "rate", 100.0),
];

/// The gate's answer for one run: its series and a verdict per tracked metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegressionReport {
    /// The run's series key ([`stats::series_key`]).
    pub series: String,
    /// Whether this run starts a new series (no earlier run of the test shares its key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_series: bool,
    pub metrics: BTreeMap<String, GateResult>,
    /// Some metric regressed.
    pub regressed: bool,
}

impl RegressionReport {
    pub fn regressed_metrics(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .filter(|(_, g)| g.verdict == Verdict::Regressed)
            .map(|(m, _)| m.as_str())
            .collect()
    }
}

/// The series inputs of a run of `spec` with bundle digest `content`.
pub fn series_inputs(
    test: &str,
    spec: &crate::spec::model::PerfTestSpec,
    content: &str,
    executor: &str,
) -> SeriesInputs {
    let ms = |d: crate::spec::duration::KDuration| d.as_duration().as_millis() as u64;
    let load = spec.load.as_ref();
    let runner = spec.runner.as_ref();
    let resources = runner.and_then(|r| r.resources.as_ref());
    SeriesInputs {
        test: test.to_string(),
        content_digest: content.to_string(),
        load: stats::LoadProfile {
            vus: load.and_then(|l| l.vus).unwrap_or(0),
            duration_ms: load.and_then(|l| l.duration).map(ms).unwrap_or(0),
            stages: load
                .map(|l| {
                    l.stages
                        .iter()
                        .map(|s| stats::LoadStage {
                            duration_ms: ms(s.duration),
                            target: s.target,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        parallelism: spec.parallelism.unwrap_or(1).max(1),
        runner_requests: resources.map(|r| r.requests.clone()).unwrap_or_default(),
        runner_limits: resources.map(|r| r.limits.clone()).unwrap_or_default(),
        targets: spec.targets.clone(),
        executor: executor.to_string(),
        runner_image: runner.and_then(|r| r.image.clone()),
    }
}

/// The tracked metrics of a run: [`TRACKED`] and, per custom Trend the spec names,
/// `<trend>:p95`.
pub fn tracked(trends: &[String]) -> Vec<String> {
    TRACKED
        .iter()
        .map(|(n, ..)| n.to_string())
        .chain(trends.iter().map(|t| format!("{t}:p95")))
        .collect()
}

/// The run's value of tracked metric `name`, with its error bound.
pub fn observation(s: &RunSummary, name: &str) -> Option<Observation> {
    let (metric, key, factor) = match TRACKED.iter().find(|(n, ..)| *n == name) {
        Some((_, metric, key, factor)) => (*metric, *key, *factor),
        None => (name.strip_suffix(":p95")?, "p(95)", 1.0),
    };
    let m = s.metrics.get(metric)?;
    let value = *m.values.get(key)? * factor;
    let bound = match m.bounds.get(key) {
        Some(b) => *b,
        // Summaries recorded before bounds were: the same rules.
        None if m.approximate.iter().any(|a| a == key) => ErrorBound::UpperBound,
        None if m.sources.get(key) == Some(&Source::Prometheus) => ErrorBound::Relative {
            fraction: HISTOGRAM_BOUND,
        },
        None => ErrorBound::Exact,
    };
    Some(Observation {
        run_id: s.run.id.clone(),
        value,
        bound,
    })
}

fn rule(name: &str, tol: &RegressionTolerance) -> MetricRule {
    match name {
        "errorRate" => MetricRule::error_rate(tol.error_rate_points),
        "checksRate" => MetricRule::checks_rate(tol.error_rate_points),
        "requestRate" => MetricRule::request_rate(tol.p95_percent),
        _ => MetricRule::latency(tol.p95_percent),
    }
}

/// Whether an earlier run of the series is part of the baseline: succeeded and not flagged.
/// An acknowledged run is, even when a regression failed it (`policy.regression.action:
/// fail`): its level is the accepted one.
pub fn accepted(s: &RunSummary, acknowledged: bool) -> bool {
    let flagged = s
        .regression
        .as_ref()
        .is_some_and(|r| r.regressed || !r.metrics.values().all(|g| g.joins_baseline));
    match s.status {
        EndState::Succeeded => acknowledged || !flagged,
        EndState::Failed => acknowledged && s.regression.as_ref().is_some_and(|r| r.regressed),
        _ => false,
    }
}

/// The runs a new run of `series` is compared with: of `history` (the test's earlier runs,
/// oldest first), those of the series that are accepted, from the latest acknowledged one
/// on. After an acknowledgement, a run flagged against the old level (none of its baseline
/// runs is at or after the acknowledged one) belongs to the new level and counts.
pub fn baseline<'a>(
    history: &'a [RunSummary],
    series: &str,
    acknowledged: &dyn Fn(&str) -> bool,
) -> Vec<&'a RunSummary> {
    let same: Vec<&RunSummary> = history
        .iter()
        .filter(|s| s.regression.as_ref().is_some_and(|r| r.series == series))
        .collect();
    let Some(from) = same.iter().rposition(|s| acknowledged(&s.run.id)) else {
        return same.into_iter().filter(|s| accepted(s, false)).collect();
    };
    let new_level: std::collections::BTreeSet<&str> =
        same[from..].iter().map(|s| s.run.id.as_str()).collect();
    let judged_against_old = |s: &RunSummary| {
        s.regression.as_ref().is_some_and(|r| {
            r.metrics.values().all(|g| {
                g.baseline_runs
                    .iter()
                    .all(|b| !new_level.contains(b.as_str()))
            })
        })
    };
    same[from..]
        .iter()
        .filter(|s| accepted(s, acknowledged(&s.run.id) || judged_against_old(s)))
        .copied()
        .collect()
}

/// Judges `current` against `baseline` (oldest first) on every tracked metric it has.
pub fn judge(
    current: &RunSummary,
    series: &str,
    new_series: bool,
    baseline: &[&RunSummary],
    tol: &RegressionTolerance,
    config: &GateConfig,
    trends: &[String],
) -> Result<RegressionReport, stats::GateError> {
    let mut metrics = BTreeMap::new();
    for name in tracked(trends) {
        let name = name.as_str();
        let Some(obs) = observation(current, name) else {
            continue;
        };
        let base: Vec<Observation> = baseline
            .iter()
            .filter_map(|s| observation(s, name))
            .collect();
        metrics.insert(
            name.to_string(),
            stats::gate_run(&obs, &base, &rule(name, tol), config)?,
        );
    }
    let regressed = metrics.values().any(|g| g.verdict == Verdict::Regressed);
    Ok(RegressionReport {
        series: series.to_string(),
        new_series,
        metrics,
        regressed,
    })
}

/// A shift found in a series' history, named by its first run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shift {
    pub test: String,
    pub series: String,
    pub metric: String,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub end: String,
    #[serde(flatten)]
    pub point: ChangePoint,
}

/// Change points of every tracked metric over `runs` (one series, oldest first, succeeded).
pub fn shifts(
    test: &str,
    series: &str,
    runs: &[&RunSummary],
    config: &ChangePointConfig,
    trends: &[String],
) -> Result<Vec<Shift>, stats::ChangePointError> {
    let mut out = Vec::new();
    for name in tracked(trends) {
        let name = name.as_str();
        let points: Vec<(&RunSummary, f64)> = runs
            .iter()
            .filter_map(|s| observation(s, name).map(|o| (*s, o.value)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
        for cp in stats::change_points(&values, config)? {
            let Some((run, _)) = points.get(cp.index) else {
                continue;
            };
            out.push(Shift {
                test: test.to_string(),
                series: series.to_string(),
                metric: name.to_string(),
                run_id: run.run.id.clone(),
                commit: run.run.commit.clone(),
                end: run.run.end.clone(),
                point: cp,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::stats::{Method, Verdict};

    fn run(id: &str, status: EndState, regressed: bool, base: &[&str]) -> RunSummary {
        let gate = GateResult {
            verdict: if regressed {
                Verdict::Regressed
            } else {
                Verdict::Unchanged
            },
            reason: None,
            method: Method::Student,
            p_value: None,
            score: None,
            effect: None,
            effect_within_bound: None,
            effect_unit: stats::EffectUnit::Percent,
            min_effect: 10.0,
            detectable_effect: None,
            baseline_center: None,
            baseline_runs: base.iter().map(|b| b.to_string()).collect(),
            joins_baseline: !regressed,
        };
        let mut s: RunSummary = serde_json::from_value(serde_json::json!({
            "apiVersion": "perfsync.dev/v1alpha1", "kind": "RunSummary",
            "run": {"id": id, "test": "t", "revision": "r", "trigger": "change", "executor": "local",
                    "parallelism": 1, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:01Z",
                    "durationSeconds": 1.0},
            "status": "succeeded", "metrics": {}, "thresholds": [], "runners": []
        }))
        .expect("summary");
        s.status = status;
        s.regression = Some(RegressionReport {
            series: "s".into(),
            new_series: false,
            metrics: BTreeMap::from([("p95".to_string(), gate)]),
            regressed,
        });
        s
    }

    fn ids(v: Vec<&RunSummary>) -> Vec<&str> {
        v.into_iter().map(|s| s.run.id.as_str()).collect()
    }

    #[test]
    fn the_baseline_leaves_out_flagged_and_failed_runs_and_restarts_at_an_acknowledgement() {
        let history = vec![
            run("r1", EndState::Succeeded, false, &[]),
            run("r2", EndState::Error, false, &["r1"]),
            run("r3", EndState::Succeeded, false, &["r1"]),
            run("r4", EndState::Succeeded, true, &["r1", "r3"]),
            run("r5", EndState::Succeeded, true, &["r1", "r3"]),
            run("r6", EndState::Succeeded, false, &["r4", "r5"]),
            run("r7", EndState::Succeeded, true, &["r4", "r5", "r6"]),
        ];
        let none = |_: &str| false;
        assert_eq!(ids(baseline(&history, "s", &none)), ["r1", "r3", "r6"]);
        assert!(baseline(&history, "other", &none).is_empty());
        // r4 acknowledged: the new level starts there; r5 was flagged against the old level
        // and counts; r7 was flagged against the new one and does not.
        let acked = |id: &str| id == "r4";
        assert_eq!(ids(baseline(&history, "s", &acked)), ["r4", "r5", "r6"]);
    }

    #[test]
    fn custom_trends_are_tracked_by_their_p95() {
        let names = tracked(&["checkout".to_string()]);
        assert!(names.contains(&"p95".to_string()) && names.contains(&"checkout:p95".to_string()));
        let mut s = run("r1", EndState::Succeeded, false, &[]);
        s.metrics.insert(
            "checkout".into(),
            serde_json::from_value(serde_json::json!({"type": "trend", "values": {"p(95)": 12.5}}))
                .expect("metric"),
        );
        assert_eq!(observation(&s, "checkout:p95").map(|o| o.value), Some(12.5));
        assert!(observation(&s, "missing:p95").is_none());
    }
}
