//! Judging a run: the spec's thresholds over the merged metrics (so several runners pass or
//! fail as one run), combined with how the run ended and the runners' exit codes.

use super::report::{Ending, RunnerReport};
use super::summary::{EndState, MetricSummary, ThresholdResult};
use crate::spec::threshold::{parse_expr, parse_metric_key, Aggregate, MetricKey};
use std::collections::BTreeMap;

/// k6's spelling of a percentile value: `p(95)`, `p(99.9)`.
pub fn percentile_key(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("p({})", p as i64)
    } else {
        format!("p({p})")
    }
}

fn value_key(agg: Aggregate) -> String {
    match agg {
        Aggregate::Percentile(p) => percentile_key(p),
        Aggregate::Avg => "avg".into(),
        Aggregate::Min => "min".into(),
        Aggregate::Max => "max".into(),
        Aggregate::Med => "med".into(),
        Aggregate::Rate => "rate".into(),
        Aggregate::Count => "count".into(),
        Aggregate::Value => "value".into(),
    }
}

/// The merged metric a threshold names, matching sub-metric selectors by their tags.
pub fn find_metric<'a>(
    metrics: &'a BTreeMap<String, MetricSummary>,
    key: &MetricKey,
) -> Option<(&'a String, &'a MetricSummary)> {
    metrics
        .iter()
        .find(|(k, _)| parse_metric_key(k).is_ok_and(|mk| mk == *key))
}

pub fn judge(
    thresholds: &crate::spec::model::Thresholds,
    metrics: &BTreeMap<String, MetricSummary>,
) -> Vec<ThresholdResult> {
    let mut out = Vec::new();
    for (metric, entries) in thresholds {
        for entry in entries {
            let expression = entry.expression().to_string();
            let result = |actual: Option<f64>,
                          ok: bool,
                          approximate: bool,
                          note: Option<String>| ThresholdResult {
                metric: metric.clone(),
                expression: expression.clone(),
                actual,
                ok,
                approximate,
                note,
            };
            let (Ok(key), Ok(expr)) = (parse_metric_key(metric), parse_expr(&expression)) else {
                out.push(result(
                    None,
                    false,
                    false,
                    Some("the threshold does not parse".into()),
                ));
                continue;
            };
            let Some((_, m)) = find_metric(metrics, &key) else {
                out.push(result(
                    None,
                    false,
                    false,
                    Some("no samples of this metric were recorded".into()),
                ));
                continue;
            };
            let vk = value_key(expr.aggregate);
            match m.values.get(&vk) {
                Some(actual) => out.push(result(
                    Some(*actual),
                    expr.op.holds(*actual, expr.value),
                    m.approximate.contains(&vk),
                    None,
                )),
                None => out.push(result(
                    None,
                    false,
                    false,
                    Some(format!("the metric has no `{vk}` value")),
                )),
            }
        }
    }
    out
}

/// k6's exit codes (k6 `errext/exitcodes`).
pub mod exit {
    pub const THRESHOLDS: i32 = 99;
    pub const SETUP_TIMEOUT: i32 = 100;
    pub const TEARDOWN_TIMEOUT: i32 = 101;
    pub const GENERIC_TIMEOUT: i32 = 102;
    pub const GENERIC_ENGINE: i32 = 103;
    pub const INVALID_CONFIG: i32 = 104;
    pub const EXTERNAL_ABORT: i32 = 105;
    pub const SCRIPT_EXCEPTION: i32 = 107;
    pub const SCRIPT_ABORTED: i32 = 108;
}

/// Thresholds a runner's own summary reports as crossed, as `metric: expression`.
fn crossed_on_runner(r: &RunnerReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(metrics) = r
        .summary
        .as_ref()
        .and_then(|s| s.get("metrics"))
        .and_then(|m| m.as_object())
    {
        for (name, m) in metrics {
            if let Some(th) = m.get("thresholds").and_then(|t| t.as_object()) {
                for (expr, v) in th {
                    if v.get("ok").and_then(|o| o.as_bool()) == Some(false) {
                        out.push((name.clone(), expr.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The end state and its reason.
pub fn end_state(
    ending: &Ending,
    runners: &[RunnerReport],
    results: &[ThresholdResult],
    spec_thresholds: &crate::spec::model::Thresholds,
) -> (EndState, Option<String>) {
    match ending {
        Ending::Timeout => {
            return (
                EndState::Timeout,
                Some("the run passed its timeout and was stopped".into()),
            )
        }
        Ending::Aborted(why) => return (EndState::Aborted, Some(why.clone())),
        Ending::Error(why) => return (EndState::Error, Some(why.clone())),
        Ending::Finished => {}
    }
    for r in runners {
        if let Some(reason) = &r.reason {
            return (
                EndState::Error,
                Some(format!("runner {}: {reason}", r.index)),
            );
        }
        match r.exit_code {
            Some(0) | Some(exit::THRESHOLDS) => {}
            Some(exit::EXTERNAL_ABORT) | Some(exit::GENERIC_ENGINE) => {
                return (
                    EndState::Aborted,
                    Some(format!(
                        "runner {} was stopped (exit {})",
                        r.index,
                        r.exit_code.unwrap_or_default()
                    )),
                )
            }
            Some(code) => {
                return (
                    EndState::Error,
                    Some(format!(
                        "runner {} failed: {}",
                        r.index,
                        describe_exit(code)
                    )),
                )
            }
            None => {
                return (
                    EndState::Error,
                    Some(format!("runner {} ended without an exit code", r.index)),
                )
            }
        }
    }
    // A runner's exit 99 counts only for thresholds of the script itself: the spec's are
    // judged here, over the merged run.
    let script_crossed: Vec<String> = runners
        .iter()
        .flat_map(crossed_on_runner)
        .filter(|(m, e)| {
            !spec_thresholds
                .get(m)
                .is_some_and(|es| es.iter().any(|x| x.expression() == e))
        })
        .map(|(m, e)| format!("{m}: {e}"))
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter(|t| !t.ok)
        .map(|t| format!("{}: {}", t.metric, t.expression))
        .collect();
    if !failed.is_empty() || !script_crossed.is_empty() {
        let mut all = failed;
        all.extend(script_crossed);
        all.dedup();
        return (
            EndState::Failed,
            Some(format!("thresholds crossed: {}", all.join("; "))),
        );
    }
    (EndState::Succeeded, None)
}

pub fn describe_exit(code: i32) -> String {
    let what = match code {
        exit::SETUP_TIMEOUT => "setup() timed out",
        exit::TEARDOWN_TIMEOUT => "teardown() timed out",
        exit::GENERIC_TIMEOUT => "a timeout",
        exit::INVALID_CONFIG => "invalid configuration",
        exit::SCRIPT_EXCEPTION => "the script threw an exception",
        exit::SCRIPT_ABORTED => "the script called test.abort()",
        109 => "k6 panicked",
        110 => "the test was marked failed",
        137 => "killed (out of memory?)",
        _ => "unexpected exit",
    };
    format!("{what} (exit {code})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::summary::MetricType;
    use crate::spec::model::ThresholdEntry;

    fn metrics() -> BTreeMap<String, MetricSummary> {
        let m = |kind, vals: &[(&str, f64)]| MetricSummary {
            kind,
            values: vals.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            sources: BTreeMap::new(),
            approximate: vec!["p(95)".into()],
            bounds: Default::default(),
        };
        BTreeMap::from([
            (
                "http_req_duration".to_string(),
                m(
                    MetricType::Trend,
                    &[
                        ("avg", 120.0),
                        ("min", 5.0),
                        ("med", 100.0),
                        ("max", 900.0),
                        ("p(95)", 450.0),
                        ("p(99.9)", 880.0),
                        ("count", 1000.0),
                    ],
                ),
            ),
            (
                "http_req_duration{expected_response:true}".to_string(),
                m(MetricType::Trend, &[("p(95)", 300.0)]),
            ),
            (
                "http_req_failed".to_string(),
                m(
                    MetricType::Rate,
                    &[("rate", 0.02), ("passes", 20.0), ("fails", 980.0)],
                ),
            ),
            (
                "http_reqs".to_string(),
                m(MetricType::Counter, &[("count", 1000.0), ("rate", 50.0)]),
            ),
            (
                "vus_max".to_string(),
                m(MetricType::Gauge, &[("value", 30.0)]),
            ),
        ])
    }

    fn th(pairs: &[(&str, &str)]) -> crate::spec::model::Thresholds {
        let mut out: BTreeMap<String, Vec<ThresholdEntry>> = BTreeMap::new();
        for (m, e) in pairs {
            out.entry(m.to_string())
                .or_default()
                .push(ThresholdEntry::Expr(e.to_string()));
        }
        out.into()
    }

    #[test]
    fn every_operator_and_aggregation_is_judged_over_the_merged_values() {
        let cases = [
            ("http_req_duration", "p(95)<500", true),
            ("http_req_duration", "p(95)<450", false),
            ("http_req_duration", "p(95)<=450", true),
            ("http_req_duration", "p(99.9)>=880", true),
            ("http_req_duration", "avg>120", false),
            ("http_req_duration", "min==5", true),
            ("http_req_duration", "max!=900", false),
            ("http_req_duration", "med===100", true),
            ("http_req_duration", "count>999", true),
            (
                "http_req_duration{expected_response:true}",
                "p(95)<301",
                true,
            ),
            (
                "http_req_duration{ expected_response : true }",
                "p(95)<300",
                false,
            ),
            ("http_req_failed", "rate<0.01", false),
            ("http_req_failed", "rate<=0.02", true),
            ("http_reqs", "count>=1000", true),
            ("http_reqs", "rate>50", false),
            ("vus_max", "value<31", true),
        ];
        for (metric, expr, want) in cases {
            let r = judge(&th(&[(metric, expr)]), &metrics());
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].ok, want, "{metric} {expr}: {:?}", r[0]);
            assert!(r[0].actual.is_some());
        }
        let r = judge(&th(&[("http_req_duration", "p(95)<500")]), &metrics());
        assert!(r[0].approximate, "an estimated percentile is flagged");
    }

    #[test]
    fn malformed_missing_and_unknown_values_fail_with_a_note() {
        for (metric, expr, note) in [
            ("http_req_duration", "p95<1", "does not parse"),
            ("no_such_metric", "count>0", "no samples"),
            ("http_req_duration", "p(75)<100", "no `p(75)`"),
            ("http_req_duration", "rate<1", "no `rate`"),
        ] {
            let r = judge(&th(&[(metric, expr)]), &metrics());
            assert!(!r[0].ok);
            assert!(
                r[0].note.as_deref().unwrap_or("").contains(note),
                "{metric} {expr}: {:?}",
                r[0]
            );
        }
    }

    fn runner(
        index: u32,
        exit_code: Option<i32>,
        summary: Option<serde_json::Value>,
    ) -> RunnerReport {
        RunnerReport {
            index,
            exit_code,
            reason: None,
            summary,
        }
    }

    #[test]
    fn end_states_combine_endings_exit_codes_and_thresholds() {
        let none = crate::spec::model::Thresholds::new();
        let ok = runner(1, Some(0), None);
        assert_eq!(
            end_state(&Ending::Finished, &[ok.clone()], &[], &none).0,
            EndState::Succeeded
        );
        assert_eq!(
            end_state(&Ending::Timeout, &[ok.clone()], &[], &none).0,
            EndState::Timeout
        );
        assert_eq!(
            end_state(&Ending::Aborted("by api".into()), &[ok.clone()], &[], &none).0,
            EndState::Aborted
        );
        assert_eq!(
            end_state(&Ending::Error("stuck".into()), &[ok.clone()], &[], &none).0,
            EndState::Error
        );
        for (code, want) in [
            (105, EndState::Aborted),
            (103, EndState::Aborted),
            (107, EndState::Error),
            (104, EndState::Error),
            (108, EndState::Error),
            (109, EndState::Error),
        ] {
            assert_eq!(
                end_state(
                    &Ending::Finished,
                    &[ok.clone(), runner(2, Some(code), None)],
                    &[],
                    &none
                )
                .0,
                want,
                "exit {code}"
            );
        }
        let oom = RunnerReport {
            reason: Some("OOMKilled".into()),
            ..runner(2, None, None)
        };
        let (state, why) = end_state(&Ending::Finished, &[ok.clone(), oom], &[], &none);
        assert_eq!(state, EndState::Error);
        assert!(why.unwrap().contains("OOMKilled"));

        // A runner crossing a spec threshold on its own share does not fail the run when the
        // merged run passes; a script's own threshold crossed does.
        let spec = th(&[("http_req_duration", "p(95)<500")]);
        let crossed = |metric: &str, expr: &str| serde_json::json!({"metrics": {metric: {"type": "trend", "values": {}, "thresholds": {expr: {"ok": false}}}}});
        let passing = judge(&spec, &metrics());
        let r99 = runner(2, Some(99), Some(crossed("http_req_duration", "p(95)<500")));
        assert_eq!(
            end_state(&Ending::Finished, &[ok.clone(), r99], &passing, &spec).0,
            EndState::Succeeded
        );
        let script = runner(2, Some(99), Some(crossed("checks", "rate>0.99")));
        let (state, why) = end_state(&Ending::Finished, &[ok.clone(), script], &passing, &spec);
        assert_eq!(state, EndState::Failed);
        assert!(why.unwrap().contains("checks: rate>0.99"));
        let failing = judge(&th(&[("http_req_failed", "rate<0.01")]), &metrics());
        assert_eq!(
            end_state(&Ending::Finished, &[ok], &failing, &spec).0,
            EndState::Failed
        );
    }
}
