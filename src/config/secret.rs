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
}

impl SecretRef {
    /// The secret's value. `key` names the config key in errors (the value never appears).
    pub fn resolve(&self, key: &str) -> Result<String, SecretError> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SecretError::MissingEnv {
                    key: key.into(),
                    var: var.clone(),
                }),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| SecretError::File {
                    key: key.into(),
                    path: path.clone(),
                    reason: e.kind().to_string(),
                }),
            _ => Err(SecretError::Shape { key: key.into() }),
        }
    }
}
