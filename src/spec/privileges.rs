//! What a test may ask of its runner pods: images, Secrets, node placement and resources
//! within the policy's `runner` settings; never a service account (the operator's alone).

use super::checks::{PolicyCheck, SpecSource};
use super::diagnostic::{Code, Diagnostic};
use super::k8s::quantity_value;
use super::locate::Seg::{self, Index, Key};
use super::model::PerfTest;
use crate::config::{glob_matches, RunnerPolicy};

fn refused(key: &str, what: &str) -> String {
    format!("{what}: the policy (`policy.runner.{key}`) does not allow it; ask the platform team, or remove it to use the config's runner settings")
}

/// Checks the test's runner settings and secrets against `policy.runner`.
pub fn check(
    src: &SpecSource,
    test: &PerfTest,
    policy: Option<&PolicyCheck>,
    out: &mut Vec<Diagnostic>,
) {
    let s = &test.spec;
    let runner = s.runner.clone().unwrap_or_default();
    let at = |k: &'static str| [Key("spec"), Key("runner"), Key(k)];
    if runner.service_account_name.is_some() {
        out.push(src.diag(
            &at("serviceAccountName"),
            Code::PolicyDenied,
            "runner.serviceAccountName is the operator's alone (`executor.runner.serviceAccountName` in perfsync's config); remove it",
        ));
    }
    let Some(p) = policy else {
        return;
    };
    let rp: &RunnerPolicy = &p.policy.runner;
    if let Some(image) = &runner.image {
        if !rp.allowed_images.iter().any(|g| glob_matches(g, image)) {
            out.push(src.diag(
                &at("image"),
                Code::PolicyDenied,
                refused("allowedImages", &format!("runner image `{image}`")),
            ));
        }
    }
    if !runner.node_selector.is_empty() && !rp.allow_node_selector {
        out.push(src.diag(
            &at("nodeSelector"),
            Code::PolicyDenied,
            refused("allowNodeSelector", "runner.nodeSelector"),
        ));
    }
    if !runner.tolerations.is_empty() && !rp.allow_tolerations {
        out.push(src.diag(
            &at("tolerations"),
            Code::PolicyDenied,
            refused("allowTolerations", "runner.tolerations"),
        ));
    }
    if let Some(res) = &runner.resources {
        for (kind, map) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, q) in map {
                let (key, max) = match name.as_str() {
                    "cpu" => ("maxCpu", &rp.max_cpu),
                    "memory" => ("maxMemory", &rp.max_memory),
                    _ => continue,
                };
                let over = match (max, quantity_value(q)) {
                    (Some(m), Some(v)) => quantity_value(m).is_none_or(|m| v > m),
                    _ => false,
                };
                if over {
                    let path: Vec<Seg> = vec![
                        Key("spec"),
                        Key("runner"),
                        Key("resources"),
                        Key(kind),
                        Key(name),
                    ];
                    out.push(src.diag(
                        &path,
                        Code::PolicyDenied,
                        format!(
                            "runner {kind}.{name} {q} is over `policy.runner.{key}` ({}); lower it",
                            max.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
        }
    }
    // The local executor resolves `secretEnv` by name from its own list instead. A Secret
    // allowed by label can only be checked where its labels are seen: the kubernetes executor
    // reads it before the run starts.
    let on_kubernetes = p.policy.local_secret_env.is_none() && rp.allowed_secret_label.is_none();
    for (i, se) in s.secret_env.iter().enumerate().filter(|_| on_kubernetes) {
        if !rp
            .allowed_secrets
            .iter()
            .any(|g| glob_matches(g, &se.secret))
        {
            out.push(src.diag(
                &[Key("spec"), Key("secretEnv"), Index(i), Key("secret")],
                Code::PolicyDenied,
                refused("allowedSecrets", &format!("Secret `{}`", se.secret)),
            ));
        }
    }
}
