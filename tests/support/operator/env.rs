//! What kubelet makes of a pod spec before it starts a container: the files of its ConfigMap
//! and Secret volumes, its environment (`envFrom`, `env` with `secretKeyRef`,
//! `configMapKeyRef`, `fieldRef`), and `$(VAR)` expansion.

use super::kubelet::PodRun;
use super::{s, Coll, Shared};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn secret_data(secret: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")) {
            out.insert(k.clone(), b);
        }
    }
    for (k, v) in secret["stringData"].as_object().into_iter().flatten() {
        out.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
    }
    out
}

pub fn configmap_data(cm: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in cm["data"].as_object().into_iter().flatten() {
        out.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
    }
    for (k, v) in cm["binaryData"].as_object().into_iter().flatten() {
        if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")) {
            out.insert(k.clone(), b);
        }
    }
    out
}

/// The files of one volume (`None`: a volume kind not modelled, mounted empty), or why it
/// cannot be set up.
pub fn volume_files(
    sh: &Arc<Shared>,
    ns: &str,
    vol: &Value,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let (source, kind, data) = if let Some(cm) = vol.get("configMap") {
        let name = s(cm, "/name");
        let obj = sh.store.get(&Coll::new("", "configmaps"), ns, name);
        (
            cm,
            format!("configmap \"{name}\" not found"),
            obj.map(|o| configmap_data(&o)),
        )
    } else if let Some(sec) = vol.get("secret") {
        let name = s(sec, "/secretName");
        let obj = sh.store.get(&Coll::new("", "secrets"), ns, name);
        (
            sec,
            format!("secret \"{name}\" not found"),
            obj.map(|o| secret_data(&o)),
        )
    } else {
        return Ok(None);
    };
    let optional = source["optional"].as_bool() == Some(true);
    let Some(data) = data else {
        return if optional {
            Ok(Some(BTreeMap::new()))
        } else {
            Err(kind)
        };
    };
    let Some(items) = source["items"].as_array() else {
        return Ok(Some(data));
    };
    let mut out = BTreeMap::new();
    for item in items {
        let key = s(item, "/key");
        match data.get(key) {
            Some(b) => {
                out.insert(s(item, "/path").to_string(), b.clone());
            }
            None if optional => {}
            None => {
                let what = if vol.get("configMap").is_some() {
                    "configmap"
                } else {
                    "secret"
                };
                return Err(format!("{what} references non-existent config key: {key}"));
            }
        }
    }
    Ok(Some(out))
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined reference is
/// kept as written, `$$` is a literal `$`.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' || i + 1 >= chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars[i + 1] {
            '$' => {
                out.push('$');
                i += 2;
            }
            '(' => match chars[i + 2..].iter().position(|c| *c == ')') {
                Some(len) => {
                    let name: String = chars[i + 2..i + 2 + len].iter().collect();
                    match vars.get(&name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    i += len + 3;
                }
                None => {
                    out.push_str("$(");
                    i += 2;
                }
            },
            c => {
                out.push('$');
                out.push(c);
                i += 2;
            }
        }
    }
    out
}

/// The container's environment, as kubelet builds it: `envFrom` first, then `env` in order
/// (a value may use `$(NAME)` of those before it).
pub fn environment(
    sh: &Arc<Shared>,
    run: &PodRun,
    pod: &Value,
    c: &Value,
) -> Result<Vec<(String, String)>, String> {
    let ns = run.ns.as_str();
    let secrets = Coll::new("", "secrets");
    let configmaps = Coll::new("", "configmaps");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(x, _)| *x != k);
        env.push((k, v));
    };
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = s(from, "/prefix");
        let optional = |r: &Value| r["optional"].as_bool() == Some(true);
        let data = if let Some(r) = from.get("secretRef") {
            match sh.store.get(&secrets, ns, s(r, "/name")) {
                Some(o) => secret_data(&o),
                None if optional(r) => continue,
                None => return Err(format!("secret \"{}\" not found", s(r, "/name"))),
            }
        } else if let Some(r) = from.get("configMapRef") {
            match sh.store.get(&configmaps, ns, s(r, "/name")) {
                Some(o) => configmap_data(&o),
                None if optional(r) => continue,
                None => return Err(format!("configmap \"{}\" not found", s(r, "/name"))),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let name = s(e, "/name").to_string();
        let known: BTreeMap<String, String> = env.iter().cloned().collect();
        let value = if let Some(v) = e.get("value").and_then(|v| v.as_str()) {
            expand(v, &known)
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            let (sn, key, optional) = (
                s(r, "/name"),
                s(r, "/key"),
                r["optional"].as_bool() == Some(true),
            );
            let Some(secret) = sh.store.get(&secrets, ns, sn) else {
                if optional {
                    continue;
                }
                return Err(format!("secret \"{sn}\" not found"));
            };
            match secret_data(&secret).get(key) {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None if optional => continue,
                None => return Err(format!("couldn't find key {key} in Secret {ns}/{sn}")),
            }
        } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
            let (cn, key, optional) = (
                s(r, "/name"),
                s(r, "/key"),
                r["optional"].as_bool() == Some(true),
            );
            let Some(cm) = sh.store.get(&configmaps, ns, cn) else {
                if optional {
                    continue;
                }
                return Err(format!("configmap \"{cn}\" not found"));
            };
            match configmap_data(&cm).get(key) {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None if optional => continue,
                None => return Err(format!("couldn't find key {key} in ConfigMap {ns}/{cn}")),
            }
        } else if let Some(path) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(|p| p.as_str())
        {
            match path {
                "metadata.name" => run.name.clone(),
                "metadata.namespace" => run.ns.clone(),
                "metadata.uid" => run.uid.clone(),
                "spec.nodeName" => s(pod, "/spec/nodeName").to_string(),
                "spec.serviceAccountName" => s(pod, "/spec/serviceAccountName").to_string(),
                "status.podIP" => run.ip.clone(),
                "status.hostIP" => run.host_ip.clone(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        set(&mut env, name, value);
    }
    Ok(env)
}
