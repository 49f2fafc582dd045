//! A CustomResourceDefinition's structural schema, applied to custom resources as the
//! apiserver does on every write: unknown fields pruned silently (and `null`s of fields that
//! are not `nullable`), defaults filled in, then validation (`type`, int-or-string,
//! `required`, `enum`, `pattern`, `minimum`/`maximum`, `minLength`/`maxLength`,
//! `minItems`/`maxItems`, `items`, `properties`, `additionalProperties`, `anyOf`/`allOf`).

use super::regex::Regex;
use super::validate::FieldError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The standard `ObjectMeta` fields: a custom resource's `metadata` keeps these alone.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The schema of the version a CRD stores, with the names it registers.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    pub group: String,
    pub plural: String,
    pub kind: String,
    pub version: String,
    pub status_subresource: bool,
    pub schema: Value,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool) == Some(true)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn regex(pattern: &str) -> Option<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

impl CrdSchema {
    /// The storage version's schema (else the first served one); `None` without a schema.
    pub fn from_crd(crd: &Value) -> Option<CrdSchema> {
        let versions = crd.pointer("/spec/versions")?.as_array()?;
        let v = versions
            .iter()
            .find(|v| flag(v, "storage"))
            .or_else(|| versions.iter().find(|v| flag(v, "served")))?;
        let text = |p: &str| {
            crd.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(CrdSchema {
            group: text("/spec/group"),
            plural: text("/spec/names/plural"),
            kind: text("/spec/names/kind"),
            version: v.get("name").and_then(Value::as_str).unwrap_or("").into(),
            status_subresource: v.pointer("/subresources/status").is_some(),
            schema: v.pointer("/schema/openAPIV3Schema")?.clone(),
        })
    }

    pub fn from_yaml(yaml: &str) -> CrdSchema {
        let crd: Value = serde_yaml::from_str(yaml).expect("CRD YAML");
        CrdSchema::from_crd(&crd).expect("a CRD with an openAPIV3Schema")
    }

    /// Removes what the schema does not know; returns the paths removed (`spec.args`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut out = Vec::new();
        prune(obj, &self.schema, "", true, &mut out);
        out
    }

    /// Fills in `default`s of absent fields whose parent object is there.
    pub fn default(&self, obj: &mut Value) {
        default(obj, &self.schema, true);
    }

    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate(obj, &self.schema, "", true, &mut errs);
        errs
    }
}

fn prune_meta(meta: &mut Value, path: &str, out: &mut Vec<String>) {
    if let Some(m) = meta.as_object_mut() {
        m.retain(|k, _| {
            let keep = OBJECT_META.contains(&k.as_str());
            if !keep {
                out.push(join(path, k));
            }
            keep
        });
    }
}

fn prune(v: &mut Value, s: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    let root = root || flag(s, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(m) => {
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = join(path, &k);
                if root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if root && k == "metadata" {
                    prune_meta(&mut m[&k], &p, out);
                    continue;
                }
                match props.and_then(|ps| ps.get(&k)).or(extra) {
                    Some(sub) if m[&k].is_null() && !flag(sub, "nullable") => {
                        m.remove(&k);
                        out.push(p);
                    }
                    Some(sub) => prune(&mut m[&k], sub, &p, false, out),
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        out.push(p);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for (i, x) in items.iter_mut().enumerate() {
                    prune(x, sub, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

fn default(v: &mut Value, s: &Value, root: bool) {
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    if !m.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(x) = m.get_mut(k) {
                        default(x, sub, false);
                    }
                }
            }
            if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for x in m.values_mut() {
                    default(x, extra, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for x in items {
                    default(x, sub, false);
                }
            }
        }
        _ => {}
    }
}

fn validate(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let root = root || flag(s, "x-kubernetes-embedded-resource");
    if v.is_null() && flag(s, "nullable") {
        return;
    }
    let actual = type_name(v);
    if flag(s, "x-kubernetes-int-or-string") {
        if !(is_integer(v) || v.is_string()) {
            let detail = format!("{path} in body must be of type integer,string: \"{actual}\"");
            errs.push(FieldError::invalid(path, &json!(actual), &detail));
            return;
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str) {
        if !type_ok(v, t) {
            let detail = format!("{path} in body must be of type {t}: \"{actual}\"");
            errs.push(FieldError::invalid(path, &json!(actual), &detail));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errs.push(FieldError::unsupported(path, v, allowed));
        }
    }
    let get_u64 = |k: &str| s.get(k).and_then(Value::as_u64);
    if let Some(text) = v.as_str() {
        let len = text.chars().count();
        if let Some(max) = get_u64("maxLength").filter(|m| len as u64 > *m) {
            errs.push(FieldError::too_long(
                path,
                &format!("may not be more than {max} bytes"),
            ));
        }
        if let Some(min) = get_u64("minLength").filter(|m| (len as u64) < *m) {
            let detail = format!("{path} in body should be at least {min} chars long");
            errs.push(FieldError::invalid(path, v, &detail));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if regex(p).is_some_and(|r| !r.is_match(text)) {
                let detail = format!("{path} in body should match '{p}'");
                errs.push(FieldError::invalid(path, v, &detail));
            }
        }
    }
    if let Some(n) = v.as_f64().filter(|_| v.is_number()) {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(s, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                let detail = format!("{path} in body should be {op} {}", number(&s["minimum"]));
                errs.push(FieldError::invalid(path, v, &detail));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(s, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                let detail = format!("{path} in body should be {op} {}", number(&s["maximum"]));
                errs.push(FieldError::invalid(path, v, &detail));
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(max) = get_u64("maxItems").filter(|m| items.len() as u64 > *m) {
            errs.push(FieldError::too_many(path, items.len(), max));
        }
        if let Some(min) = get_u64("minItems").filter(|m| (items.len() as u64) < *m) {
            let detail = format!("{path} in body should have at least {min} items");
            errs.push(FieldError::invalid(path, &json!(items.len()), &detail));
        }
        if let Some(sub) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                validate(x, sub, &format!("{path}[{i}]"), false, errs);
            }
        }
    }
    if let Some(m) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str().filter(|r| !m.contains_key(*r)) {
                errs.push(FieldError::required(&join(path, r)));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        let extra = s.get("additionalProperties").filter(|a| a.is_object());
        for (k, x) in m {
            if root && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(sub) = props.and_then(|p| p.get(k)).or(extra) {
                validate(x, sub, &join(path, k), false, errs);
            }
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(v, sub, path, false, errs);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let passes = any.iter().any(|sub| {
            let mut e = Vec::new();
            validate(v, sub, path, false, &mut e);
            e.is_empty()
        });
        if !passes {
            let detail = format!("{path} in body must match at least one schema in anyOf");
            errs.push(FieldError::invalid(path, v, &detail));
        }
    }
}
