//! References to secrets: an environment variable or a file, never the value itself, so a
//! config file can be committed and logged without leaking anything.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of an environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file holding the value (a mounted Secret); a trailing newline is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretRef(env={:?}, file={:?})", self.env, self.file)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{key}: set exactly one of `env` and `file`")]
    Shape { key: String },
    #[error("{key}: environment variable {var} is not set or empty")]
    MissingEnv { key: String, var: String },
    #[error("{key}: cannot read {path}: {reason}")]
    File {
        key: String,
        path: String,
        reason: String,
    },
    /// An empty secret makes every HMAC and token check keyed by it forgeable: refused.
    #[error("{key}: the secret in {origin} is empty (or only whitespace); put the secret there, or remove {key}")]
    Empty { key: String, origin: String },
}

impl SecretRef {
    /// The secret's value. `key` names the config key in errors (the value never appears).
    /// A secret that is empty or only whitespace is refused: it would key every HMAC and
    /// token check with nothing, so anyone could forge them.
    pub fn resolve(&self, key: &str) -> Result<String, SecretError> {
        let (value, origin) = match (&self.env, &self.file) {
            (Some(var), None) => {
                let value = std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SecretError::MissingEnv {
                        key: key.into(),
                        var: var.clone(),
                    })?;
                (value, format!("environment variable {var}"))
            }
            (None, Some(path)) => {
                let value = std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| SecretError::File {
                        key: key.into(),
                        path: path.clone(),
                        reason: e.kind().to_string(),
                    })?;
                (value, format!("file {path}"))
            }
            _ => return Err(SecretError::Shape { key: key.into() }),
        };
        if value.trim().is_empty() {
            return Err(SecretError::Empty {
                key: key.into(),
                origin,
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_ref(content: &str) -> (tempfile::TempDir, SecretRef) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, content).expect("write the secret file");
        let r = SecretRef {
            env: None,
            file: Some(path.display().to_string()),
        };
        (dir, r)
    }

    #[test]
    fn an_empty_or_blank_secret_file_is_refused_naming_the_reference() {
        for content in ["", "\n", "\r\n\n", "  \t\n"] {
            let (_dir, r) = file_ref(content);
            let err = r.resolve("webhooks.github").unwrap_err();
            let path = r.file.clone().unwrap_or_default();
            assert!(
                matches!(&err, SecretError::Empty { key, origin } if key == "webhooks.github" && origin.contains(&path)),
                "{content:?}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("webhooks.github") && text.contains(&path),
                "{text}"
            );
        }
    }

    #[test]
    fn a_secret_value_never_appears_in_an_error() {
        let (_dir, r) = file_ref("s3cr3t-value\n");
        assert_eq!(r.resolve("webhooks.gitea").as_deref(), Ok("s3cr3t-value"));
        let var = format!("PERFSYNC_TEST_BLANK_{}", std::process::id());
        std::env::set_var(&var, "   ");
        let blank = SecretRef {
            env: Some(var.clone()),
            file: None,
        };
        let err = blank.resolve("server.apiToken").unwrap_err();
        std::env::remove_var(&var);
        assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains(&var), "{err}");
    }
}
