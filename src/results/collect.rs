//! Collecting a run's figures: merge the runners' summaries, then take percentiles from
//! Prometheus when one is configured. Prometheus being down never stops a summary: the
//! runners' estimates stay, marked approximate, with a note.

use super::build::merged_metrics;
use super::prometheus::{enrich, Prometheus};
use super::report::RunReport;
use super::summary::MetricSummary;
use std::collections::BTreeMap;

pub async fn collect(
    report: &RunReport,
    thresholds: &crate::spec::model::Thresholds,
    prometheus: Option<&Prometheus>,
) -> (BTreeMap<String, MetricSummary>, Vec<String>) {
    let mut metrics = merged_metrics(report, thresholds);
    let notes = match prometheus {
        Some(p) => enrich(p, &mut metrics, &report.run_id, report.start, report.end).await,
        None => Vec::new(),
    };
    (metrics, notes)
}
