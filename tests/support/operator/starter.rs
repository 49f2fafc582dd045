//! The starter Job as the operator builds it (`NewStarterJob`, `NewStartContainer`): a `curl`
//! per runner Service that PATCHes k6's `/v1/status` with `paused: false`.

use super::runners::{annotations, labels, owner, pod_spec, put};
use super::{s, Version};
use serde_json::{json, Value};

pub const DEFAULT_IMAGE: &str = "ghcr.io/grafana/k6-operator:latest-starter";

pub fn job_name(testrun: &str) -> String {
    format!("{testrun}-starter")
}

/// The body k6's REST API takes to resume a paused test.
pub fn resume_body() -> String {
    json!({"data": {"attributes": {"paused": false, "stopped": false}, "id": "default", "type": "status"}})
        .to_string()
}

/// One shell line: a `curl` per host (a Service's cluster IP), joined with `;`.
pub fn script(hosts: &[String]) -> String {
    let body = resume_body();
    hosts
        .iter()
        .map(|h| {
            format!(
                "curl --retry 3 -X PATCH -H 'Content-Type: application/json' http://{h}:6565/v1/status -d '{body}' -s -w '\\n{{\"http_code\":%{{http_code}},\"url\":\"%{{url_effective}}\",\"errormsg\":\"%{{errormsg}}\"}}'"
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Starter Job `<testrun>-starter` for the runners behind `hosts`.
pub fn job(tr: &Value, hosts: &[String], version: Version) -> Value {
    let spec = &tr["spec"];
    let starter = &spec["starter"];
    let name = s(tr, "/metadata/name");
    let image = match s(starter, "/image") {
        "" => DEFAULT_IMAGE,
        x => x,
    };
    let own = starter.get("resources").cloned().unwrap_or(Value::Null);
    let has_own = ["requests", "limits"]
        .iter()
        .any(|k| own[*k].as_object().is_some_and(|m| !m.is_empty()));
    let resources = match (has_own, version) {
        (true, _) => own,
        // v1.6 falls back to small requests and limits; v1.5 sets none.
        (false, Version::V1_6) => json!({"requests": {"cpu": "50m", "memory": "2Mi"},
            "limits": {"cpu": "100m", "memory": "200Mi"}}),
        (false, Version::V1_5) => json!({}),
    };
    let mut c = json!({"name": "k6-curl", "image": image,
        "command": ["sh", "-c", script(hosts)], "resources": resources,
        "securityContext": starter.get("containerSecurityContext").cloned().unwrap_or_else(|| json!({}))});
    put(
        &mut c,
        "imagePullPolicy",
        starter
            .get("imagePullPolicy")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let pod = pod_spec(starter, vec![c], Value::Null);
    let labels = labels(name, false, starter);
    let annotations = annotations(starter);
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(name), "labels": labels, "annotations": annotations, "ownerReferences": owner(tr)},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}}})
}
