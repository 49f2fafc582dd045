//! Notification sinks: Slack incoming webhooks, Microsoft Teams webhooks and perfsync's own
//! signed JSON webhook, each with filters (`on:`, `tests:`). A sink's URL is its credential:
//! it is never logged, stored or put into an error; the sink's name stands for it.

pub mod filter;
pub mod slack;
pub mod teams;
pub mod webhook;

use super::outbox::{execute, HttpFailure, RunEvent};
use crate::config::notifications::{LabelSelector, NotifyOn, SinkConfig, SinkKind};
use crate::config::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("sink {sink}: {source}")]
    Http {
        sink: String,
        #[source]
        source: HttpFailure,
    },
    #[error("sink {sink}: {why}")]
    Answer { sink: String, why: String },
    #[error("{key}: {why}")]
    Config { key: String, why: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl NotifyError {
    /// What the outbox records and decides on (a retry or not).
    pub fn into_failure(self) -> HttpFailure {
        match self {
            NotifyError::Http { sink, source } => HttpFailure {
                message: format!("sink {sink}: {}", source.message),
                ..source
            },
            other => HttpFailure::permanent(None, other.to_string()),
        }
    }
}

/// A configured sink with its URL (and signing key) resolved.
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    url: String,
    secret: Option<String>,
    pub on: Vec<NotifyOn>,
    pub tests: Option<LabelSelector>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it is the sink's credential.
        write!(f, "Sink({} {})", self.name, self.kind.as_str())
    }
}

impl Sink {
    /// The sink of `notifications[i]`, its secrets resolved (errors name the key, never a
    /// value).
    pub fn from_config(c: &SinkConfig, i: usize) -> Result<Sink, NotifyError> {
        let url = c.url.resolve(&format!("notifications[{i}].url"))?;
        let ok = url::Url::parse(url.trim())
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            // The value is a secret: the error says what is wrong, not what it is.
            return Err(NotifyError::Config {
                key: format!("notifications[{i}].url"),
                why: "the referenced secret is not an http(s) URL".into(),
            });
        }
        Ok(Sink {
            name: c.name.clone(),
            kind: c.kind,
            url: url.trim().to_string(),
            secret: c
                .secret
                .as_ref()
                .map(|s| s.resolve(&format!("notifications[{i}].secret")))
                .transpose()?,
            on: c.on.clone(),
            tests: c.tests.clone(),
        })
    }

    /// The outbox's name for it.
    pub fn target(&self) -> String {
        format!("notify:{}", self.name)
    }

    /// Sends `ev` (one attempt). `delivery` is the same on every attempt of this delivery.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        ev: &RunEvent,
        delivery: &str,
    ) -> Result<(), NotifyError> {
        let body = match self.kind {
            SinkKind::Slack => slack::message(ev),
            SinkKind::Teams => teams::message(ev),
            SinkKind::Webhook => webhook::payload(ev, delivery),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| NotifyError::Answer {
            sink: self.name.clone(),
            why: e.to_string(),
        })?;
        let mut req = client
            .post(&self.url)
            .header("Content-Type", "application/json");
        if self.kind == SinkKind::Webhook {
            req = req
                .header(webhook::EVENT_HEADER, webhook::EVENT)
                .header(webhook::DELIVERY_HEADER, delivery);
            if let Some(secret) = &self.secret {
                req = req.header(
                    webhook::SIGNATURE_HEADER,
                    webhook::signature(secret, &bytes),
                );
            }
        }
        // The URL and its path (where Slack and Teams keep the credential) never show.
        let path = url::Url::parse(&self.url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let mut secrets = vec![self.url.as_str()];
        if path.len() > 1 {
            secrets.push(&path);
        }
        if let Some(s) = &self.secret {
            secrets.push(s);
        }
        let (_, text) =
            execute(req.body(bytes), &secrets)
                .await
                .map_err(|source| NotifyError::Http {
                    sink: self.name.clone(),
                    source,
                })?;
        // Slack's incoming webhooks answer `ok` (errors come with 4xx/5xx); an answer saying
        // `"ok": false` (Slack's Web API style, from a proxy or a workflow) is a refusal.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
                let why: String = v["error"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(120)
                    .collect();
                return Err(NotifyError::Answer {
                    sink: self.name.clone(),
                    why: format!(
                        "answered `ok: false` ({})",
                        crate::results::mask::mask(&why, &secrets)
                    ),
                });
            }
        }
        Ok(())
    }
}
