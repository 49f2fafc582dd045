//! How a webhook's body carries its JSON: as the body itself (`application/json`), or in the
//! `payload` field of a form (`application/x-www-form-urlencoded`, GitHub's default content
//! type and a choice on Gitea and Forgejo).

/// The encodings a sender may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`, or no Content-Type at all: the body is the JSON.
    Json,
    /// `application/x-www-form-urlencoded`: the JSON is the form's `payload` field.
    Form,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("content type `{given}` is not accepted for {provider} webhooks; send {accepted}")]
    Unsupported {
        given: String,
        provider: &'static str,
        accepted: &'static str,
    },
    #[error("the form body has no `payload` field")]
    NoPayload,
    #[error("the form body has more than one `payload` field")]
    TwoPayloads,
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// At most this much of an unsupported content type is repeated in the answer.
const SHOWN: usize = 100;

/// The encoding a Content-Type header names. Parameters (`; charset=utf-8`) and case do not
/// matter; a missing or empty header means JSON, as before content types were checked.
pub fn encoding(
    content_type: Option<&str>,
    forms: bool,
    provider: &'static str,
) -> Result<Encoding, BodyError> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "" | JSON => Ok(Encoding::Json),
        FORM if forms => Ok(Encoding::Form),
        _ => Err(BodyError::Unsupported {
            given: essence.chars().take(SHOWN).collect(),
            provider,
            accepted: if forms {
                "application/json or application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
        }),
    }
}

/// The `payload` field of a form body, percent-decoded: exactly one, or an error.
pub fn form_payload(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        if name == "payload" {
            if found.is_some() {
                return Err(BodyError::TwoPayloads);
            }
            found = Some(value.into_owned().into_bytes());
        }
    }
    found.ok_or(BodyError::NoPayload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_read_by_their_essence() {
        for (given, forms, want) in [
            (None, false, Encoding::Json),
            (Some(""), false, Encoding::Json),
            (Some("application/json"), false, Encoding::Json),
            (
                Some("Application/JSON; charset=utf-8"),
                false,
                Encoding::Json,
            ),
            (
                Some("application/x-www-form-urlencoded"),
                true,
                Encoding::Form,
            ),
            (
                Some(" application/x-www-form-urlencoded ; charset=UTF-8"),
                true,
                Encoding::Form,
            ),
        ] {
            assert_eq!(encoding(given, forms, "github"), Ok(want), "{given:?}");
        }
    }

    #[test]
    fn other_content_types_are_named_in_the_refusal() {
        let e = encoding(Some("text/plain; charset=utf-8"), true, "github").unwrap_err();
        assert_eq!(
            e.to_string(),
            "content type `text/plain` is not accepted for github webhooks; send application/json or application/x-www-form-urlencoded"
        );
        let e = encoding(Some(FORM), false, "gitlab").unwrap_err();
        assert_eq!(
            e.to_string(),
            "content type `application/x-www-form-urlencoded` is not accepted for gitlab webhooks; send application/json"
        );
        let long = format!("x/{}", "y".repeat(500));
        let e = encoding(Some(&long), true, "github").unwrap_err();
        assert!(matches!(&e, BodyError::Unsupported { given, .. } if given.len() == SHOWN));
    }

    #[test]
    fn the_payload_field_is_decoded_once() {
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22m%22%3A%22a+b%25%22%7D";
        assert_eq!(
            form_payload(body).unwrap(),
            br#"{"ref":"refs/heads/main","m":"a b%"}"#.to_vec()
        );
        assert_eq!(
            form_payload(b"other=1&payload=%7B%7D").unwrap(),
            b"{}".to_vec()
        );
        assert_eq!(form_payload(b"{\"ref\":1}"), Err(BodyError::NoPayload));
        assert_eq!(form_payload(b""), Err(BodyError::NoPayload));
        assert_eq!(
            form_payload(b"payload=%7B%7D&payload=%7B%7D"),
            Err(BodyError::TwoPayloads)
        );
    }
}
