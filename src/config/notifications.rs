//! `notifications:` — chat and webhook sinks told about run verdicts, each with its filters;
//! `delivery:` — how the outbox retries whatever goes to a forge or a sink.

use super::forge::is_name;
use super::SecretRef;
use crate::spec::duration::KDuration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Slack incoming webhook: a message with Block Kit `blocks` and a `text` fallback.
    Slack,
    /// A Microsoft Teams webhook (a Workflows "When a Teams webhook request is received"
    /// flow, or a legacy incoming webhook): a message with one Adaptive Card.
    Teams,
    /// Any HTTP endpoint: perfsync's versioned JSON payload (`perfsync.dev/v1`), signed with
    /// HMAC-SHA256 in `X-Perfsync-Signature-256`.
    Webhook,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Slack => "slack",
            SinkKind::Teams => "teams",
            SinkKind::Webhook => "webhook",
        }
    }
}

/// Which run endings a sink hears about (`on:`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// A run whose thresholds failed.
    Failed,
    /// A run that could not be run or judged.
    Error,
    /// A run stopped at its timeout.
    Timeout,
    /// A run stopped by a person, or by its test's deletion.
    Aborted,
    /// A run flagged as a regression against its baseline (whatever its verdict).
    Regression,
    /// A succeeded run whose test's previous verdict was failed, error or timeout.
    Recovered,
    /// Every succeeded run.
    Succeeded,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failed => "failed",
            NotifyOn::Error => "error",
            NotifyOn::Timeout => "timeout",
            NotifyOn::Aborted => "aborted",
            NotifyOn::Regression => "regression",
            NotifyOn::Recovered => "recovered",
            NotifyOn::Succeeded => "succeeded",
        }
    }
}

fn default_on() -> Vec<NotifyOn> {
    vec![
        NotifyOn::Failed,
        NotifyOn::Error,
        NotifyOn::Timeout,
        NotifyOn::Aborted,
        NotifyOn::Regression,
        NotifyOn::Recovered,
    ]
}

/// A Kubernetes-style label selector over a test's `metadata.labels`: every `matchLabels`
/// pair and every `matchExpressions` requirement must hold. An empty selector selects all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    /// The values for `In` and `NotIn` (at least one); none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One notification sink and what it hears about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkConfig {
    /// Names the sink in logs and in the delivery outbox (its URL is a secret and never
    /// shown). Keep it stable: deliveries are keyed by it. Lowercase letters, digits, `-`.
    pub name: String,
    pub kind: SinkKind,
    /// The webhook URL (it carries the credential: a secret reference).
    pub url: SecretRef,
    /// The HMAC-SHA256 key of `X-Perfsync-Signature-256` (`webhook` sinks; required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Which endings are sent. Default: failed, error, timeout, aborted, regression,
    /// recovered.
    #[serde(default = "default_on")]
    pub on: Vec<NotifyOn>,
    /// Which tests, by their labels; all tests when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<LabelSelector>,
}

/// How deliveries to forges and sinks are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveryConfig {
    /// Attempts before a delivery is given up (recorded as failed with its last error).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each (with jitter).
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: KDuration,
    /// The longest wait between two attempts (a `Retry-After` may ask for longer, up to an
    /// hour).
    #[serde(default = "default_max_backoff")]
    pub max_backoff: KDuration,
    /// How long one request may take.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: KDuration,
}

fn default_max_attempts() -> u32 {
    10
}
fn default_initial_backoff() -> KDuration {
    KDuration::from_secs(2)
}
fn default_max_backoff() -> KDuration {
    KDuration::from_secs(300)
}
fn default_request_timeout() -> KDuration {
    KDuration::from_secs(10)
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            request_timeout: default_request_timeout(),
        }
    }
}

impl DeliveryConfig {
    pub fn is_default(&self) -> bool {
        *self == DeliveryConfig::default()
    }

    pub fn check(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("delivery.maxAttempts: between 1 and 100".into());
        }
        let (i, m, t) = (
            self.initial_backoff.as_duration(),
            self.max_backoff.as_duration(),
            self.request_timeout.as_duration(),
        );
        if i.is_zero() || i > m {
            return Err("delivery.initialBackoff: more than 0 and at most maxBackoff".into());
        }
        if t.is_zero() || t > std::time::Duration::from_secs(300) {
            return Err("delivery.requestTimeout: more than 0 and at most 5m".into());
        }
        Ok(())
    }
}

impl LabelSelector {
    /// Whether a test with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.operator {
                    LabelOperator::In => got.is_some_and(|v| r.values.contains(v)),
                    LabelOperator::NotIn => !got.is_some_and(|v| r.values.contains(v)),
                    LabelOperator::Exists => got.is_some(),
                    LabelOperator::DoesNotExist => got.is_none(),
                }
            })
    }

    fn check(&self, key: &str) -> Result<(), String> {
        use crate::spec::k8s::{check_label_key, check_label_value};
        for (k, v) in &self.match_labels {
            check_label_key(k).map_err(|e| format!("{key}.matchLabels: {e}"))?;
            check_label_value(v).map_err(|e| format!("{key}.matchLabels: {e}"))?;
        }
        for (j, r) in self.match_expressions.iter().enumerate() {
            let key = format!("{key}.matchExpressions[{j}]");
            check_label_key(&r.key).map_err(|e| format!("{key}.key: {e}"))?;
            match r.operator {
                LabelOperator::In | LabelOperator::NotIn if r.values.is_empty() => {
                    return Err(format!("{key}.values: `In` and `NotIn` need values"))
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist if !r.values.is_empty() => {
                    return Err(format!(
                        "{key}.values: `Exists` and `DoesNotExist` take no values"
                    ))
                }
                _ => {}
            }
            for v in &r.values {
                check_label_value(v).map_err(|e| format!("{key}.values: {e}"))?;
            }
        }
        Ok(())
    }
}

impl SinkConfig {
    pub fn check(&self, i: usize) -> Result<(), String> {
        let key = format!("notifications[{i}]");
        if !is_name(&self.name) {
            return Err(format!(
                "{key}.name: `{}` is not a name; use 1-63 lowercase letters, digits and `-`, e.g. `team-slack`",
                self.name
            ));
        }
        match (self.kind, &self.secret) {
            (SinkKind::Webhook, None) => {
                return Err(format!(
                    "{key}.secret: a webhook sink signs every payload; give a secret reference, e.g. {{env: PERFSYNC_WEBHOOK_SECRET}}"
                ))
            }
            (SinkKind::Slack | SinkKind::Teams, Some(_)) => {
                return Err(format!(
                    "{key}.secret: only `webhook` sinks are signed; {} takes its credential in the URL",
                    self.kind.as_str()
                ))
            }
            _ => {}
        }
        if self.on.is_empty() {
            return Err(format!(
                "{key}.on: an empty list sends nothing; list endings (failed, error, timeout, aborted, regression, recovered, succeeded) or leave it out"
            ));
        }
        if let Some(s) = &self.tests {
            s.check(&format!("{key}.tests"))?;
        }
        Ok(())
    }
}

/// Every sink checked, names unique.
pub fn check_all(sinks: &[SinkConfig]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in sinks.iter().enumerate() {
        s.check(i)?;
        if !seen.insert(s.name.as_str()) {
            return Err(format!(
                "notifications[{i}].name: `{}` is used twice",
                s.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let s: LabelSelector = serde_yaml::from_str(
            "matchLabels: {team: shop}\nmatchExpressions:\n- {key: tier, operator: In, values: [gold, silver]}\n- {key: flaky, operator: DoesNotExist}\n",
        )
        .unwrap();
        assert!(s.matches(&labels(&[("team", "shop"), ("tier", "gold")])));
        assert!(!s.matches(&labels(&[("team", "shop"), ("tier", "bronze")])));
        assert!(!s.matches(&labels(&[("team", "shop")])));
        assert!(!s.matches(&labels(&[
            ("team", "shop"),
            ("tier", "gold"),
            ("flaky", "")
        ])));
        assert!(LabelSelector::default().matches(&labels(&[])));
        let not_in = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelRequirement {
                key: "team".into(),
                operator: LabelOperator::NotIn,
                values: vec!["billing".into()],
            }],
        };
        assert!(not_in.matches(&labels(&[])));
        assert!(!not_in.matches(&labels(&[("team", "billing")])));
    }

    #[test]
    fn sinks_are_checked() {
        let url = SecretRef {
            env: Some("U".into()),
            file: None,
        };
        let mut s = SinkConfig {
            name: "hooks".into(),
            kind: SinkKind::Webhook,
            url: url.clone(),
            secret: None,
            on: default_on(),
            tests: None,
        };
        assert!(s.check(0).unwrap_err().contains("secret"));
        s.secret = Some(url.clone());
        assert_eq!(s.check(0), Ok(()));
        s.on.clear();
        assert!(s.check(0).is_err());
        s.on = vec![NotifyOn::Failed];
        s.tests = Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelRequirement {
                key: "team".into(),
                operator: LabelOperator::In,
                values: vec![],
            }],
        });
        assert!(s.check(0).unwrap_err().contains("need values"));
        let slack = SinkConfig {
            name: "Team Slack".into(),
            kind: SinkKind::Slack,
            url,
            secret: None,
            on: default_on(),
            tests: None,
        };
        assert!(slack
            .check(2)
            .unwrap_err()
            .starts_with("notifications[2].name"));
    }

    #[test]
    fn delivery_defaults_hold() {
        let d = DeliveryConfig::default();
        assert_eq!(d.check(), Ok(()));
        let bad = DeliveryConfig {
            initial_backoff: KDuration::from_secs(600),
            ..DeliveryConfig::default()
        };
        assert!(bad.check().is_err());
    }
}
