//! From an executor's report to the run summary: merge, judge, compare. Pure; the Prometheus
//! lookup (I/O) happens before, in [`super::collect`].

use super::compare::compare;
use super::judge::{end_state, judge};
use super::merge::merge;
use super::report::RunReport;
use super::summary::{MetricSummary, RunInfo, RunSummary, RunnerResult, KIND_SUMMARY};
use crate::config::RegressionTolerance;
use std::collections::{BTreeMap, BTreeSet};

/// The merged metrics of a report (before any Prometheus enrichment).
pub fn merged_metrics(
    report: &RunReport,
    thresholds: &crate::spec::model::Thresholds,
) -> BTreeMap<String, MetricSummary> {
    merged_metrics_tracking(report, thresholds, &[])
}

/// [`merged_metrics`], keeping the custom metrics `tracked` too (`trackedTrends`).
pub fn merged_metrics_tracking(
    report: &RunReport,
    thresholds: &crate::spec::model::Thresholds,
    tracked: &[String],
) -> BTreeMap<String, MetricSummary> {
    let summaries: Vec<&serde_json::Value> = report
        .runners
        .iter()
        .filter_map(|r| r.summary.as_ref())
        .collect();
    // Threshold keys as the spec writes them; k6 writes sub-metric keys in its own spelling,
    // so keep every summary key whose parsed form matches one.
    let wanted: Vec<_> = thresholds
        .keys()
        .filter_map(|k| crate::spec::threshold::parse_metric_key(k).ok())
        .collect();
    let keep: BTreeSet<String> = summaries
        .iter()
        .filter_map(|s| s.get("metrics").and_then(|m| m.as_object()))
        .flat_map(|m| m.keys())
        .filter(|k| {
            tracked.contains(k)
                || crate::spec::threshold::parse_metric_key(k).is_ok_and(|mk| wanted.contains(&mk))
        })
        .cloned()
        .collect();
    merge(&summaries, &keep)
}

pub struct Inputs<'a> {
    pub report: &'a RunReport,
    pub thresholds: &'a crate::spec::model::Thresholds,
    pub metrics: BTreeMap<String, MetricSummary>,
    pub notes: Vec<String>,
    pub baseline: Option<&'a RunSummary>,
    pub tolerance: &'a RegressionTolerance,
}

pub fn summarize(i: Inputs) -> RunSummary {
    let r = i.report;
    let thresholds = judge(i.thresholds, &i.metrics);
    let (status, reason) = end_state(&r.ending, &r.runners, &thresholds, i.thresholds);
    let mut notes = i.notes;
    for runner in r.runners.iter().filter(|x| x.summary.is_none()) {
        notes.push(format!(
            "runner {} left no end-of-test summary; its figures are missing",
            runner.index
        ));
    }
    let mut summary = RunSummary {
        api_version: crate::spec::model::API_VERSION.into(),
        kind: KIND_SUMMARY.into(),
        run: RunInfo {
            id: r.run_id.clone(),
            test: r.test.clone(),
            revision: r.revision.clone(),
            commit: r.commit.clone(),
            author: r.author.clone(),
            trigger: r.trigger,
            executor: r.executor.clone(),
            parallelism: r.parallelism,
            start: r.start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            end: r.end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_seconds: (r.end - r.start).num_milliseconds().max(0) as f64 / 1000.0,
        },
        status,
        reason,
        metrics: i.metrics,
        thresholds,
        comparison: None,
        regression: None,
        runners: r
            .runners
            .iter()
            .map(|x| RunnerResult {
                index: x.index,
                exit_code: x.exit_code,
                reason: x.reason.clone(),
                summary_found: x.summary.is_some(),
            })
            .collect(),
        notes,
    };
    if let Some(base) = i.baseline {
        summary.comparison = Some(compare(&summary, base, i.tolerance));
    }
    summary
}
