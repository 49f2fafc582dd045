//! The run summary perfsync records for every ended run (`perfsync.dev/v1alpha1`, `RunSummary`):
//! in `results/<test>/<run>.json`, in `test_results.summary`, and behind the API.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KIND_SUMMARY: &str = "RunSummary";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "RunSummary")]
pub struct RunSummary {
    pub api_version: String,
    pub kind: String,
    pub run: RunInfo,
    pub status: EndState,
    /// Why the run ended as it did, for anything but `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// k6 metrics merged over all runners, keyed as k6 names them (sub-metrics included).
    pub metrics: BTreeMap<String, MetricSummary>,
    pub thresholds: Vec<ThresholdResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The statistical gate: each tracked metric against the last accepted runs of the
    /// run's series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<super::regression::RegressionReport>,
    pub runners: Vec<RunnerResult>,
    /// Notes on where figures came from (Prometheus unreachable, a runner without summary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub id: String,
    pub test: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub trigger: RunTrigger,
    pub executor: String,
    pub parallelism: u32,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    Change,
    Schedule,
    Manual,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EndState {
    Succeeded,
    Failed,
    Error,
    Timeout,
    Aborted,
}

impl EndState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Succeeded => "succeeded",
            EndState::Failed => "failed",
            EndState::Error => "error",
            EndState::Timeout => "timeout",
            EndState::Aborted => "aborted",
        }
    }
    pub fn parse(s: &str) -> Option<EndState> {
        Some(match s {
            "succeeded" => EndState::Succeeded,
            "failed" => EndState::Failed,
            "error" => EndState::Error,
            "timeout" => EndState::Timeout,
            "aborted" => EndState::Aborted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Rate,
    Trend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Merged from the runners' end-of-test summaries.
    Runners,
    /// Queried from Prometheus by `testid` (percentiles from native histograms).
    Prometheus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// k6's value names: count, rate, avg, min, med, max, p(90), p(95), p(99), passes, fails, value.
    pub values: BTreeMap<String, f64>,
    /// Where each value came from, when not from the runners.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, Source>,
    /// Values that are estimates (percentiles of several runners without Prometheus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approximate: Vec<String>,
    /// How far each estimate may be from the truth: `upperBound` for a percentile taken from
    /// the worst runner, a relative bound for one from a Prometheus histogram. What the
    /// regression gate weighs; exact values have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bounds: BTreeMap<String, super::stats::ErrorBound>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdResult {
    pub metric: String,
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approximate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub baseline_run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_change_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_change_points: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_change_percent: Option<f64>,
    pub regression: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerResult {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub summary_found: bool,
}

impl MetricSummary {
    /// `name<sep>value` for each value, estimates marked with ≈.
    pub fn value_labels(&self, sep: &str, digits: usize) -> Vec<String> {
        self.values
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}{sep}{v:.digits$}{}",
                    if self.approximate.contains(k) {
                        "≈"
                    } else {
                        ""
                    }
                )
            })
            .collect()
    }
}

impl ThresholdResult {
    /// The actual value (marked when approximate), or why there is none.
    pub fn actual_text(&self) -> String {
        self.actual
            .map_or(self.note.clone().unwrap_or_default(), |a| {
                format!("{a:.3}{}", if self.approximate { " ≈" } else { "" })
            })
    }
}

impl RunSummary {
    pub fn metric_value(&self, metric: &str, value: &str) -> Option<f64> {
        self.metrics
            .get(metric)
            .and_then(|m| m.values.get(value))
            .copied()
    }
    pub fn p95_ms(&self) -> Option<f64> {
        self.metric_value("http_req_duration", "p(95)")
    }
    pub fn error_rate(&self) -> Option<f64> {
        self.metric_value("http_req_failed", "rate")
    }
    pub fn rps(&self) -> Option<f64> {
        self.metric_value("http_reqs", "rate")
    }
}
