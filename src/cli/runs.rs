//! `perfsync runs list|show|compare`: results from PostgreSQL.

use super::{Format, EXIT_OK, EXIT_USAGE};
use crate::record::{db, results};
use crate::results::compare::compare;
use crate::results::summary::RunSummary;
use std::path::Path;

pub enum Action<'a> {
    List { test: Option<&'a str>, limit: i64 },
    Show { run: &'a str },
    Compare { a: &'a str, b: &'a str },
    Changes { test: Option<&'a str>, limit: i64 },
}

pub fn run(config_path: Option<&Path>, format: Format, action: Action) -> i32 {
    let (config, url) = match super::config_and_database(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let pool = match db::pool(&url) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        };
        let out = match action {
            Action::List { test, limit } => results::recent(&pool, test, limit).await.map(|runs| match format {
                Format::Json => serde_json::to_string_pretty(&runs).unwrap_or_default(),
                _ => list_text(&runs),
            }),
            Action::Show { run } => match results::get(&pool, run).await {
                Ok(Some(s)) => Ok(match format {
                    Format::Json => serde_json::to_string_pretty(&s).unwrap_or_default(),
                    _ => show_text(&s),
                }),
                Ok(None) => {
                    eprintln!("error: no recorded run `{run}`");
                    return EXIT_USAGE;
                }
                Err(e) => Err(e),
            },
            Action::Changes { test, limit } => crate::record::regressions::change_points(&pool, test, limit)
                .await
                .map(|list| match format {
                    Format::Json => serde_json::to_string_pretty(&list).unwrap_or_default(),
                    _ => changes_text(&list),
                }),
            Action::Compare { a, b } => match (results::get(&pool, a).await, results::get(&pool, b).await) {
                (Ok(Some(x)), Ok(Some(y))) => {
                    let c = compare(&y, &x, &config.policy.regression_tolerance);
                    Ok(match format {
                        Format::Json => serde_json::to_string_pretty(&c).unwrap_or_default(),
                        _ => format!(
                            "{b} against {a}\n  p95:        {}\n  error rate: {}\n  throughput: {}\n  regression: {}\n",
                            c.p95_change_percent.map_or("–".into(), |v| format!("{v:+.1} %")),
                            c.error_rate_change_points.map_or("–".into(), |v| format!("{v:+.2} points")),
                            c.throughput_change_percent.map_or("–".into(), |v| format!("{v:+.1} %")),
                            if c.regression { c.reasons.join("; ") } else { "no".into() }
                        ),
                    })
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => {
                    eprintln!("error: both runs must be recorded");
                    return EXIT_USAGE;
                }
            },
        };
        match out {
            Ok(text) => {
                println!("{}", text.trim_end());
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        }
    })
}

fn list_text(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<52} {:<10} {:>10} {:>8} {:>9}  {}\n",
        "RUN", "STATUS", "P95 (ms)", "ERRORS", "RPS", "ENDED"
    );
    for s in runs {
        out.push_str(&format!(
            "{:<52} {:<10} {:>10} {:>8} {:>9}  {}\n",
            s.run.id,
            s.status.as_str(),
            s.p95_ms().map_or("–".into(), |v| format!("{v:.1}")),
            s.error_rate()
                .map_or("–".into(), |v| format!("{:.2}%", v * 100.0)),
            s.rps().map_or("–".into(), |v| format!("{v:.1}")),
            s.run.end
        ));
    }
    out
}

fn changes_text(list: &[crate::results::regression::Shift]) -> String {
    let mut out = format!(
        "{:<28} {:<12} {:<52} {:>10} {:>10} {:>9} {:>10}\n",
        "TEST", "METRIC", "FIRST RUN", "BEFORE", "AFTER", "CHANGE", "P-VALUE"
    );
    for c in list {
        out.push_str(&format!(
            "{:<28} {:<12} {:<52} {:>10.2} {:>10.2} {:>9} {:>10.2e}\n",
            c.test,
            c.metric,
            c.run_id,
            c.point.mean_before,
            c.point.mean_after,
            c.point
                .change_percent
                .map_or("–".into(), |p| format!("{p:+.1}%")),
            c.point.p_value
        ));
    }
    out
}

fn show_text(s: &RunSummary) -> String {
    let mut out = format!(
        "run {}\n  test {} revision {} commit {}\n  status {}{}\n  {} → {} ({:.1} s), {} runner(s), {}\n\nthresholds\n",
        s.run.id,
        s.run.test,
        crate::spec::revision::short(&s.run.revision),
        s.run.commit.as_deref().unwrap_or("–"),
        s.status.as_str(),
        s.reason.as_deref().map_or(String::new(), |r| format!(" ({r})")),
        s.run.start,
        s.run.end,
        s.run.duration_seconds,
        s.run.parallelism,
        s.run.executor
    );
    for t in &s.thresholds {
        out.push_str(&format!(
            "  {} {} {}: {}\n",
            if t.ok { "✓" } else { "✗" },
            t.metric,
            t.expression,
            t.actual_text()
        ));
    }
    out.push_str("\nmetrics\n");
    for (name, m) in &s.metrics {
        let vals = m.value_labels("=", 3);
        out.push_str(&format!("  {name}: {}\n", vals.join(" ")));
    }
    if let Some(r) = &s.regression {
        out.push_str("\nstatistical gate (series ");
        out.push_str(r.series.get(..12).unwrap_or(&r.series));
        out.push_str(")\n");
        for (m, g) in &r.metrics {
            out.push_str(&format!(
                "  {m}: {:?}{}{} against {} run(s)\n",
                g.verdict,
                g.effect
                    .map_or(String::new(), |e| format!(", effect {e:+.2}")),
                g.p_value.map_or(String::new(), |p| format!(", p {p:.2e}")),
                g.baseline_runs.len()
            ));
        }
    }
    if let Some(c) = &s.comparison {
        out.push_str(&format!(
            "\nagainst {}: {}\n",
            c.baseline_run,
            if c.regression {
                c.reasons.join("; ")
            } else {
                "no regression".into()
            }
        ));
    }
    out
}
