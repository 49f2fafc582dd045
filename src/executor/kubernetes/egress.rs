//! Egress enforced at run time. A static scan of a script can never prove where it connects
//! (URLs built at run time, redirects, gRPC), so each run gets a policy object that lets its
//! pods — selected by `perfsync.dev/run`, a label only perfsync sets — reach only the
//! cluster's DNS, each other's k6 REST API (the starter resuming the runners) and what the
//! policy allows. The object is owned by the TestRun, so it goes when the run's TestRun goes.
//!
//! `networkpolicy`: a `networking.k8s.io/v1` NetworkPolicy with `ipBlock`s — the policy's
//! CIDRs and the addresses its exact host names resolve to when the run starts (a host glob
//! like `*.example.com` cannot be resolved, so it is not reachable in this mode). `cilium`:
//! a `CiliumNetworkPolicy` with `toFQDNs`, which follows names and globs as DNS answers
//! change. Either is enforced only by a CNI that implements it.

use crate::spec::allowlist::{EgressHost, EgressRule};
use crate::spec::render::{LABEL_RUN, MANAGED_BY};
use serde_json::{json, Value};
use std::net::IpAddr;

/// How egress is enforced (`executor.egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    NetworkPolicy,
    Cilium,
    /// Nothing is created: the cluster's own policies are all there is.
    Off,
}

/// The TestRun that owns the policy object.
pub struct Owner<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

pub fn policy_name(testrun: &str) -> String {
    format!("{testrun}-egress")
}

fn metadata(testrun: &str, run: &str, namespace: &str, owner: &Owner) -> Value {
    json!({
        "name": policy_name(testrun),
        "namespace": namespace,
        "labels": {MANAGED_BY.0: MANAGED_BY.1, LABEL_RUN: run},
        "ownerReferences": [{
            "apiVersion": "k6.io/v1alpha1", "kind": "TestRun",
            "name": owner.name, "uid": owner.uid,
        }],
    })
}

fn ports(port: Option<u16>) -> Value {
    match port {
        Some(p) => json!([{"protocol": "TCP", "port": p}]),
        None => json!([]),
    }
}

/// The NetworkPolicy of run `run`: `resolved` holds the addresses of the exact names.
pub fn network_policy(
    testrun: &str,
    run: &str,
    namespace: &str,
    owner: &Owner,
    rules: &[EgressRule],
    resolved: &[(IpAddr, Option<u16>)],
) -> Value {
    let me = json!({"matchLabels": {LABEL_RUN: run}});
    let mut egress = vec![
        json!({
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }),
        json!({"to": [{"podSelector": me}], "ports": [{"protocol": "TCP", "port": 6565}]}),
    ];
    let mut add = |cidr: String, port: Option<u16>| {
        let mut rule = json!({"to": [{"ipBlock": {"cidr": cidr}}]});
        if port.is_some() {
            rule["ports"] = ports(port);
        }
        egress.push(rule);
    };
    for r in rules {
        if let EgressHost::Cidr(ip, prefix) = &r.host {
            add(format!("{ip}/{prefix}"), r.port);
        }
    }
    for (ip, port) in resolved {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        add(format!("{ip}/{bits}"), *port);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(testrun, run, namespace, owner),
        "spec": {"podSelector": me, "policyTypes": ["Egress"], "egress": egress},
    })
}

/// The CiliumNetworkPolicy of run `run`: names and globs as `toFQDNs` (Cilium's `*` stands
/// for one DNS label: a deeper name under a glob is refused, never allowed).
pub fn cilium_policy(
    testrun: &str,
    run: &str,
    namespace: &str,
    owner: &Owner,
    rules: &[EgressRule],
) -> Value {
    let me = json!({"matchLabels": {LABEL_RUN: run}});
    let cilium_ports = |port: Option<u16>| match port {
        Some(p) => json!([{"ports": [{"port": p.to_string(), "protocol": "TCP"}]}]),
        None => json!([]),
    };
    let mut egress = vec![
        json!({
            "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}],
            "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
        }),
        json!({"toEndpoints": [me], "toPorts": [{"ports": [{"port": "6565", "protocol": "TCP"}]}]}),
    ];
    for r in rules {
        let mut rule = match &r.host {
            EgressHost::Name(n) => json!({"toFQDNs": [{"matchName": n}]}),
            EgressHost::Suffix(s) => json!({"toFQDNs": [{"matchPattern": format!("*.{s}")}]}),
            EgressHost::Cidr(ip, prefix) => json!({"toCIDR": [format!("{ip}/{prefix}")]}),
        };
        if r.port.is_some() {
            rule["toPorts"] = cilium_ports(r.port);
        }
        egress.push(rule);
    }
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(testrun, run, namespace, owner),
        "spec": {"endpointSelector": me, "egress": egress},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::allowlist::Allowlist;

    #[test]
    fn only_dns_the_run_itself_and_the_policy() {
        let rules = Allowlist::parse(&[
            "https://api.staging.example.com",
            "http://*.internal.example.com:8080",
            "http://10.20.0.0/16",
        ])
        .unwrap()
        .egress();
        let owner = Owner {
            name: "t-1",
            uid: "u-1",
        };
        let resolved = [("10.9.8.7".parse().unwrap(), None)];
        let np = network_policy("t-1", "t-abc-1", "runs", &owner, &rules, &resolved);
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][LABEL_RUN],
            "t-abc-1"
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
        let cidrs: Vec<String> = np["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["to"][0]["ipBlock"]["cidr"].as_str().map(str::to_string))
            .collect();
        // The glob cannot be resolved: it is not reachable in this mode.
        assert_eq!(cidrs, vec!["10.20.0.0/16", "10.9.8.7/32"]);
        assert_eq!(np["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let cnp = cilium_policy("t-1", "t-abc-1", "runs", &owner, &rules);
        let text = cnp.to_string();
        assert!(text.contains("\"matchName\":\"api.staging.example.com\""));
        assert!(text.contains("\"matchPattern\":\"*.internal.example.com\""));
        assert!(text.contains("\"port\":\"8080\""));
    }
}
