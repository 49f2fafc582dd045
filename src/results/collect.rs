//! Collecting a run's figures: merge the runners' summaries, then take percentiles from
//! Prometheus when one is configured. Prometheus being down never stops a summary: the
//! runners' estimates stay, marked approximate, with a note. Prometheus's figures replace
//! them only when its series under the run's labels hold exactly the samples the run's own
//! runners counted, so samples another run wrote under this run's `testid` never count.

use super::build::merged_metrics_tracking;
use super::prometheus::{enrich, Prometheus, RunLabels};
use super::report::RunReport;
use super::summary::MetricSummary;
use std::collections::BTreeMap;

pub async fn collect(
    report: &RunReport,
    thresholds: &crate::spec::model::Thresholds,
    prometheus: Option<&Prometheus>,
) -> (BTreeMap<String, MetricSummary>, Vec<String>) {
    collect_tracking(report, thresholds, &[], prometheus).await
}

/// [`collect`], keeping the custom metrics `tracked` (`trackedTrends`) as well.
pub async fn collect_tracking(
    report: &RunReport,
    thresholds: &crate::spec::model::Thresholds,
    tracked: &[String],
    prometheus: Option<&Prometheus>,
) -> (BTreeMap<String, MetricSummary>, Vec<String>) {
    let mut metrics = merged_metrics_tracking(report, thresholds, tracked);
    let notes = match prometheus {
        Some(p) => {
            // The runners' counts are the whole run only when every runner handed one over.
            let verifiable =
                !report.runners.is_empty() && report.runners.iter().all(|r| r.summary.is_some());
            enrich(
                p,
                &mut metrics,
                &RunLabels::of(report),
                report.end,
                verifiable,
            )
            .await
        }
        None => Vec::new(),
    };
    (metrics, notes)
}
