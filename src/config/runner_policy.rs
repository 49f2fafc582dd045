//! What a test may set about its runner pods on the kubernetes executor. The repository can
//! never widen these: a test that asks for more is invalid, naming the policy key.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunnerPolicy {
    /// Images a test may name in `runner.image` (`*` matches any characters, e.g.
    /// `grafana/k6:*`). Empty: a test names none; the config's runner image applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    /// Secrets a test's `secretEnv` may name, in the runs namespace (`*` globs allowed).
    /// Empty: no `secretEnv` at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_secrets: Vec<String>,
    /// A label (`key=value`) the operator puts on Secrets in the runs namespace that any test
    /// may name, whatever their names. The kubernetes executor reads each Secret before a run
    /// starts; one that matches no `allowedSecrets` name and lacks this label starts nothing.
    /// `perfsync validate` cannot see labels, so it accepts such names when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_secret_label: Option<String>,
    /// Whether a test may set `runner.nodeSelector` (otherwise the config's applies).
    #[serde(default)]
    pub allow_node_selector: bool,
    /// Whether a test may set `runner.tolerations` (otherwise the config's apply).
    #[serde(default)]
    pub allow_tolerations: bool,
    /// The most CPU one runner may request or be limited to (a quantity, e.g. `4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<String>,
    /// The most memory one runner may request or be limited to (e.g. `8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
}

impl RunnerPolicy {
    /// Checks what serde cannot: the limits parse as quantities.
    pub fn check(&self) -> Result<(), String> {
        for (key, v) in [("maxCpu", &self.max_cpu), ("maxMemory", &self.max_memory)] {
            if let Some(q) = v {
                crate::spec::k8s::check_quantity(q)
                    .map_err(|e| format!("policy.runner.{key}: {e}"))?;
            }
        }
        if let Some(l) = &self.allowed_secret_label {
            let (k, v) = l.split_once('=').ok_or_else(|| {
                format!("policy.runner.allowedSecretLabel: `{l}` is not `key=value`")
            })?;
            crate::spec::k8s::check_label_key(k)
                .and_then(|()| crate::spec::k8s::check_label_value(v))
                .map_err(|e| format!("policy.runner.allowedSecretLabel: {e}"))?;
        }
        Ok(())
    }

    /// `allowedSecretLabel` as `(key, value)`, once [`RunnerPolicy::check`] passed.
    pub fn secret_label(&self) -> Option<(String, String)> {
        let (k, v) = self.allowed_secret_label.as_deref()?.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_matches(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs() {
        assert!(glob_matches("grafana/k6:*", "grafana/k6:1.1.0"));
        assert!(!glob_matches("grafana/k6:*", "evil/k6:1.1.0"));
        assert!(!glob_matches("grafana/k6:*", "grafana/k6"));
        assert!(glob_matches("k6-*-creds", "k6-api-creds"));
        assert!(!glob_matches("k6-*-creds", "perfsync"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
