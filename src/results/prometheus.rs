//! Percentiles from Prometheus: k6 writes each runner's samples by remote write as native
//! histograms tagged with the run's `testid`; summed over runners they give exact merged
//! quantiles (within one histogram bucket), which end-of-test summaries cannot.

use super::summary::{MetricSummary, MetricType, Source};
use crate::spec::threshold::parse_metric_key;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus at {url}: {message}")]
    Http { url: String, message: String },
    #[error("prometheus at {url}: unexpected answer: {message}")]
    Answer { url: String, message: String },
}

pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    pub fn new(base: &str) -> Prometheus {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Prometheus {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    /// An instant query; `None` when it returns no sample.
    pub async fn query(
        &self,
        promql: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<f64>, PrometheusError> {
        let url = format!("{}/api/v1/query", self.base);
        let err = |m: String| PrometheusError::Http {
            url: crate::source::git::redact_url(&self.base),
            message: m,
        };
        let resp = self
            .client
            .get(&url)
            .query(&[
                ("query", promql),
                (
                    "time",
                    &format!("{:.3}", at.timestamp_millis() as f64 / 1000.0),
                ),
            ])
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let body: serde_json::Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        if body.get("status").and_then(|s| s.as_str()) != Some("success") {
            return Err(PrometheusError::Answer {
                url: crate::source::git::redact_url(&self.base),
                message: body.to_string(),
            });
        }
        let value = body
            .pointer("/data/result/0/value/1")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        Ok(value)
    }
}

/// The PromQL for quantile `q` (0–1) of a k6 trend over one run, in k6's unit (ms for time).
pub fn quantile_query(metric_key: &str, run_id: &str, q: f64) -> Option<(String, f64)> {
    let key = parse_metric_key(metric_key).ok()?;
    let mut matchers = vec![format!("testid=\"{}\"", escape(run_id))];
    for (k, v) in &key.tags {
        matchers.push(format!("{k}=\"{}\"", escape(v)));
    }
    // k6 names time trends `<name>_seconds` in remote write; k6's summaries speak milliseconds.
    let is_time = key.name.contains("duration")
        || key.name.starts_with("http_req_")
        || key.name.ends_with("_time");
    let (series, scale) = if is_time {
        (format!("k6_{}_seconds", key.name), 1000.0)
    } else {
        (format!("k6_{}", key.name), 1.0)
    };
    // k6's native histograms are cumulative over the run, and every runner pushes all of its
    // series until it ends: the latest sample of each series (the instant selector, evaluated
    // just after the end) summed over runners, URLs and statuses is the whole run.
    Some((
        format!(
            "histogram_quantile({q}, sum({series}{{{}}}))",
            matchers.join(",")
        ),
        scale,
    ))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Replaces the merged trends' percentiles with Prometheus's where it has them. Returns notes.
pub async fn enrich(
    prom: &Prometheus,
    metrics: &mut BTreeMap<String, MetricSummary>,
    run_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<String> {
    let _ = start;
    let mut notes = Vec::new();
    for (name, m) in metrics
        .iter_mut()
        .filter(|(_, m)| m.kind == MetricType::Trend)
    {
        let keys: Vec<String> = m
            .values
            .keys()
            .filter(|k| *k == "med" || k.starts_with("p("))
            .cloned()
            .collect();
        for key in keys {
            let q = if key == "med" {
                0.5
            } else {
                match key
                    .trim_start_matches("p(")
                    .trim_end_matches(')')
                    .parse::<f64>()
                {
                    Ok(p) => p / 100.0,
                    Err(_) => continue,
                }
            };
            let Some((promql, scale)) = quantile_query(name, run_id, q) else {
                continue;
            };
            // Evaluated a little after the end so the last remote-write flush is in.
            match prom
                .query(&promql, end + chrono::Duration::seconds(5))
                .await
            {
                Ok(Some(v)) => super::merge::replace_value(m, &key, v * scale, Source::Prometheus),
                Ok(None) => {}
                Err(e) => {
                    notes.push(format!("percentiles are the runners' estimates: {e}"));
                    return notes;
                }
            }
        }
    }
    notes
}
