//! Microsoft Teams: a message with one Adaptive Card, which both a Workflows webhook ("When
//! a Teams webhook request is received", the replacement of Office 365 connectors) and a
//! legacy incoming webhook accept: `{"type":"message","attachments":[{"contentType":
//! "application/vnd.microsoft.card.adaptive","content":{…AdaptiveCard…}}]}`. Workflows take
//! Adaptive Cards only (not the old MessageCard) and answer 202.
//! https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook
//! https://support.microsoft.com/en-us/office/create-incoming-webhooks-with-workflows-for-microsoft-teams-8ae491c7-0394-4861-ba59-055e33f75498
//! https://adaptivecards.io/explorer/ (TextBlock, FactSet, Action.OpenUrl)

use crate::record::outbox::RunEvent;
use crate::results::summary::EndState;
use serde_json::{json, Value};

/// The Adaptive Card schema version: what Teams renders everywhere (desktop, web, mobile).
pub const CARD_VERSION: &str = "1.4";

/// The message: a title coloured by verdict, facts (verdict, test, commit, p95 against the
/// baseline, run), the reason, and a button to the run's page.
pub fn message(ev: &RunEvent) -> Value {
    let color = match ev.status {
        Some(EndState::Succeeded) if ev.regression => "Warning",
        Some(EndState::Succeeded) => "Good",
        Some(EndState::Aborted) | None => "Default",
        Some(_) => "Attention",
    };
    let mut facts = vec![
        json!({"title": "Verdict", "value": ev.verdict()}),
        json!({"title": "Test", "value": ev.test}),
        json!({"title": "Commit", "value": ev.short_commit().unwrap_or("-")}),
        json!({"title": "p95", "value": format!("{} ({})", ev.p95_text(), ev.comparison_text())}),
        json!({"title": "Run", "value": ev.run}),
    ];
    if ev.regression {
        facts.push(json!({"title": "Regression", "value": "yes, against the baseline"}));
    }
    if ev.recovered {
        facts.push(json!({"title": "Recovered", "value": "back to passing"}));
    }
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "color": color,
               "text": format!("perfsync: {} {}", ev.test, ev.verdict())}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(r) = ev.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true,
                         "text": crate::record::forge::cut(r, 1000)}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    });
    if let Some(u) = &ev.url {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open the run", "url": u}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adaptive_card_message() {
        let ev: RunEvent = serde_json::from_value(json!({
            "run": "r-1", "test": "checkout", "revision": "r", "trigger": "change",
            "commit": "0123456789abcdef0123456789abcdef01234567", "status": "succeeded",
            "recovered": true, "p95Ms": 80.0, "url": "https://p.example/runs/r-1"
        }))
        .unwrap();
        let m = message(&ev);
        assert_eq!(m["type"], "message");
        let a = &m["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
        assert_eq!(a["content"]["body"][0]["color"], "Good");
        let facts = a["content"]["body"][1]["facts"].as_array().unwrap();
        assert!(facts.iter().any(|f| f["title"] == "Recovered"));
        assert!(facts.iter().any(|f| f["value"] == "0123456"));
        assert_eq!(a["content"]["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(
            a["content"]["actions"][0]["url"],
            "https://p.example/runs/r-1"
        );
    }
}
