//! The runner Jobs and Services as the operator builds them (`NewRunnerJob`,
//! `NewRunnerService`), and the helpers the other builders share.

use super::args::argv;
use super::{s, Version};
use serde_json::{json, Map, Value};

/// The script of a TestRun: only `spec.script.configMap` is modelled.
#[derive(Debug, Clone)]
pub struct Script {
    pub configmap: String,
    pub file: String,
}

impl Script {
    pub fn of(spec: &Value) -> Result<Script, String> {
        let name = s(spec, "/script/configMap/name");
        if name.is_empty() {
            return Err(
                "script definition should name a ConfigMap (the only kind modelled)".into(),
            );
        }
        let file = match s(spec, "/script/configMap/file") {
            "" => "test.js",
            f => f,
        };
        Ok(Script {
            configmap: name.to_string(),
            file: file.to_string(),
        })
    }

    /// Where the pods see it.
    pub fn full_name(&self) -> String {
        format!("/test/{}", self.file)
    }

    pub fn volume(&self) -> Value {
        json!({"name": "k6-test-volume", "configMap": {"name": self.configmap}})
    }

    pub fn volume_mount(&self) -> Value {
        json!({"name": "k6-test-volume", "mountPath": "/test", "readOnly": true})
    }
}

/// `app=k6`, `k6_cr=<testrun>`, then `extra` (the pod section's `metadata.labels`), which
/// never overrides a label already there.
pub fn labels(testrun: &str, runner: bool, section: &Value) -> Value {
    let mut l = Map::new();
    l.insert("app".into(), json!("k6"));
    l.insert("k6_cr".into(), json!(testrun));
    if runner {
        l.insert("runner".into(), json!("true"));
    }
    if let Some(extra) = section
        .pointer("/metadata/labels")
        .and_then(|x| x.as_object())
    {
        for (k, v) in extra {
            l.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Value::Object(l)
}

pub fn annotations(section: &Value) -> Value {
    section
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// The owner reference `SetControllerReference` puts on what the operator creates.
pub fn owner(tr: &Value) -> Value {
    json!([{"apiVersion": "k6.io/v1alpha1", "kind": "TestRun", "name": tr["metadata"]["name"],
        "uid": tr["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

/// Sets `key` unless the value is null or empty (Go's `omitempty`).
pub fn put(obj: &mut Value, key: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(x) => x.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        obj[key] = v;
    }
}

fn bool_or(section: &Value, key: &str, default: bool) -> bool {
    match section[key].as_str() {
        Some(x) if !x.is_empty() => x.parse().unwrap_or(false),
        _ => default,
    }
}

/// The pod spec fields every operator pod copies from its section of the TestRun.
pub fn pod_spec(section: &Value, containers: Vec<Value>, volumes: Value) -> Value {
    let sa = match s(section, "/serviceAccountName") {
        "" => "default",
        x => x,
    };
    let scheduler = match s(section, "/schedulerName") {
        "" => "default-scheduler",
        x => x,
    };
    let mut spec = json!({
        "automountServiceAccountToken": bool_or(section, "automountServiceAccountToken", true),
        "serviceAccountName": sa,
        "restartPolicy": "Never",
        "schedulerName": scheduler,
        "securityContext": section.get("securityContext").cloned().unwrap_or_else(|| json!({})),
        "containers": containers,
    });
    for key in [
        "affinity",
        "nodeSelector",
        "tolerations",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "priorityClassName",
    ] {
        put(
            &mut spec,
            key,
            section.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    put(&mut spec, "volumes", volumes);
    spec
}

/// The k6 container fields copied from a section.
pub fn container(
    section: &Value,
    image_default: &str,
    command: Vec<String>,
    env: Value,
    ports: Value,
) -> Value {
    let image = match s(section, "/image") {
        "" => image_default,
        x => x,
    };
    let mut c = json!({"name": "k6", "image": image, "command": command,
        "resources": section.get("resources").cloned().unwrap_or_else(|| json!({})),
        "securityContext": section.get("containerSecurityContext").cloned().unwrap_or_else(|| json!({}))});
    put(
        &mut c,
        "imagePullPolicy",
        section
            .get("imagePullPolicy")
            .cloned()
            .unwrap_or(Value::Null),
    );
    put(&mut c, "env", env);
    put(
        &mut c,
        "envFrom",
        section.get("envFrom").cloned().unwrap_or(Value::Null),
    );
    put(&mut c, "ports", ports);
    c
}

pub fn ports(spec: &Value) -> Value {
    let mut p = vec![json!({"containerPort": 6565, "protocol": "TCP"})];
    p.extend(spec["ports"].as_array().cloned().unwrap_or_default());
    Value::Array(p)
}

pub fn volumes_and_mounts(script: &Script, section: &Value) -> (Value, Value) {
    let mut v = vec![script.volume()];
    v.extend(section["volumes"].as_array().cloned().unwrap_or_default());
    let mut m = vec![script.volume_mount()];
    m.extend(
        section["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    (Value::Array(v), Value::Array(m))
}

/// `--execution-segment=a:b` and `--execution-segment-sequence=0,1/n,…,1` for runner
/// `index` (from 1) of `total`, fractions unreduced as the operator writes them.
pub fn segment_flags(index: u32, total: u32) -> Vec<String> {
    let at = |i: u32| match i {
        0 => "0".to_string(),
        i if i == total => "1".to_string(),
        i => format!("{i}/{total}"),
    };
    let sequence: Vec<String> = (0..=total).map(at).collect();
    vec![
        format!("--execution-segment={}:{}", at(index - 1), at(index)),
        format!("--execution-segment-sequence={}", sequence.join(",")),
    ]
}

/// The runner command: `k6 run [--quiet] [segments] <argv> /test/<file> --address=0.0.0.0:6565
/// [--paused] --tag instance_id=<i> --tag testrun_name=<testrun>`.
pub fn command(tr: &Value, index: u32, version: Version) -> Result<Vec<String>, String> {
    let spec = &tr["spec"];
    let script = Script::of(spec)?;
    let n = spec["parallelism"].as_u64().unwrap_or(1) as u32;
    let mut cmd = vec!["k6".to_string(), "run".to_string()];
    if bool_or(spec, "quiet", true) {
        cmd.push("--quiet".into());
    }
    if n > 1 {
        cmd.extend(segment_flags(index, n));
    }
    cmd.extend(argv(spec, version));
    cmd.push(script.full_name());
    cmd.push("--address=0.0.0.0:6565".into());
    if bool_or(spec, "paused", true) {
        cmd.push("--paused".into());
    }
    let name = s(tr, "/metadata/name");
    cmd.extend([
        "--tag".to_string(),
        format!("instance_id={index}"),
        "--tag".to_string(),
        format!("testrun_name={name}"),
    ]);
    Ok(cmd)
}

pub fn job_name(testrun: &str, index: u32) -> String {
    format!("{testrun}-{index}")
}

pub fn service_name(testrun: &str, index: u32) -> String {
    format!("{testrun}-service-{index}")
}

/// Runner Job `<testrun>-<index>`.
pub fn job(tr: &Value, index: u32, version: Version) -> Result<Value, String> {
    let spec = &tr["spec"];
    let runner = &spec["runner"];
    let name = s(tr, "/metadata/name");
    let script = Script::of(spec)?;
    let job_name = job_name(name, index);
    let (volumes, mounts) = volumes_and_mounts(&script, runner);
    let probe = json!({"httpGet": {"path": "/v1/status", "port": 6565, "scheme": "HTTP"}});
    let mut c = container(
        runner,
        "grafana/k6:latest",
        command(tr, index, version)?,
        runner["env"].clone(),
        ports(spec),
    );
    c["volumeMounts"] = mounts;
    c["livenessProbe"] = runner
        .get("livenessProbe")
        .cloned()
        .unwrap_or_else(|| probe.clone());
    c["readinessProbe"] = runner.get("readinessProbe").cloned().unwrap_or(probe);
    let mut pod = pod_spec(runner, vec![c], volumes);
    pod["hostname"] = json!(job_name);
    if spec["separate"].as_bool() == Some(true) {
        pod["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["k6"]},
                {"key": "runner", "operator": "In", "values": ["true"]}]},
            "topologyKey": "kubernetes.io/hostname"}]}});
    }
    let labels = labels(name, true, runner);
    let annotations = annotations(runner);
    Ok(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "labels": labels, "annotations": annotations, "ownerReferences": owner(tr)},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}}}))
}

/// Runner Service `<testrun>-service-<index>`, selecting the runner Job's pod.
pub fn service(tr: &Value, index: u32) -> Value {
    let runner = &tr["spec"]["runner"];
    let name = s(tr, "/metadata/name");
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service_name(name, index), "labels": labels(name, true, runner),
            "annotations": annotations(runner), "ownerReferences": owner(tr)},
        "spec": {"ports": [{"name": "http-api", "port": 6565, "protocol": "TCP"}],
            "selector": {"job-name": job_name(name, index)}}})
}
