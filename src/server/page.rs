//! The status page: server-rendered HTML, no JavaScript, refreshing itself. `/` shows the
//! sync, every test with its last verdict and a p95 history chart, and the active and queued
//! runs; `/runs/{id}` shows one run.

use super::AppState;
use crate::record::{results, runs};
use crate::results::RunSummary;
use std::fmt::Write as _;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2433;background:#f7f8fa}h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}th,td{padding:6px 10px;border-bottom:1px solid #e6e8ee;text-align:left;vertical-align:middle}\
th{background:#eef0f5;font-weight:600}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}.muted{color:#6b7280}\
code{font:12px ui-monospace,monospace;background:#eef0f5;padding:1px 4px;border-radius:3px}.card{background:#fff;padding:12px 16px;box-shadow:0 1px 2px #0001;margin-bottom:12px}\
pre{background:#0d1117;color:#e6edf3;padding:12px;overflow:auto;font-size:12px}a{color:#0969da}";

fn page(title: &str, refresh: bool, body: &str) -> Response {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    } else {
        ""
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}<meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        t = esc(title)
    );
    warp::reply::with_header(warp::reply::html(html), "cache-control", "no-store").into_response()
}

fn verdict_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "ok",
        "failed" | "error" | "timeout" => "bad",
        _ => "warn",
    }
}

/// A small inline SVG line of p95 values (oldest left).
pub fn sparkline(values: &[f64]) -> String {
    if values.is_empty() {
        return "<span class=\"muted\">no runs yet</span>".into();
    }
    let (w, h) = (160.0, 32.0);
    let max = values.iter().cloned().fold(f64::MIN, f64::max).max(1e-9);
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (v / max) * (h - 4.0)
            )
        })
        .collect();
    let last = points.last().cloned().unwrap_or_default();
    let (lx, ly) = last.split_once(',').unwrap_or(("0", "0"));
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"p95 history\"><polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/><circle cx=\"{lx}\" cy=\"{ly}\" r=\"3\" fill=\"#0969da\"/></svg>",
        points.join(" ")
    )
}

async fn index(state: Arc<AppState>) -> Response {
    let mut b = String::from("<h1>perfsync</h1><div class=\"muted\">GitOps for k6 load tests · refreshes every 5 s</div>");
    let Some(pool) = &state.pool else {
        return page("perfsync", true, &b);
    };
    let sync = sqlx::query_as::<_, (String, String, Option<String>, Option<chrono::DateTime<chrono::Utc>>, Option<String>)>(
        "SELECT repository, branch, last_commit, last_synced_at, last_error FROM sync_state ORDER BY repository LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    b.push_str("<h2>Sync</h2><div class=\"card\">");
    match sync {
        Some((repo, branch, commit, at, err)) => {
            let _ = write!(
                b,
                "Repository <code>{}</code> branch <code>{}</code><br>Last synced commit <code>{}</code> at {}",
                esc(&repo),
                esc(&branch),
                esc(commit.as_deref().map_or("–", |c| &c[..c.len().min(12)])),
                at.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            );
            if let Some(e) = err {
                let _ = write!(
                    b,
                    "<br><span class=\"bad\">Last sync failed:</span> {}",
                    esc(&e)
                );
            }
        }
        None => b.push_str("Not synced yet."),
    }
    b.push_str("</div>");

    let catalog = state.scheduler.as_ref().and_then(|s| s.catalog());
    b.push_str("<h2>Tests</h2><table><tr><th>Test</th><th>State</th><th>Last verdict</th><th>p95</th><th>p95 history</th><th>Last run</th></tr>");
    if let Some(c) = &catalog {
        for t in &c.tests {
            let name = t.name.clone().unwrap_or_else(|| t.file.clone());
            let history: Vec<RunSummary> = results::recent(pool, Some(&name), 20)
                .await
                .unwrap_or_default();
            let state_cell = match &t.resolved {
                Some(rt) if rt.test.spec.suspend => {
                    "<span class=\"warn\">suspended</span>".to_string()
                }
                Some(_) => "<span class=\"ok\">valid</span>".to_string(),
                None => "<span class=\"bad\">invalid</span>".to_string(),
            };
            let last = history.first();
            let verdict = last.map_or("<span class=\"muted\">–</span>".to_string(), |s| {
                let reg = s
                    .comparison
                    .as_ref()
                    .filter(|c| c.regression)
                    .map_or(String::new(), |_| {
                        " <span class=\"warn\">regression</span>".into()
                    });
                format!(
                    "<span class=\"{}\">{}</span>{reg}",
                    verdict_class(s.status.as_str()),
                    s.status.as_str()
                )
            });
            let p95 = last
                .and_then(|s| s.p95_ms())
                .map_or("–".to_string(), |v| format!("{v:.1} ms"));
            let mut values: Vec<f64> = history.iter().filter_map(|s| s.p95_ms()).collect();
            values.reverse();
            let run_link = last.map_or("–".to_string(), |s| {
                format!("<a href=\"/runs/{id}\">{id}</a>", id = esc(&s.run.id))
            });
            let _ = write!(b, "<tr><td><b>{}</b><br><span class=\"muted\">{}</span></td><td>{state_cell}</td><td>{verdict}</td><td>{p95}</td><td>{}</td><td>{run_link}</td></tr>", esc(&name), esc(&t.file), sparkline(&values));
        }
    }
    b.push_str("</table>");

    b.push_str("<h2>Active and queued runs</h2><table><tr><th>Run</th><th>Test</th><th>State</th><th>Since</th></tr>");
    let mut any = false;
    for r in runs::running(pool)
        .await
        .unwrap_or_default()
        .into_iter()
        .chain(runs::queued(pool).await.unwrap_or_default())
    {
        any = true;
        let since = r.started_at.unwrap_or(r.created_at).format("%H:%M:%S UTC");
        let _ = write!(b, "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td class=\"warn\">{}</td><td>{since}</td></tr>", esc(&r.test), esc(&r.status), id = esc(&r.id));
    }
    if !any {
        b.push_str("<tr><td colspan=\"4\" class=\"muted\">None</td></tr>");
    }
    b.push_str("</table>");
    page("perfsync", true, &b)
}

fn commit_link(repo: Option<&str>, commit: &str) -> String {
    let short = esc(&commit[..commit.len().min(12)]);
    match repo.map(|r| r.trim_end_matches(".git")) {
        Some(r) if r.starts_with("https://github.com/") || r.starts_with("https://gitlab.com/") => {
            format!(
                "<a href=\"{}/commit/{}\"><code>{short}</code></a>",
                esc(r),
                esc(commit)
            )
        }
        _ => format!("<code>{short}</code>"),
    }
}

async fn run_page(state: Arc<AppState>, id: String) -> Response {
    let Some(pool) = &state.pool else {
        return page("perfsync", false, "no database");
    };
    let Some(row) = runs::get(pool, &id).await.ok().flatten() else {
        let mut r = page(
            "unknown run",
            false,
            &format!(
                "<h1>No run <code>{}</code></h1><a href=\"/\">back</a>",
                esc(&id)
            ),
        );
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let summary = results::get(pool, &id).await.ok().flatten();
    let status = summary
        .as_ref()
        .map(|s| s.status.as_str().to_string())
        .unwrap_or(row.status.clone());
    let mut b = format!(
        "<a href=\"/\">← all tests</a><h1>Run {}</h1><div class=\"card\">Test <b>{}</b> · revision <code>{}</code> · commit {} · trigger {}<br>State <span class=\"{}\">{}</span>{}</div>",
        esc(&row.id),
        esc(&row.test),
        esc(crate::spec::revision::short(&row.revision)),
        row.commit.clone().or_else(|| summary.as_ref().and_then(|s| s.run.commit.clone())).as_deref().map_or("–".to_string(), |c| commit_link(state.repository_url.as_deref(), c)),
        esc(&row.trigger),
        verdict_class(&status),
        esc(&status),
        summary.as_ref().and_then(|s| s.reason.clone()).map_or(String::new(), |r| format!(" — {}", esc(&r)))
    );
    if let Some(s) = &summary {
        b.push_str("<h2>Thresholds</h2><table><tr><th>Metric</th><th>Threshold</th><th>Actual</th><th>Verdict</th></tr>");
        for t in &s.thresholds {
            let actual = t.actual.map_or(t.note.clone().unwrap_or_default(), |a| {
                format!(
                    "{a:.3}{}",
                    if t.approximate { " (approximate)" } else { "" }
                )
            });
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&t.metric),
                esc(&t.expression),
                esc(&actual),
                if t.ok { "ok" } else { "bad" },
                if t.ok { "pass" } else { "fail" }
            );
        }
        b.push_str("</table><h2>Metrics</h2><table><tr><th>Metric</th><th>Values</th></tr>");
        for (name, m) in &s.metrics {
            let vals = m.value_labels(" ", 2);
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(&vals.join(" · "))
            );
        }
        b.push_str("</table>");
        if let Some(c) = &s.comparison {
            let fmtp = |v: Option<f64>, unit: &str| {
                v.map_or("–".to_string(), |x| format!("{x:+.1}{unit}"))
            };
            let _ = write!(
                b,
                "<h2>Comparison</h2><div class=\"card\">Against <a href=\"/runs/{id}\">{id}</a>: p95 {}, error rate {}, throughput {} — {}</div>",
                fmtp(c.p95_change_percent, " %"),
                fmtp(c.error_rate_change_points, " points"),
                fmtp(c.throughput_change_percent, " %"),
                if c.regression { format!("<span class=\"warn\">regression: {}</span>", esc(&c.reasons.join("; "))) } else { "<span class=\"ok\">no regression</span>".into() },
                id = esc(&c.baseline_run)
            );
        }
    }
    if let Some(sched) = &state.scheduler {
        for (idx, lines) in sched.executor.log_tail(&id, 30) {
            let _ = write!(
                b,
                "<h2>Runner {idx} log (last lines)</h2><pre>{}</pre>",
                esc(&lines.join("\n"))
            );
        }
    }
    page(&format!("perfsync run {id}"), summary.is_none(), &b)
}

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let s1 = state.clone();
    let index_r = warp::get()
        .and(warp::path::end())
        .and(warp::any().map(move || s1.clone()))
        .then(index);
    let s2 = state;
    let run_r = warp::get()
        .and(warp::path!("runs" / String))
        .and(warp::any().map(move || s2.clone()))
        .then(|id, s| run_page(s, id));
    index_r.or(run_r).unify()
}
