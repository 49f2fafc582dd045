//! The Secrets a run's `secretEnv` names, read before its TestRun exists: each must be in the
//! runs namespace, hold the key named, and be allowed by name (`policy.runner.allowedSecrets`)
//! or carry the label the operator puts on Secrets meant for runners
//! (`policy.runner.allowedSecretLabel`). A Secret that fails any of these starts nothing.
//!
//! perfsync reads the values only to mask them: a runner that prints one finds `***` in its
//! log tail, the API and every stored record. That takes `get` on Secrets in the runs
//! namespace, which by design holds none of perfsync's own.

use crate::config::glob_matches;
use crate::spec::model::PerfTestSpec;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// Which Secrets a test may name.
#[derive(Debug, Clone, Default)]
pub struct SecretPolicy {
    pub names: Vec<String>,
    /// `(key, value)` of the label that allows a Secret whatever its name.
    pub label: Option<(String, String)>,
}

/// Values of Secrets that reached runs, by `(secret, key)`: the masked ones.
#[derive(Debug, Clone, Default)]
pub struct SecretBook(Arc<RwLock<BTreeMap<(String, String), String>>>);

impl SecretBook {
    pub fn values(&self) -> Vec<String> {
        match self.0.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }
    fn knows(&self, secret: &str, key: &str) -> bool {
        self.0
            .read()
            .map(|m| m.contains_key(&(secret.to_string(), key.to_string())))
            .unwrap_or(false)
    }
    fn add(&self, secret: &str, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        let mut m = match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        m.insert((secret.to_string(), key.to_string()), value);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secretEnv names Secret `{secret}`, which is not in namespace `{namespace}`: create it there (runners read Secrets of the runs namespace only)")]
    Missing { secret: String, namespace: String },
    #[error("secretEnv names key `{key}` of Secret `{secret}`, which the Secret does not hold")]
    NoKey { secret: String, key: String },
    #[error("policy.runner.allowedSecrets: Secret `{secret}` matches none of its names, and it does not carry the label {label} (policy.runner.allowedSecretLabel)")]
    NotAllowed { secret: String, label: String },
    #[error("reading Secret `{secret}`: {source}")]
    Api {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether a Secret named `name` with `labels` is one a test may name.
pub fn allowed(policy: &SecretPolicy, name: &str, labels: &BTreeMap<String, String>) -> bool {
    policy.names.iter().any(|g| glob_matches(g, name))
        || policy
            .label
            .as_ref()
            .is_some_and(|(k, v)| labels.get(k) == Some(v))
}

fn label_text(policy: &SecretPolicy) -> String {
    match &policy.label {
        Some((k, v)) => format!("`{k}={v}`"),
        None => "(none is configured)".into(),
    }
}

/// Checks every Secret `spec` names and records the values of its keys in `book`.
pub async fn admit(
    api: &Api<Secret>,
    namespace: &str,
    policy: &SecretPolicy,
    spec: &PerfTestSpec,
    book: &SecretBook,
) -> Result<(), SecretError> {
    let mut read: BTreeMap<&str, Secret> = BTreeMap::new();
    for se in &spec.secret_env {
        if !read.contains_key(se.secret.as_str()) {
            let secret = api
                .get_opt(&se.secret)
                .await
                .map_err(|source| SecretError::Api {
                    secret: se.secret.clone(),
                    source,
                })?
                .ok_or_else(|| SecretError::Missing {
                    secret: se.secret.clone(),
                    namespace: namespace.to_string(),
                })?;
            let labels = secret.metadata.labels.clone().unwrap_or_default();
            if !allowed(policy, &se.secret, &labels) {
                return Err(SecretError::NotAllowed {
                    secret: se.secret.clone(),
                    label: label_text(policy),
                });
            }
            read.insert(se.secret.as_str(), secret);
        }
        let value = read
            .get(se.secret.as_str())
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(&se.key))
            .ok_or_else(|| SecretError::NoKey {
                secret: se.secret.clone(),
                key: se.key.clone(),
            })?;
        book.add(
            &se.secret,
            &se.key,
            String::from_utf8_lossy(&value.0).into_owned(),
        );
    }
    Ok(())
}

/// For a run adopted after a restart: the values of what its spec names, best effort (the
/// run is already running; a Secret gone since is only not masked).
pub async fn remember(api: &Api<Secret>, spec: &PerfTestSpec, book: &SecretBook) {
    let wanted: BTreeSet<(&str, &str)> = spec
        .secret_env
        .iter()
        .map(|se| (se.secret.as_str(), se.key.as_str()))
        .filter(|(s, k)| !book.knows(s, k))
        .collect();
    for (secret, key) in wanted {
        if let Ok(Some(s)) = api.get_opt(secret).await {
            if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
                book.add(secret, key, String::from_utf8_lossy(&v.0).into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_allowed_by_name_or_by_the_label() {
        let policy = SecretPolicy {
            names: vec!["k6-*".into()],
            label: Some(("perfsync.dev/runner-secret".into(), "true".into())),
        };
        let none = BTreeMap::new();
        let labelled = BTreeMap::from([("perfsync.dev/runner-secret".into(), "true".into())]);
        let other = BTreeMap::from([("perfsync.dev/runner-secret".into(), "yes".into())]);
        assert!(allowed(&policy, "k6-creds", &none));
        assert!(allowed(&policy, "db", &labelled));
        assert!(!allowed(&policy, "db", &other));
        assert!(!allowed(&policy, "db", &none));
        let by_name_only = SecretPolicy {
            names: vec!["k6-*".into()],
            label: None,
        };
        assert!(!allowed(&by_name_only, "db", &labelled));
    }
}
