//! Webhook verification and parsing for GitHub, GitLab, Gitea and a generic HMAC sender.
//! Signatures are checked before the body is parsed, in constant time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MAX_BODY: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Github,
    Gitlab,
    Gitea,
    Generic,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Provider> {
        Some(match s {
            "github" => Provider::Github,
            "gitlab" => Provider::Gitlab,
            "gitea" => Provider::Gitea,
            "generic" => Provider::Generic,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Generic => "generic",
        }
    }
}

/// What a webhook request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signature missing or wrong: 401, nothing triggered.
    Unauthorized(&'static str),
    /// Signed, but not JSON of the provider's shape: 400.
    Malformed(String),
    /// Signed and well-formed, but not a push to the tracked branch: 202, nothing triggered.
    Ignored(String),
    /// GitHub's ping: 200.
    Pong,
    /// A push to the tracked branch: 202 and a sync; the commit it announces, if any.
    Push { commit: Option<String> },
}

/// Header lookup, case-insensitive, as the HTTP layer provides it.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for warp::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        warp::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn hmac_ok(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Some(sig) = decode_hex(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Equal tokens, compared in constant time (hashed first so length does not leak either).
pub fn token_eq(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// HMAC-SHA256 of `body` as lowercase hex: what senders put in their signature headers.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn authenticate(
    provider: Provider,
    headers: &dyn Headers,
    body: &[u8],
    secret: &str,
) -> Result<(), &'static str> {
    let ok = match provider {
        Provider::Github => match headers.get("x-hub-signature-256") {
            Some(v) => v
                .strip_prefix("sha256=")
                .is_some_and(|h| hmac_ok(secret, body, h)),
            None => return Err("missing X-Hub-Signature-256"),
        },
        Provider::Gitea => match headers.get("x-gitea-signature") {
            Some(v) => hmac_ok(secret, body, v),
            None => return Err("missing X-Gitea-Signature"),
        },
        Provider::Gitlab => match headers.get("x-gitlab-token") {
            Some(v) => token_eq(v, secret),
            None => return Err("missing X-Gitlab-Token"),
        },
        Provider::Generic => match headers.get("x-perfsync-signature") {
            Some(v) => hmac_ok(secret, body, v.strip_prefix("sha256=").unwrap_or(v)),
            None => return Err("missing X-Perfsync-Signature"),
        },
    };
    if ok {
        Ok(())
    } else {
        Err("signature does not match")
    }
}

#[derive(serde::Deserialize)]
struct PushBody {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    object_kind: Option<String>,
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

pub fn judge(
    provider: Provider,
    headers: &dyn Headers,
    body: &[u8],
    secret: &str,
    branch: &str,
) -> Verdict {
    if let Err(why) = authenticate(provider, headers, body, secret) {
        return Verdict::Unauthorized(why);
    }
    let event = match provider {
        Provider::Github => headers.get("x-github-event"),
        Provider::Gitlab => headers.get("x-gitlab-event"),
        Provider::Gitea => headers.get("x-gitea-event"),
        Provider::Generic => Some("push"),
    };
    if provider == Provider::Github && event == Some("ping") {
        return Verdict::Pong;
    }
    let is_push = match provider {
        Provider::Github | Provider::Gitea => event == Some("push"),
        Provider::Gitlab => event == Some("Push Hook"),
        Provider::Generic => true,
    };
    if provider == Provider::Generic && body.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Push { commit: None };
    }
    let parsed: PushBody = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return Verdict::Malformed(format!(
                "the body is not a {} push payload: {e}",
                provider.as_str()
            ))
        }
    };
    if !is_push || parsed.object_kind.as_deref().is_some_and(|k| k != "push") {
        return Verdict::Ignored(format!("event {} is not a push", event.unwrap_or("(none)")));
    }
    let wanted = format!("refs/heads/{branch}");
    match parsed.git_ref.as_deref() {
        Some(r) if r == wanted => {}
        None if provider == Provider::Generic => {}
        Some(r) => return Verdict::Ignored(format!("push to {r}, not {wanted}")),
        None => return Verdict::Malformed("the push payload has no `ref`".into()),
    }
    let commit = parsed
        .after
        .filter(|a| a != ZERO_SHA && a.len() == 40 && a.bytes().all(|b| b.is_ascii_hexdigit()));
    Verdict::Push { commit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const PUSH: &str =
        r#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111"}"#;

    #[test]
    fn github_signatures_are_verified() {
        let sig = format!("sha256={}", sign("s3cret", PUSH.as_bytes()));
        let ok = h(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")]);
        assert_eq!(
            judge(Provider::Github, &ok, PUSH.as_bytes(), "s3cret", "main"),
            Verdict::Push {
                commit: Some("1".repeat(40))
            }
        );
        assert!(matches!(
            judge(Provider::Github, &ok, PUSH.as_bytes(), "other", "main"),
            Verdict::Unauthorized(_)
        ));
        let replayed = PUSH.replace("main", "main2");
        assert!(matches!(
            judge(Provider::Github, &ok, replayed.as_bytes(), "s3cret", "main"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            judge(Provider::Github, &h(&[]), PUSH.as_bytes(), "s3cret", "main"),
            Verdict::Unauthorized(_)
        ));
    }

    #[test]
    fn other_branches_and_events_are_ignored() {
        let body = PUSH.replace("refs/heads/main", "refs/heads/dev");
        let sig = format!("sha256={}", sign("k", body.as_bytes()));
        let hd = h(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")]);
        assert!(matches!(
            judge(Provider::Github, &hd, body.as_bytes(), "k", "main"),
            Verdict::Ignored(_)
        ));
        let gl = h(&[("X-Gitlab-Token", "k"), ("X-Gitlab-Event", "Tag Push Hook")]);
        assert!(matches!(
            judge(Provider::Gitlab, &gl, PUSH.as_bytes(), "k", "main"),
            Verdict::Ignored(_)
        ));
    }

    #[test]
    fn malformed_bodies_are_400_only_after_the_signature_checks_out() {
        let body = b"{not json";
        let sig = sign("k", body);
        let hd = h(&[("X-Gitea-Signature", &sig), ("X-Gitea-Event", "push")]);
        assert!(matches!(
            judge(Provider::Gitea, &hd, body, "k", "main"),
            Verdict::Malformed(_)
        ));
        let bad = h(&[("X-Gitea-Signature", "00"), ("X-Gitea-Event", "push")]);
        assert!(matches!(
            judge(Provider::Gitea, &bad, body, "k", "main"),
            Verdict::Unauthorized(_)
        ));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd") && !token_eq("ab", "abc"));
    }
}
