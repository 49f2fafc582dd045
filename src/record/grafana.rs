//! Grafana annotations at each run's start and end, through Grafana's HTTP API.

use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("grafana annotation for run {run}: {message}")]
pub struct GrafanaError {
    pub run: String,
    pub message: String,
}

pub struct Grafana {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Grafana {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grafana({})", self.base)
    }
}

impl Grafana {
    pub fn new(base: &str, token: String) -> Grafana {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Grafana {
            base: base.trim_end_matches('/').to_string(),
            token,
            client,
        }
    }

    /// `verdict` is `started` at the start and the end state at the end.
    pub async fn annotate(
        &self,
        at: DateTime<Utc>,
        test: &str,
        run: &str,
        verdict: &str,
        text: &str,
    ) -> Result<(), GrafanaError> {
        let body = serde_json::json!({
            "time": at.timestamp_millis(),
            "tags": ["perfsync", test, run, verdict],
            "text": text,
        });
        let err = |m: String| GrafanaError {
            run: run.to_string(),
            message: m,
        };
        let resp = self
            .client
            .post(format!("{}/api/annotations", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        Ok(())
    }
}
