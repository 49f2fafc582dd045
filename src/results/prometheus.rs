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

/// The labels that single out one run's series. `testid` is the run id (perfsync's
/// `--tag testid=<run>`); `instance_id` is the runner's index (1..=parallelism), set by the
/// executor (the local executor's `--tag instance_id=<i>`, the k6-operator's own); on
/// Kubernetes the operator also tags every sample `testrun_name=<TestRun>`.
///
/// A script can still set any of these tags on its own samples (k6 request and VU tags win
/// over `--tag`), so matching them keeps unrelated series out but proves nothing: before
/// Prometheus figures replace the runners' estimates, [`enrich`] checks that the series hold
/// exactly the samples the run's own runners counted (and their sum). Samples another run
/// wrote under this run's labels change both, and the figures are then not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLabels {
    pub testid: String,
    /// Runners of the run; `instance_id` is matched against 1..=runners.
    pub runners: u32,
    /// The TestRun's name (Kubernetes executor), matched as `testrun_name`.
    pub testrun_name: Option<String>,
}

/// Tag keys perfsync and the executors set on every sample of a run; a threshold's
/// sub-metric selector may not name them.
pub const RUN_LABELS: [&str; 3] = ["testid", "instance_id", "testrun_name"];

/// Up to this many runners, `instance_id` is matched exactly; beyond, as any positive number.
const EXACT_INSTANCE_IDS: u32 = 100;

impl RunLabels {
    pub fn of(report: &super::report::RunReport) -> RunLabels {
        RunLabels {
            testid: report.run_id.clone(),
            runners: report.parallelism,
            testrun_name: (report.executor == "kubernetes")
                .then(|| crate::spec::render::testrun_name(&report.test, &report.run_id)),
        }
    }

    fn matchers(&self) -> Vec<String> {
        let mut m = vec![format!("testid=\"{}\"", escape(&self.testid))];
        let ids = if self.runners <= EXACT_INSTANCE_IDS {
            (1..=self.runners)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("|")
        } else {
            "[1-9][0-9]*".to_string()
        };
        m.push(format!("instance_id=~\"{ids}\""));
        if let Some(name) = &self.testrun_name {
            m.push(format!("testrun_name=\"{}\"", escape(name)));
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Key(String),
    #[error("threshold metric `{key}`: `{label}` is not a Prometheus label name (letters, digits and `_`, not starting with a digit or `__`)")]
    LabelName { key: String, label: String },
    #[error("threshold metric `{key}`: `{label}` is set by perfsync and the executor on every sample of a run; a sub-metric cannot select it")]
    RunLabel { key: String, label: String },
}

/// Whether `s` is a Prometheus label name a selector may use (`__`-names are reserved).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// The series selector of a k6 metric over one run (`k6_<name>[_seconds]{…}`), and the factor
/// from Prometheus's unit to k6's (ms for time). Sub-metric tag keys must be Prometheus label
/// names other than the run's own labels; tag values become escaped PromQL string literals.
pub fn series_selector(metric_key: &str, run: &RunLabels) -> Result<(String, f64), QueryError> {
    let key = parse_metric_key(metric_key).map_err(QueryError::Key)?;
    let mut matchers = run.matchers();
    for (k, v) in &key.tags {
        if !is_label_name(k) {
            return Err(QueryError::LabelName {
                key: metric_key.to_string(),
                label: k.clone(),
            });
        }
        if RUN_LABELS.contains(&k.as_str()) {
            return Err(QueryError::RunLabel {
                key: metric_key.to_string(),
                label: k.clone(),
            });
        }
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
    Ok((format!("{series}{{{}}}", matchers.join(",")), scale))
}

/// The PromQL for quantile `q` (0–1) of a k6 trend over one run, in k6's unit (ms for time).
pub fn quantile_query(
    metric_key: &str,
    run: &RunLabels,
    q: f64,
) -> Result<(String, f64), QueryError> {
    let (selector, scale) = series_selector(metric_key, run)?;
    // k6's native histograms are cumulative over the run, and every runner pushes all of its
    // series until it ends: the latest sample of each series (the instant selector, evaluated
    // just after the end) summed over runners, URLs and statuses is the whole run.
    Ok((format!("histogram_quantile({q}, sum({selector}))"), scale))
}

/// The content of a double-quoted PromQL string literal: backslash, `"` and control characters
/// escaped as PromQL reads them (it knows `\\`, `\"`, `\n`, `\r`, `\t`, `\uXXXX`, and refuses
/// `\'` in a double-quoted string), so a value never ends the literal early.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Relative difference allowed between Prometheus's sum of a run's samples and the runners'
/// (avg × count): float rounding only.
const SUM_TOLERANCE: f64 = 1e-6;

/// Replaces the merged trends' percentiles with Prometheus's where it has them and where its
/// series hold exactly the run's own samples. `verifiable`: every runner handed over a
/// summary, so the runners' counts are the whole run. Returns notes.
pub async fn enrich(
    prom: &Prometheus,
    metrics: &mut BTreeMap<String, MetricSummary>,
    run: &RunLabels,
    end: DateTime<Utc>,
    verifiable: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    // Evaluated a little after the end so the last remote-write flush is in.
    let at = end + chrono::Duration::seconds(5);
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
        if keys.is_empty() {
            continue;
        }
        let (selector, scale) = match series_selector(name, run) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("percentiles stay the runners' estimates: {e}"));
                continue;
            }
        };
        let count = match prom
            .query(&format!("histogram_count(sum({selector}))"), at)
            .await
        {
            Ok(Some(c)) => c,
            // Nothing under this run's labels: the runners' figures stand.
            Ok(None) => continue,
            Err(e) => {
                notes.push(format!("percentiles are the runners' estimates: {e}"));
                return notes;
            }
        };
        if !verifiable {
            notes.push(format!(
                "`{name}`: percentiles stay the runners' estimates: a runner handed over no summary, so Prometheus's series cannot be checked against the run's own counts"
            ));
            continue;
        }
        let own_count = m.values.get("count").copied().unwrap_or(0.0);
        let own_sum = m.values.get("avg").map(|a| a * own_count / scale);
        let sum = match own_sum {
            Some(_) => match prom
                .query(&format!("histogram_sum(sum({selector}))"), at)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    notes.push(format!("percentiles are the runners' estimates: {e}"));
                    return notes;
                }
            },
            None => None,
        };
        let sum_differs = match (own_sum, sum) {
            (Some(own), Some(theirs)) => {
                (own - theirs).abs() > SUM_TOLERANCE * own.abs().max(theirs.abs()).max(1e-9)
            }
            (Some(_), None) => true,
            _ => false,
        };
        if (count - own_count).abs() >= 0.5 || sum_differs {
            notes.push(format!(
                "`{name}`: Prometheus holds {count} samples under run {}'s labels, its runners counted {own_count}{}: series from elsewhere carry this run's labels (or some never arrived); percentiles stay the runners' estimates",
                run.testid,
                if sum_differs && (count - own_count).abs() < 0.5 { ", with a different sum" } else { "" }
            ));
            continue;
        }
        // Exact bounds a quantile must stay within: a histogram's interpolation can land
        // above the run's own maximum.
        let (lo, hi) = (
            m.values.get("min").copied().unwrap_or(f64::NEG_INFINITY),
            m.values.get("max").copied().unwrap_or(f64::INFINITY),
        );
        for key in keys {
            // k6's own percentile (one runner) is exact: better than any histogram's.
            if !m.approximate.contains(&key) {
                continue;
            }
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
            let promql = format!("histogram_quantile({q}, sum({selector}))");
            match prom.query(&promql, at).await {
                Ok(Some(v)) => super::merge::replace_value(
                    m,
                    &key,
                    (v * scale).clamp(lo.min(hi), hi.max(lo)),
                    Source::Prometheus,
                    Some(super::stats::ErrorBound::Relative {
                        fraction: super::regression::HISTOGRAM_BOUND,
                    }),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn local(runners: u32) -> RunLabels {
        RunLabels {
            testid: "checkout-0123456789-1".into(),
            runners,
            testrun_name: None,
        }
    }

    #[test]
    fn a_selector_value_with_quotes_or_braces_stays_inside_its_string_literal() {
        let (q, scale) = quantile_query(
            r#"http_req_duration{name:a"}) or vector(1) #},group:x\y}"#,
            &local(2),
            0.95,
        )
        .unwrap();
        assert_eq!(scale, 1000.0);
        assert_eq!(
            q,
            r#"histogram_quantile(0.95, sum(k6_http_req_duration_seconds{testid="checkout-0123456789-1",instance_id=~"1|2",group="x\\y",name="a\"}) or vector(1) #}"}))"#
        );
        let (q, _) = quantile_query("http_req_duration{name:a}b}", &local(1), 0.5).unwrap();
        assert!(q.ends_with(r#"instance_id=~"1",name="a}b"}))"#), "{q}");
        let (q, _) = quantile_query("iterations{name:line\nbreak\u{7}'`}", &local(1), 0.5).unwrap();
        assert!(
            q.contains(r#"name="line\nbreak\u0007'`""#),
            "control characters are escaped, other quotes need not be: {q}"
        );
    }

    #[test]
    fn a_selector_key_that_is_no_label_name_or_a_run_label_is_refused() {
        for (key, label) in [
            (r#"http_req_duration{na"me:x}"#, r#"na"me"#),
            ("http_req_duration{my-tag:x}", "my-tag"),
            ("http_req_duration{1st:x}", "1st"),
            ("http_req_duration{__name__:up}", "__name__"),
            ("http_req_duration{a}b:x}", "a}b"),
            ("http_req_duration{x=\"1\":z}", "x=\"1\""),
        ] {
            let err = quantile_query(key, &local(1), 0.95).unwrap_err();
            assert_eq!(
                err,
                QueryError::LabelName {
                    key: key.into(),
                    label: label.into()
                },
                "{key}"
            );
        }
        for label in RUN_LABELS {
            let key = format!("http_req_duration{{{label}:other-run-1}}");
            assert_eq!(
                quantile_query(&key, &local(1), 0.95).unwrap_err(),
                QueryError::RunLabel {
                    key: key.clone(),
                    label: label.into()
                }
            );
        }
    }

    #[test]
    fn a_run_is_selected_by_its_runners_and_on_kubernetes_its_testrun() {
        let kube = RunLabels {
            testid: "api-0123456789-2".into(),
            runners: 3,
            testrun_name: Some("api-1a2b3c4d".into()),
        };
        let (s, _) = series_selector("http_reqs", &kube).unwrap();
        assert_eq!(
            s,
            r#"k6_http_reqs{testid="api-0123456789-2",instance_id=~"1|2|3",testrun_name="api-1a2b3c4d"}"#
        );
        let (s, _) = series_selector("http_reqs", &local(500)).unwrap();
        assert!(s.contains(r#"instance_id=~"[1-9][0-9]*""#), "{s}");
    }
}
