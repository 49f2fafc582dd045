//! RBAC as the apiserver's authorizer applies one Role (or ClusterRole): a request is allowed
//! when some rule names its API group, its resource (`pods/log`, `perftests/status`, `*`,
//! `*/status`), its verb, and (with `resourceNames`) its object. A Role grants only in its own
//! namespace; denials answer `403 Forbidden` with the real message.

use super::{status, Access};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Role {
    /// `None` for a ClusterRole (or a Role without a namespace): every namespace.
    pub namespace: Option<String>,
    pub cluster: bool,
    /// Who the bearer token is: `system:serviceaccount:<namespace>:perfsync`.
    pub user: String,
    rules: Vec<Rule>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn resource_matches(rule: &str, resource: &str) -> bool {
    if rule == "*" || rule == resource {
        return true;
    }
    // `*/status` matches the status subresource of everything.
    match (rule.strip_prefix("*/"), resource.split_once('/')) {
        (Some(sub), Some((_, rsub))) => sub == rsub,
        _ => false,
    }
}

impl Role {
    pub fn parse(yaml: &str) -> Role {
        let role: Value = serde_yaml::from_str(yaml).expect("Role YAML");
        let cluster = role["kind"] == "ClusterRole";
        let namespace = (!cluster)
            .then(|| role.pointer("/metadata/namespace").and_then(Value::as_str))
            .flatten()
            .map(str::to_string);
        let rules = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Rule {
                groups: strings(r, "apiGroups"),
                resources: strings(r, "resources"),
                verbs: strings(r, "verbs"),
                names: strings(r, "resourceNames"),
            })
            .collect();
        Role {
            user: format!(
                "system:serviceaccount:{}:perfsync",
                namespace.as_deref().unwrap_or("perfsync")
            ),
            namespace,
            cluster,
            rules,
        }
    }

    /// Whether a request in namespace `ns` ("" for cluster scope) on object `name` is allowed.
    pub fn allows(&self, a: &Access, ns: &str, name: Option<&str>) -> bool {
        if ns.is_empty() && !self.cluster {
            return false;
        }
        if let Some(own) = &self.namespace {
            if own != ns {
                return false;
            }
        }
        self.rules.iter().any(|r| {
            r.groups.iter().any(|g| g == "*" || *g == a.group)
                && r.resources.iter().any(|x| resource_matches(x, &a.resource))
                && r.verbs.iter().any(|v| v == "*" || *v == a.verb)
                && (r.names.is_empty() || name.is_some_and(|n| r.names.iter().any(|x| x == n)))
        })
    }

    /// `403`: `testruns.k6.io "x" is forbidden: User "…" cannot create resource "testruns" in
    /// API group "k6.io" in the namespace "perfsync"`.
    pub fn forbidden(&self, a: &Access, ns: &str, name: Option<&str>) -> (u16, Value) {
        let base = a.resource.split('/').next().unwrap_or(&a.resource);
        let gr = if a.group.is_empty() {
            base.to_string()
        } else {
            format!("{base}.{}", a.group)
        };
        let scope = if ns.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{ns}\"")
        };
        let why = format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            self.user, a.verb, a.resource, a.group
        );
        let message = match name {
            Some(n) => format!("{gr} \"{n}\" is forbidden: {why}"),
            None => format!("{gr} is forbidden: {why}"),
        };
        let mut s = status(403, "Forbidden", &message);
        s["details"] = json!({"name": name.unwrap_or(""), "group": a.group, "kind": base});
        (403, s)
    }
}
