//! The HTTP answer to a webhook: the verdict as a status and JSON, a metric, a log line.

use super::{judge, Provider, Verdict};
use crate::server::{error, json_reply, AppState};
use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

/// `POST /hooks/{provider}`.
pub(crate) fn handle(
    state: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(p) = Provider::parse(provider) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown-provider",
            "providers are github, gitlab, gitea (Gitea and Forgejo) and generic",
        );
    };
    let Some(secret) = state.hook_secrets.get(p.as_str()) else {
        state.metrics.webhook(p.as_str(), "not-configured");
        return error(
            StatusCode::NOT_FOUND,
            "provider-not-configured",
            "no secret is configured for this provider",
        );
    };
    let verdict = judge(p, headers, body, secret, &state.branch);
    let (outcome, response) = match verdict {
        Verdict::Unsupported(why) => (
            "unsupported-media-type",
            error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                &why,
            ),
        ),
        Verdict::Unauthorized(why) => (
            "unauthorized",
            error(StatusCode::UNAUTHORIZED, "bad-signature", why),
        ),
        Verdict::Malformed(why) => (
            "malformed",
            error(StatusCode::BAD_REQUEST, "malformed", &why),
        ),
        Verdict::Ignored(why) => (
            "ignored",
            json_reply(
                StatusCode::ACCEPTED,
                json!({"status": "ignored", "reason": why}),
            ),
        ),
        Verdict::BranchDeleted { before } => {
            tracing::warn!(
                provider = p.as_str(),
                branch = %state.branch,
                before = before.as_deref().unwrap_or("(not given)"),
                "a push deleted the tracked branch: no sync started, there is nothing to fetch until the branch is pushed again"
            );
            (
                "branch-deleted",
                json_reply(
                    StatusCode::ACCEPTED,
                    json!({"status": "ignored", "reason": format!(
                        "the push deleted branch `{}`; no sync until it is pushed again",
                        state.branch
                    )}),
                ),
            )
        }
        Verdict::Pong => (
            "ping",
            json_reply(StatusCode::OK, json!({"status": "pong"})),
        ),
        Verdict::Push { commit } => {
            state
                .triggers
                .fire(&format!("webhook:{}", p.as_str()), commit.clone());
            (
                "accepted",
                json_reply(
                    StatusCode::ACCEPTED,
                    json!({"status": "sync-queued", "commit": commit}),
                ),
            )
        }
    };
    state.metrics.webhook(p.as_str(), outcome);
    tracing::info!(provider = p.as_str(), outcome, "webhook");
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::server::Health;
    use crate::sync::triggers::Triggers;
    use std::sync::{Arc, Mutex};

    /// What the handler logs, as text.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }

    fn state(secret: &str) -> AppState {
        AppState {
            triggers: Arc::new(Triggers::new()),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::default()),
            branch: "main".into(),
            hook_secrets: [("github", secret.to_string())].into_iter().collect(),
            api_token: None,
            pool: None,
            scheduler: None,
            repository_url: None,
            page: Default::default(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    async fn text(r: Response) -> String {
        let body = http_body_util::BodyExt::collect(r.into_body()).await;
        String::from_utf8_lossy(&body.map(|b| b.to_bytes()).unwrap_or_default()).into_owned()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deleted_branch_is_answered_202_and_logged_at_warn() {
        let secret = "deletion-secret-value";
        let st = state(secret);
        let before = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        let body = format!(
            r#"{{"ref":"refs/heads/main","before":"{before}","after":"{}","deleted":true}}"#,
            "0".repeat(40)
        );
        let sig = format!("sha256={}", super::super::sign(secret, body.as_bytes()));
        let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let response = {
            let _guard = tracing::subscriber::set_default(subscriber);
            handle(&st, "github", &h, &Bytes::from(body))
        };
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer = text(response).await;
        assert!(
            answer.contains("\"ignored\"") && answer.contains("deleted branch `main`"),
            "{answer}"
        );
        let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        let warn = logged
            .lines()
            .find(|l| l.contains("WARN"))
            .unwrap_or_else(|| panic!("no warning in {logged}"));
        assert!(
            warn.contains("deleted the tracked branch")
                && warn.contains("branch=main")
                && warn.contains(before),
            "{warn}"
        );
        assert!(!logged.contains(secret), "{logged}");
        assert!(st
            .metrics
            .encode()
            .contains("provider=\"github\",outcome=\"branch-deleted\"} 1"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unsupported_content_type_is_415_naming_it() {
        let st = state("k");
        let h = headers(&[
            ("x-github-event", "push"),
            ("content-type", "multipart/form-data; boundary=x"),
        ]);
        let response = handle(&st, "github", &h, &Bytes::from_static(b"--x--"));
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let answer = text(response).await;
        assert!(
            answer.contains("unsupported-media-type") && answer.contains("`multipart/form-data`"),
            "{answer}"
        );
    }
}
