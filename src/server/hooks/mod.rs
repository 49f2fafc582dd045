//! Webhook verification and parsing for GitHub, GitLab, Gitea/Forgejo and a generic HMAC
//! sender. Signatures are checked in constant time before the JSON is parsed: over the raw body
//! wherever the sender signs the raw body (GitHub in both content types, everyone's JSON);
//! Gitea and Forgejo sign the JSON they put in a form's `payload` field, not the form, so for
//! them that one field is cut out of the form first and the signature checked over it.

pub mod media;
mod reply;

pub(crate) use reply::handle;

use hmac::{Hmac, Mac};
use media::Encoding;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

pub const MAX_BODY: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Github,
    Gitlab,
    /// Gitea and Forgejo: `X-Gitea-*` or `X-Forgejo-*` headers, the same payload.
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
    /// Whether the provider can send `application/x-www-form-urlencoded` bodies (GitHub's
    /// default; a choice on Gitea and Forgejo). GitLab sends JSON only.
    pub fn takes_forms(self) -> bool {
        matches!(self, Provider::Github | Provider::Gitea)
    }
}

/// What a webhook request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A content type the provider's body is not read in: 415, nothing triggered.
    Unsupported(String),
    /// Signature missing or wrong: 401, nothing triggered.
    Unauthorized(&'static str),
    /// Signed, but not JSON of the provider's shape: 400.
    Malformed(String),
    /// Signed and well-formed, but not a push to the tracked branch: 202, nothing triggered.
    Ignored(String),
    /// A push that deleted the tracked branch: 202, nothing triggered (a sync could only fail).
    /// The commit the branch pointed at, when the payload names one.
    BranchDeleted { before: Option<String> },
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
    if !s.len().is_multiple_of(2) {
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

/// The first of `names` the request carries.
fn first<'h>(headers: &'h dyn Headers, names: &[&str]) -> Option<&'h str> {
    names.iter().find_map(|n| headers.get(n))
}

/// Checks the request's signature (or token) over `signed`: the bytes the sender signed.
fn authenticate(
    provider: Provider,
    headers: &dyn Headers,
    signed: &[u8],
    secret: &str,
) -> Result<(), &'static str> {
    let ok = match provider {
        Provider::Github => match headers.get("x-hub-signature-256") {
            Some(v) => v
                .strip_prefix("sha256=")
                .is_some_and(|h| hmac_ok(secret, signed, h)),
            None => return Err("missing X-Hub-Signature-256"),
        },
        // Forgejo sends its own header and, in the versions that still do, Gitea's with the
        // same value; its own is the one checked when both are there.
        Provider::Gitea => match first(headers, &["x-forgejo-signature", "x-gitea-signature"]) {
            Some(v) => hmac_ok(secret, signed, v),
            None => return Err("missing X-Gitea-Signature (or X-Forgejo-Signature)"),
        },
        Provider::Gitlab => match headers.get("x-gitlab-token") {
            Some(v) => token_eq(v, secret),
            None => return Err("missing X-Gitlab-Token"),
        },
        Provider::Generic => match headers.get("x-perfsync-signature") {
            Some(v) => hmac_ok(secret, signed, v.strip_prefix("sha256=").unwrap_or(v)),
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
    before: Option<String>,
    after: Option<String>,
    /// GitHub's own flag for a push that deleted the ref.
    deleted: Option<bool>,
    object_kind: Option<String>,
}

/// A commit id as senders write them: 40 hex digits (SHA-1).
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The null id git and every forge put in `after` when a push deleted the ref.
fn is_null_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

const NO_SIGNED_PAYLOAD: &str =
    "a Gitea/Forgejo form is signed over its `payload` field, and it has not exactly one";

/// What a webhook request comes to, in this order: its content type (415), its signature
/// (401), then its JSON (400), event, branch (202 `ignored`) and commit.
pub fn judge(
    provider: Provider,
    headers: &dyn Headers,
    body: &[u8],
    secret: &str,
    branch: &str,
) -> Verdict {
    let encoding = match media::encoding(
        headers.get("content-type"),
        provider.takes_forms(),
        provider.as_str(),
    ) {
        Ok(e) => e,
        Err(e) => return Verdict::Unsupported(e.to_string()),
    };
    // What the sender signed: the raw body, except a Gitea/Forgejo form's `payload` field.
    let signed: Cow<[u8]> = match (provider, encoding) {
        (Provider::Gitea, Encoding::Form) => match media::form_payload(body) {
            Ok(p) => Cow::Owned(p),
            Err(_) => return Verdict::Unauthorized(NO_SIGNED_PAYLOAD),
        },
        _ => Cow::Borrowed(body),
    };
    if let Err(why) = authenticate(provider, headers, &signed, secret) {
        return Verdict::Unauthorized(why);
    }
    // Only now is anything decoded: the JSON, out of GitHub's form if it came in one.
    let json: Cow<[u8]> = match (provider, encoding) {
        (Provider::Github, Encoding::Form) => match media::form_payload(body) {
            Ok(p) => Cow::Owned(p),
            Err(e) => return Verdict::Malformed(e.to_string()),
        },
        _ => signed,
    };
    let event = match provider {
        Provider::Github => headers.get("x-github-event"),
        Provider::Gitlab => headers.get("x-gitlab-event"),
        Provider::Gitea => first(headers, &["x-forgejo-event", "x-gitea-event"]),
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
    if provider == Provider::Generic && json.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Push { commit: None };
    }
    let parsed: PushBody = match serde_json::from_slice(&json) {
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
    if parsed.deleted == Some(true) || parsed.after.as_deref().is_some_and(is_null_id) {
        return Verdict::BranchDeleted {
            before: parsed.before.filter(|b| is_commit(b) && !is_null_id(b)),
        };
    }
    let commit = parsed.after.filter(|a| is_commit(a));
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

    fn form(json: &str) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish()
    }

    #[test]
    fn github_forms_are_signed_over_the_raw_body_and_read_from_payload() {
        let body = form(PUSH);
        let raw = format!("sha256={}", sign("k", body.as_bytes()));
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        let hd = h(&[
            ("X-Hub-Signature-256", &raw),
            ("X-GitHub-Event", "push"),
            ct,
        ]);
        assert_eq!(
            judge(Provider::Github, &hd, body.as_bytes(), "k", "main"),
            Verdict::Push {
                commit: Some("1".repeat(40))
            }
        );
        // A signature over the decoded JSON is not GitHub's: refused.
        let over_json = format!("sha256={}", sign("k", PUSH.as_bytes()));
        let hd = h(&[
            ("X-Hub-Signature-256", &over_json),
            ("X-GitHub-Event", "push"),
            ct,
        ]);
        assert!(matches!(
            judge(Provider::Github, &hd, body.as_bytes(), "k", "main"),
            Verdict::Unauthorized(_)
        ));
        // Signed, but no payload field: malformed, said only after the signature checks out.
        let sig = format!("sha256={}", sign("k", b"zen=1"));
        let hd = h(&[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Event", "push"),
            ct,
        ]);
        assert_eq!(
            judge(Provider::Github, &hd, b"zen=1", "k", "main"),
            Verdict::Malformed("the form body has no `payload` field".into())
        );
    }

    #[test]
    fn gitea_forms_are_signed_over_their_payload_field() {
        let body = form(PUSH);
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        let over_payload = sign("k", PUSH.as_bytes());
        let hd = h(&[
            ("X-Gitea-Signature", &over_payload),
            ("X-Gitea-Event", "push"),
            ct,
        ]);
        assert_eq!(
            judge(Provider::Gitea, &hd, body.as_bytes(), "k", "main"),
            Verdict::Push {
                commit: Some("1".repeat(40))
            }
        );
        let over_form = sign("k", body.as_bytes());
        let hd = h(&[
            ("X-Gitea-Signature", &over_form),
            ("X-Gitea-Event", "push"),
            ct,
        ]);
        assert!(matches!(
            judge(Provider::Gitea, &hd, body.as_bytes(), "k", "main"),
            Verdict::Unauthorized(_)
        ));
        let hd = h(&[
            ("X-Gitea-Signature", &over_payload),
            ("X-Gitea-Event", "push"),
            ct,
        ]);
        assert!(matches!(
            judge(Provider::Gitea, &hd, b"zen=1", "k", "main"),
            Verdict::Unauthorized(_)
        ));
    }

    #[test]
    fn forgejo_headers_are_read_and_its_own_signature_wins() {
        let good = sign("k", PUSH.as_bytes());
        let push = Verdict::Push {
            commit: Some("1".repeat(40)),
        };
        let only = h(&[("X-Forgejo-Signature", &good), ("X-Forgejo-Event", "push")]);
        assert_eq!(
            judge(Provider::Gitea, &only, PUSH.as_bytes(), "k", "main"),
            push
        );
        let both = h(&[
            ("X-Forgejo-Signature", &good),
            ("X-Forgejo-Event", "push"),
            ("X-Gitea-Signature", &good),
            ("X-Gitea-Event", "push"),
        ]);
        assert_eq!(
            judge(Provider::Gitea, &both, PUSH.as_bytes(), "k", "main"),
            push
        );
        let bad_own = h(&[
            ("X-Forgejo-Signature", "00"),
            ("X-Gitea-Signature", &good),
            ("X-Gitea-Event", "push"),
        ]);
        assert!(matches!(
            judge(Provider::Gitea, &bad_own, PUSH.as_bytes(), "k", "main"),
            Verdict::Unauthorized(_)
        ));
        let issue = h(&[
            ("X-Forgejo-Signature", &good),
            ("X-Forgejo-Event", "issues"),
        ]);
        assert!(matches!(
            judge(Provider::Gitea, &issue, PUSH.as_bytes(), "k", "main"),
            Verdict::Ignored(_)
        ));
    }

    #[test]
    fn a_push_deleting_the_branch_is_no_push() {
        let zero = "0".repeat(40);
        let before = "2".repeat(40);
        for (provider, body, hd) in [
            (
                Provider::Github,
                format!(
                    r#"{{"ref":"refs/heads/main","before":"{before}","after":"{zero}","deleted":true}}"#
                ),
                vec![("X-GitHub-Event", "push")],
            ),
            // `deleted` alone is enough for GitHub.
            (
                Provider::Github,
                format!(
                    r#"{{"ref":"refs/heads/main","before":"{before}","after":"","deleted":true}}"#
                ),
                vec![("X-GitHub-Event", "push")],
            ),
            (
                Provider::Gitlab,
                format!(
                    r#"{{"object_kind":"push","ref":"refs/heads/main","before":"{before}","after":"{zero}","checkout_sha":null}}"#
                ),
                vec![("X-Gitlab-Event", "Push Hook")],
            ),
            (
                Provider::Gitea,
                format!(r#"{{"ref":"refs/heads/main","before":"{before}","after":"{zero}"}}"#),
                vec![("X-Gitea-Event", "push")],
            ),
        ] {
            let sig = sign("k", body.as_bytes());
            let gh = format!("sha256={sig}");
            let mut pairs = hd.clone();
            pairs.extend([
                ("X-Hub-Signature-256", gh.as_str()),
                ("X-Gitea-Signature", sig.as_str()),
                ("X-Gitlab-Token", "k"),
            ]);
            assert_eq!(
                judge(provider, &h(&pairs), body.as_bytes(), "k", "main"),
                Verdict::BranchDeleted {
                    before: Some(before.clone())
                },
                "{provider:?}"
            );
        }
        // Deleting another branch is just another branch.
        let body = format!(r#"{{"ref":"refs/heads/dev","after":"{zero}","deleted":true}}"#);
        let sig = format!("sha256={}", sign("k", body.as_bytes()));
        let hd = h(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")]);
        assert!(matches!(
            judge(Provider::Github, &hd, body.as_bytes(), "k", "main"),
            Verdict::Ignored(_)
        ));
    }

    #[test]
    fn content_types_a_provider_does_not_send_are_415() {
        let sig = format!("sha256={}", sign("k", PUSH.as_bytes()));
        let hd = h(&[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Event", "push"),
            ("Content-Type", "text/plain"),
        ]);
        match judge(Provider::Github, &hd, PUSH.as_bytes(), "k", "main") {
            Verdict::Unsupported(why) => assert!(why.contains("`text/plain`"), "{why}"),
            v => panic!("{v:?}"),
        }
        let gl = h(&[
            ("X-Gitlab-Token", "k"),
            ("X-Gitlab-Event", "Push Hook"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        assert!(matches!(
            judge(Provider::Gitlab, &gl, PUSH.as_bytes(), "k", "main"),
            Verdict::Unsupported(_)
        ));
        let json = h(&[
            ("X-Gitlab-Token", "k"),
            ("X-Gitlab-Event", "Push Hook"),
            ("Content-Type", "application/json; charset=utf-8"),
        ]);
        assert!(matches!(
            judge(Provider::Gitlab, &json, PUSH.as_bytes(), "k", "main"),
            Verdict::Push { .. }
        ));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd") && !token_eq("ab", "abc"));
    }
}
