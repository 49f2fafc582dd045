//! Merging the runners' end-of-test summaries into one: counts and rates summed and weighted
//! exactly, min and max exact; percentiles cannot be merged from summaries, so they come from
//! Prometheus when it has them and are otherwise the most conservative runner's, flagged.

use super::summary::{MetricSummary, MetricType, Source};
use std::collections::{BTreeMap, BTreeSet};

/// The metrics every summary keeps; others only when a threshold names them.
pub const STANDARD: [&str; 9] = [
    "http_reqs",
    "http_req_duration",
    "http_req_failed",
    "iterations",
    "vus_max",
    "checks",
    "data_sent",
    "data_received",
    "http_req_duration{expected_response:true}",
];

struct Part<'a> {
    kind: MetricType,
    values: &'a serde_json::Map<String, serde_json::Value>,
}

fn kind_of(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "rate" => MetricType::Rate,
        "trend" => MetricType::Trend,
        _ => return None,
    })
}

fn run_seconds(summary: &serde_json::Value) -> Option<f64> {
    summary
        .pointer("/state/testRunDurationMs")
        .and_then(|v| v.as_f64())
        .map(|ms| ms / 1000.0)
}

/// `keep`: metric keys (as k6 writes them) to keep besides [`STANDARD`].
pub fn merge(
    summaries: &[&serde_json::Value],
    keep: &BTreeSet<String>,
) -> BTreeMap<String, MetricSummary> {
    let duration = summaries
        .iter()
        .filter_map(|s| run_seconds(s))
        .fold(0.0_f64, f64::max);
    let mut parts: BTreeMap<String, Vec<Part>> = BTreeMap::new();
    for s in summaries {
        let Some(metrics) = s.get("metrics").and_then(|m| m.as_object()) else {
            continue;
        };
        for (name, m) in metrics {
            if !STANDARD.contains(&name.as_str()) && !keep.contains(name) {
                continue;
            }
            let (Some(kind), Some(values)) = (
                m.get("type").and_then(|t| t.as_str()).and_then(kind_of),
                m.get("values").and_then(|v| v.as_object()),
            ) else {
                continue;
            };
            parts
                .entry(name.clone())
                .or_default()
                .push(Part { kind, values });
        }
    }
    let single = summaries.len() <= 1;
    parts
        .into_iter()
        .filter_map(|(name, ps)| {
            let kind = ps.first()?.kind;
            let merged = merge_one(&name, kind, &ps, duration, single);
            Some((name, merged))
        })
        .collect()
}

fn get(p: &Part, key: &str) -> Option<f64> {
    p.values.get(key).and_then(|v| v.as_f64())
}

fn sum(ps: &[Part], key: &str) -> f64 {
    ps.iter().filter_map(|p| get(p, key)).sum()
}

fn merge_one(
    name: &str,
    kind: MetricType,
    ps: &[Part],
    duration: f64,
    single: bool,
) -> MetricSummary {
    let mut values = BTreeMap::new();
    let mut approximate = Vec::new();
    match kind {
        MetricType::Counter => {
            let count = sum(ps, "count");
            values.insert("count".into(), count);
            let rate = if duration > 0.0 {
                count / duration
            } else {
                sum(ps, "rate")
            };
            values.insert("rate".into(), rate);
        }
        MetricType::Rate => {
            let (passes, fails) = (sum(ps, "passes"), sum(ps, "fails"));
            values.insert("passes".into(), passes);
            values.insert("fails".into(), fails);
            values.insert(
                "rate".into(),
                if passes + fails > 0.0 {
                    passes / (passes + fails)
                } else {
                    0.0
                },
            );
        }
        MetricType::Gauge => {
            // Each runner has its own VUs, so VU gauges add up; other gauges cannot be merged
            // exactly and keep the largest value.
            let additive = name == "vus" || name == "vus_max";
            let value = if additive {
                sum(ps, "value")
            } else {
                ps.iter()
                    .filter_map(|p| get(p, "value"))
                    .fold(f64::MIN, f64::max)
            };
            values.insert("value".into(), value);
            if let Some(min) = ps.iter().filter_map(|p| get(p, "min")).reduce(f64::min) {
                values.insert("min".into(), if additive { sum(ps, "min") } else { min });
            }
            if let Some(max) = ps.iter().filter_map(|p| get(p, "max")).reduce(f64::max) {
                values.insert("max".into(), if additive { sum(ps, "max") } else { max });
            }
            if !additive && !single {
                approximate.push("value".into());
            }
        }
        MetricType::Trend => {
            let counts: Vec<f64> = ps.iter().map(|p| get(p, "count").unwrap_or(0.0)).collect();
            let total: f64 = counts.iter().sum();
            values.insert("count".into(), total);
            if let Some(min) = ps.iter().filter_map(|p| get(p, "min")).reduce(f64::min) {
                values.insert("min".into(), min);
            }
            if let Some(max) = ps.iter().filter_map(|p| get(p, "max")).reduce(f64::max) {
                values.insert("max".into(), max);
            }
            let weighted: f64 = ps
                .iter()
                .zip(&counts)
                .filter_map(|(p, c)| get(p, "avg").map(|a| a * c))
                .sum();
            if total > 0.0 {
                values.insert("avg".into(), weighted / total);
            } else if let Some(a) = ps.iter().find_map(|p| get(p, "avg")) {
                values.insert("avg".into(), a);
            }
            let quantile_keys: BTreeSet<&String> = ps
                .iter()
                .flat_map(|p| p.values.keys())
                .filter(|k| *k == "med" || k.starts_with("p("))
                .collect();
            for key in quantile_keys {
                // The largest runner quantile: never lower than the true merged one would be
                // for the slowest share of traffic, so thresholds judged on it err strict.
                let worst = ps
                    .iter()
                    .filter(|p| get(p, "count").unwrap_or(1.0) > 0.0)
                    .filter_map(|p| get(p, key))
                    .fold(f64::MIN, f64::max);
                if worst > f64::MIN {
                    values.insert(key.clone(), worst);
                    if !single {
                        approximate.push(key.clone());
                    }
                }
            }
        }
    }
    let bounds = approximate
        .iter()
        .map(|k| (k.clone(), super::stats::ErrorBound::UpperBound))
        .collect();
    MetricSummary {
        kind,
        values,
        sources: BTreeMap::new(),
        approximate,
        bounds,
    }
}

/// Puts a value measured elsewhere (Prometheus) in place of an estimate.
pub fn replace_value(
    m: &mut MetricSummary,
    key: &str,
    value: f64,
    source: Source,
    bound: Option<super::stats::ErrorBound>,
) {
    m.values.insert(key.to_string(), value);
    m.sources.insert(key.to_string(), source);
    m.approximate.retain(|k| k != key);
    match bound {
        Some(b) => m.bounds.insert(key.to_string(), b),
        None => m.bounds.remove(key),
    };
}
