//! A Slack incoming webhook as documented (https://api.slack.com/messaging/webhooks):
//! `POST /services/T…/B…/<secret>` with a JSON message (`text`, `blocks`); `200 ok`, or the
//! documented errors: 404 `no_service` for another URL, 400 `invalid_payload` for a body that
//! is not JSON, 400 `no_text` for neither text nor blocks, 400 `invalid_blocks` for blocks
//! outside Block Kit's rules (https://api.slack.com/reference/block-kit/blocks): header text
//! plain_text ≤150, section text ≤3000 or fields (≤10, each ≤2000), context elements ≤10,
//! actions with buttons (text plain_text ≤75, url ≤3000), at most 50 blocks.

use super::{Fake, Req, Resp, State};
use serde_json::Value;

/// The path of the webhook URL (its last part is the secret).
pub fn path(secret: &str) -> String {
    format!("/services/T0001/B0001/{secret}")
}

pub async fn start(secret: &str) -> Fake {
    Fake::start(handle, secret, "").await
}

pub fn url(f: &Fake, secret: &str) -> String {
    format!("{}{}", f.base(), path(secret))
}

fn text_object(v: &Value, kinds: &[&str], max: usize) -> bool {
    let Some(o) = v.as_object() else { return false };
    let kind_ok = o
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|k| kinds.contains(&k));
    let text_ok = o
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty() && t.chars().count() <= max);
    let keys_ok = o
        .keys()
        .all(|k| ["type", "text", "emoji", "verbatim"].contains(&k.as_str()));
    kind_ok && text_ok && keys_ok
}

fn block_ok(b: &Value) -> bool {
    let Some(o) = b.as_object() else { return false };
    match o.get("type").and_then(Value::as_str) {
        Some("header") => o
            .get("text")
            .is_some_and(|t| text_object(t, &["plain_text"], 150)),
        Some("section") => {
            let text = o
                .get("text")
                .map(|t| text_object(t, &["mrkdwn", "plain_text"], 3000));
            let fields = o.get("fields").map(|f| {
                f.as_array().is_some_and(|a| {
                    !a.is_empty()
                        && a.len() <= 10
                        && a.iter()
                            .all(|x| text_object(x, &["mrkdwn", "plain_text"], 2000))
                })
            });
            match (text, fields) {
                (None, None) => false,
                (t, f) => t.unwrap_or(true) && f.unwrap_or(true),
            }
        }
        Some("context") => o
            .get("elements")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                !a.is_empty()
                    && a.len() <= 10
                    && a.iter()
                        .all(|e| text_object(e, &["mrkdwn", "plain_text"], 3000))
            }),
        Some("actions") => o
            .get("elements")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                !a.is_empty()
                    && a.len() <= 25
                    && a.iter().all(|e| {
                        e["type"] == "button"
                            && text_object(&e["text"], &["plain_text"], 75)
                            && e.get("url")
                                .is_none_or(|u| u.as_str().is_some_and(|u| u.len() <= 3000))
                    })
            }),
        Some("divider") => true,
        _ => false,
    }
}

pub fn handle(s: &mut State, r: &Req) -> Resp {
    if r.path != path(&s.token) {
        return Resp::text(404, "no_service");
    }
    if r.method != "POST" {
        return Resp::text(405, "invalid_method");
    }
    let Some(m) = r.json_object() else {
        return Resp::text(400, "invalid_payload");
    };
    let text = m
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let blocks = m.get("blocks");
    if text.is_none() && blocks.is_none() {
        return Resp::text(400, "no_text");
    }
    if let Some(b) = blocks {
        let ok = b
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.len() <= 50 && a.iter().all(block_ok));
        if !ok {
            return Resp::text(400, "invalid_blocks");
        }
    }
    s.deliveries.push(r.clone());
    Resp::text(200, "ok")
}
