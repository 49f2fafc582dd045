//! The documents users write: `PerfTest` and `PerfTemplate` (DESIGN.md section 1).
//! Every struct rejects unknown fields so a typo is an error, never a silent default.

use super::duration::KDuration;
use super::small_map::SmallMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Threshold expressions per metric (sub-metric selectors included), as a spec writes them.
pub type Thresholds = SmallMap<String, Vec<ThresholdEntry>>;

pub const API_VERSION: &str = "perfsync.dev/v1alpha1";
pub const KIND_TEST: &str = "PerfTest";
pub const KIND_TEMPLATE: &str = "PerfTemplate";

/// One load test: a k6 script (or a template) plus how, where and how hard to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "PerfTest")]
pub struct PerfTest {
    /// Always `perfsync.dev/v1alpha1`.
    pub api_version: String,
    /// Always `PerfTest`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PerfTestSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// A DNS-1123 label of at most 40 characters, unique in the repository.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Kubernetes labels, copied to the test's ConfigMap and TestRun (never to its pods).
    /// perfsync's own keys (`perfsync.dev/…`, `app.kubernetes.io/managed-by`) and the
    /// k6-operator's (`app`, `k6_cr`, `runner`, `job-name`) are refused.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub labels: SmallMap<String, String>,
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub annotations: SmallMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PerfTestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Path of the k6 script inside the test's folder. Exactly one of `script` and `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A PerfTemplate to render instead of a script of the test's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// Every base URL the test may reach; each must be inside the operator's allowlist.
    #[schemars(length(min = 1))]
    pub targets: Vec<String>,
    /// Overrides the load options of the script itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    /// Number of k6-operator runners (default 1, at most 9999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9999))]
    pub parallelism: Option<u32>,
    /// k6 threshold expressions per metric, judged by perfsync over the whole run.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub thresholds: Thresholds,
    /// Plain environment values. Secrets belong in `secretEnv`. Names are shell identifiers
    /// (`[A-Za-z_][A-Za-z0-9_]*`).
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub env: SmallMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnv>,
    /// k6 tags added to every metric. Keys: 1–64 of `A-Za-z0-9_.-`; values: 1–256 of
    /// `A-Za-z0-9_.:/@+=,-` (they reach a shell unquoted on the k6-operator).
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub tags: SmallMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerSettings>,
    #[serde(default)]
    pub trigger: Trigger,
    /// Past it the run is stopped and recorded as `timeout`. Default: the policy's `defaultTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KDuration>,
    /// Keep validating, never run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Run id to compare every run against, instead of the previous succeeded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Custom Trend metrics of the script whose p95 the regression gate and the change points
    /// track too, next to `http_req_duration` (k6 metric names, `[A-Za-z_][A-Za-z0-9_]*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        inner(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))
    )]
    pub tracked_trends: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub params: SmallMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Load {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub vus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<KDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stage {
    pub duration: KDuration,
    pub target: u32,
}

/// A threshold as k6 writes it: an expression, or an object with abort settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ThresholdEntry {
    Expr(String),
    Object(ThresholdObject),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThresholdObject {
    pub threshold: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_on_fail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_abort_eval: Option<KDuration>,
}

impl ThresholdEntry {
    pub fn expression(&self) -> &str {
        match self {
            ThresholdEntry::Expr(s) => s,
            ThresholdEntry::Object(o) => &o.threshold,
        }
    }
}

/// An environment variable filled from a Kubernetes Secret; the value never passes through git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretEnv {
    pub name: String,
    pub secret: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunnerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Trigger {
    /// Run when the test's content changes (default true).
    #[serde(default = "yes")]
    pub on_change: bool,
    /// Five-field cron, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            on_change: true,
            schedule: None,
        }
    }
}

/// A reusable script with `${NAME}` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "PerfTemplate")]
pub struct PerfTemplate {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PerfTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PerfTemplateSpec {
    pub category: Category,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Path of the script inside the template's folder; `${NAME}` is replaced, `$${` is a literal `${`.
    pub script: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Api,
    Websocket,
    Grpc,
    Browser,
    Database,
    Composite,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParamSpec {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl PerfTestSpec {
    pub fn parallelism(&self) -> u32 {
        self.parallelism.unwrap_or(1)
    }
}
