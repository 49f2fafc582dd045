//! The `PerfTest` custom resource (perfsync.dev/v1alpha1): each valid test mirrored into the
//! cluster, so `kubectl get perftests` shows revision, last result and p95, and Argo CD can
//! use its conditions as a health check. The spec is a copy for people to read; the source of
//! truth stays the repository.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "perfsync.dev",
    version = "v1alpha1",
    kind = "PerfTest",
    plural = "perftests",
    shortname = "pt",
    root = "PerfTestMirror",
    namespaced,
    status = "PerfTestStatus",
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Last Result","type":"string","jsonPath":".status.lastResult"}"#,
    printcolumn = r#"{"name":"p95","type":"string","jsonPath":".status.p95"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRunTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The spec file in the repository.
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub targets: Vec<String>,
    pub parallelism: u32,
    /// Threshold expressions per metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub suspend: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerfTestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// p95 of the last run, e.g. `231.4ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Kubernetes-style condition: `Ready`, `Running`, `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl MirrorSpec {
    /// The mirror's spec for a valid test.
    pub fn from_test(rt: &crate::spec::catalog::ResolvedTest, file: &str) -> MirrorSpec {
        let s = &rt.test.spec;
        MirrorSpec {
            description: s.description.clone(),
            file: file.to_string(),
            script: s.script.clone(),
            template: s.template.as_ref().map(|t| t.name.clone()),
            targets: s.targets.clone(),
            parallelism: s.parallelism(),
            thresholds: s
                .thresholds
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.iter().map(|e| e.expression().to_string()).collect(),
                    )
                })
                .collect(),
            schedule: s.trigger.schedule.clone(),
            timeout: s.timeout.map(|t| t.to_string()),
            suspend: s.suspend,
        }
    }
}

/// The CRD as YAML, as `perfsync crd` prints it and `crds/perftest.yaml` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&PerfTestMirror::crd()).unwrap_or_default()
}
