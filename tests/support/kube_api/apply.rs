//! Patches: RFC 7386 merge patches and server-side apply with field ownership (a manager's
//! applied leaf paths, kept in an annotation), conflicts between managers, and `force`.

use super::{not_found, status, Coll, Store};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Leaf paths of an applied configuration (arrays count as leaves), as field ownership.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(
                    x,
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn remove_path(v: &mut Value, path: &str) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    if let Some(Value::Object(m)) = target {
        m.remove(&last);
    }
}

/// Fields a manager applied, kept beside the object (not in it, to keep objects small).
fn owned_fields(obj: &Value) -> BTreeMap<String, BTreeSet<String>> {
    obj.pointer("/metadata/annotations/test.k8s.io~1managed")
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// `{a: {b: value}}` for the pointer `/a/b`.
fn nested(path: &str, value: &Value) -> Value {
    let mut v = value.clone();
    for p in path.trim_start_matches('/').split('/').rev() {
        let mut m = Map::new();
        m.insert(p.replace("~1", "/").replace("~0", "~"), v);
        v = Value::Object(m);
    }
    v
}

impl Store {
    /// Merge patch (`status_only`: of `.status` alone).
    pub fn merge(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<Value, (u16, Value)> {
        let Some(mut obj) = self.get(coll, ns, name) else {
            return Err(not_found(coll, name));
        };
        merge_patch(&mut obj, patch);
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.update(coll, ns, name, obj, status_only)
    }

    /// Server-side apply: creates, or sets the fields `manager` applies and removes those it
    /// applied before and no longer does; another manager's field with a different value is a
    /// conflict unless `force`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        coll: &Coll,
        ns: &str,
        name: &str,
        body: &Value,
        manager: &str,
        force: bool,
        status_only: bool,
    ) -> Result<Value, (u16, Value)> {
        let mut applied = BTreeMap::new();
        let mut cfg = body.clone();
        if let Some(m) = cfg["metadata"].as_object_mut() {
            m.retain(|k, _| k == "labels" || k == "annotations");
        }
        for f in ["apiVersion", "kind"] {
            if let Some(m) = cfg.as_object_mut() {
                m.remove(f);
            }
        }
        leaves(&cfg, "", &mut applied);
        let Some(mut obj) = self.get(coll, ns, name) else {
            if status_only {
                return Err(not_found(coll, name));
            }
            let mut obj = body.clone();
            obj["metadata"]["name"] = json!(name);
            let mut owners = BTreeMap::new();
            owners.insert(
                manager.to_string(),
                applied.keys().cloned().collect::<BTreeSet<_>>(),
            );
            obj["metadata"]["annotations"]["test.k8s.io/managed"] =
                json!(serde_json::to_string(&owners).unwrap_or_default());
            return self.create(coll, ns, obj);
        };
        let mut owners = owned_fields(&obj);
        if !force {
            for (other, fields) in owners.iter().filter(|(m, _)| m.as_str() != manager) {
                for (path, value) in &applied {
                    if fields.contains(path) && obj.pointer(path) != Some(value) {
                        let msg = format!(
                            "Apply failed with 1 conflict: conflict with \"{other}\": {path}"
                        );
                        return Err((409, status(409, "Conflict", &msg)));
                    }
                }
            }
        }
        let before = owners.remove(manager).unwrap_or_default();
        for path in before.iter().filter(|p| !applied.contains_key(*p)) {
            remove_path(&mut obj, path);
        }
        for (path, value) in &applied {
            for fields in owners.values_mut() {
                fields.remove(path);
            }
            merge_patch(&mut obj, &nested(path, value));
        }
        owners.insert(manager.to_string(), applied.keys().cloned().collect());
        obj["metadata"]["annotations"]["test.k8s.io/managed"] =
            json!(serde_json::to_string(&owners).unwrap_or_default());
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.update(coll, ns, name, obj, status_only)
    }
}
