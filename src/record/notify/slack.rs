//! Slack incoming webhooks: `POST <webhook URL>` with a JSON message, `blocks` (Block Kit)
//! and a `text` fallback for notifications and clients that do not show blocks; Slack
//! answers `200 ok`, or a 4xx naming what it refused (`invalid_blocks`, `no_service`, …).
//! https://api.slack.com/messaging/webhooks
//! https://api.slack.com/reference/block-kit/blocks (header, section, context, actions)
//! https://api.slack.com/reference/surfaces/formatting#escaping (`&`, `<`, `>` in mrkdwn)

use crate::record::forge::cut;
use crate::record::outbox::RunEvent;
use crate::results::summary::EndState;
use serde_json::{json, Value};

/// Block Kit's limits: a header's text, a section field's text, a button's text.
pub const HEADER_MAX: usize = 150;
pub const FIELD_MAX: usize = 2000;
pub const TEXT_MAX: usize = 3000;
pub const BUTTON_MAX: usize = 75;

/// Text for mrkdwn: the three characters Slack wants escaped, escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The verdict's emoji.
pub fn icon(ev: &RunEvent) -> &'static str {
    match ev.status {
        Some(EndState::Succeeded) if ev.regression => ":warning:",
        Some(EndState::Succeeded) => ":white_check_mark:",
        Some(EndState::Failed | EndState::Error | EndState::Timeout) => ":x:",
        Some(EndState::Aborted) => ":black_square_for_stop:",
        None => ":hourglass_flowing_sand:",
    }
}

/// The message: a header (verdict and test), fields (verdict, test, commit, p95 against the
/// baseline), the reason when there is one, a context line (run, regression, recovery) and a
/// button to the run's page when `server.publicUrl` is set.
pub fn message(ev: &RunEvent) -> Value {
    let title = format!("{} perfsync: {} {}", icon(ev), ev.test, ev.verdict());
    let commit = ev
        .short_commit()
        .map_or("-".to_string(), |c| format!("`{}`", escape(c)));
    let p95 = format!("{} ({})", ev.p95_text(), ev.comparison_text());
    let field = |name: &str, value: String| json!({"type": "mrkdwn", "text": cut(&format!("*{name}*\n{value}"), FIELD_MAX)});
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, HEADER_MAX), "emoji": true}}),
        json!({"type": "section", "fields": [
            field("Verdict", escape(ev.verdict())),
            field("Test", escape(&ev.test)),
            field("Commit", commit),
            field("p95 vs baseline", escape(&p95)),
        ]}),
    ];
    if let Some(r) = ev.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&escape(r), TEXT_MAX)}}));
    }
    let mut context = format!("run `{}`", escape(&ev.run));
    if ev.regression {
        context.push_str(" · regression against the baseline");
    }
    if ev.recovered {
        context.push_str(" · back to passing");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&context, TEXT_MAX)}]}));
    let mut text = format!("{} perfsync: {}", icon(ev), escape(&ev.summary_line()));
    if let Some(c) = ev.short_commit() {
        text.push_str(&format!(" (commit {})", escape(c)));
    }
    if let Some(u) = &ev.url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": cut("Open the run", BUTTON_MAX)},
            "url": u,
        }]}));
        text.push_str(&format!(" <{u}|run>"));
    }
    json!({ "text": cut(&text, TEXT_MAX), "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_as_a_slack_message() {
        let ev: RunEvent = serde_json::from_value(json!({
            "run": "checkout-0123456789-1", "test": "checkout", "revision": "r",
            "commit": "0123456789abcdef0123456789abcdef01234567", "trigger": "change",
            "status": "failed", "reason": "threshold p(95)<100 failed: 312 > 100 & <worse>",
            "p95Ms": 312.4, "baselineRun": "b", "baselineP95Ms": 278.0, "p95ChangePercent": 12.37,
            "regression": true, "url": "https://perfsync.example.com/runs/checkout-0123456789-1"
        }))
        .unwrap();
        let m = message(&ev);
        assert_eq!(m["blocks"][0]["type"], "header");
        assert_eq!(
            m["blocks"][0]["text"]["text"],
            ":x: perfsync: checkout failed"
        );
        let fields: Vec<&str> = m["blocks"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Verdict*\nfailed",
                "*Test*\ncheckout",
                "*Commit*\n`0123456`",
                "*p95 vs baseline*\n312 ms (+12.4% vs 278 ms)"
            ]
        );
        assert_eq!(
            m["blocks"][2]["text"]["text"],
            "threshold p(95)&lt;100 failed: 312 &gt; 100 &amp; &lt;worse&gt;"
        );
        assert!(m["blocks"][3]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("regression"));
        assert_eq!(
            m["blocks"][4]["elements"][0]["url"],
            "https://perfsync.example.com/runs/checkout-0123456789-1"
        );
        let text = m["text"].as_str().unwrap();
        assert!(
            text.contains("checkout failed: p95 312 ms") && text.contains("(commit 0123456)"),
            "{text}"
        );
        assert!(
            text.ends_with("<https://perfsync.example.com/runs/checkout-0123456789-1|run>"),
            "{text}"
        );
    }
}
