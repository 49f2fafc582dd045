//! What the apiserver validates on the built-in kinds perfsync and the k6-operator write: object
//! names by kind, label keys and values (also on Jobs' pod templates), annotations' size,
//! container resource quantities, ConfigMap keys and size, immutable ConfigMaps. Messages
//! follow apimachinery's; the 422 Status carries the causes as `details.causes`.

use super::names::{label_value, max_len, name_errors, qualified_name, LABEL_VALUE};
use super::status;
use serde_json::{json, Value};

/// One `field.Error`: its path, its reason (`FieldValueInvalid`, …) and its full text.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub text: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value as `field.Invalid` prints it: strings quoted, numbers and booleans bare.
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            text: format!("{field}: Invalid value: {}: {detail}", shown(value)),
        }
    }
    pub fn required(field: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            text: format!("{field}: Required value"),
        }
    }
    pub fn too_long(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            text: format!("{field}: Too long: {detail}"),
        }
    }
    pub fn too_many(field: &str, n: usize, max: u64) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooMany",
            text: format!("{field}: Too many: {n}: must have at most {max} items"),
        }
    }
    pub fn unsupported(field: &str, value: &Value, allowed: &[Value]) -> FieldError {
        let allowed: Vec<String> = allowed.iter().map(shown).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            text: format!(
                "{field}: Unsupported value: {}: supported values: {}",
                shown(value),
                allowed.join(", ")
            ),
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            text: format!("{field}: Forbidden: {detail}"),
        }
    }
}

/// `422 Invalid`: `Kind.group "name" is invalid: err` (or `[err, err]`), with the causes.
pub fn invalid(kind: &str, group: &str, name: &str, errs: &[FieldError]) -> (u16, Value) {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let texts: Vec<String> = errs.iter().map(|e| e.text.clone()).collect();
    let joined = match texts.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut s = status(
        422,
        "Invalid",
        &format!("{qualified} \"{name}\" is invalid: {joined}"),
    );
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.text.strip_prefix(&format!("{}: ", e.field)).unwrap_or(&e.text), "field": e.field}))
        .collect();
    s["details"] = json!({"name": name, "group": group, "kind": kind, "causes": causes});
    (422, s)
}

pub fn labels(labels: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for m in qualified_name(k) {
            errs.push(FieldError::invalid(field, &json!(k), &m));
        }
        match v.as_str() {
            Some(s) => {
                for m in label_value(s) {
                    errs.push(FieldError::invalid(field, v, &m));
                }
            }
            None => errs.push(FieldError::invalid(field, v, LABEL_VALUE)),
        }
    }
}

fn annotations(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(map) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for m in qualified_name(k) {
            errs.push(FieldError::invalid("metadata.annotations", &json!(k), &m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            "must have at most 262144 bytes",
        ));
    }
}

/// A Kubernetes quantity (`100m`, `1.5`, `2Gi`, `1e3`, `512Mi`) as a number, or `None`.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let digits_start = i;
    let mut digits = 0;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        digits += usize::from(b[i].is_ascii_digit());
        i += 1;
    }
    let number = &s[..i];
    if digits == 0 || s[digits_start..i].matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let suffix = &s[i..];
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp if exp.starts_with(['e', 'E']) => {
            let n = &exp[1..];
            let unsigned = n.strip_prefix(['+', '-']).unwrap_or(n);
            if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(n.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    Some(value * scale)
}

pub const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn quantity_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Containers' `resources`: a quantity that does not parse fails decoding (`Err`, a 400 as
/// the real apiserver answers); a negative one, or requests above limits, is invalid.
fn resources(spec: &Value, path: &str, errs: &mut Vec<FieldError>) -> Result<(), String> {
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let base = format!("{path}.{list}[{i}].resources");
            let mut parsed = std::collections::BTreeMap::new();
            for kind in ["limits", "requests"] {
                let Some(m) = c
                    .pointer(&format!("/resources/{kind}"))
                    .and_then(Value::as_object)
                else {
                    continue;
                };
                for (res, q) in m {
                    let text = quantity_text(q);
                    let n = parse_quantity(&text).ok_or(QUANTITY_FORMAT)?;
                    if n < 0.0 {
                        let f = format!("{base}.{kind}[{res}]");
                        errs.push(FieldError::invalid(
                            &f,
                            &json!(text),
                            "must be greater than or equal to 0",
                        ));
                    }
                    parsed.insert((kind, res.clone()), (n, text));
                }
            }
            for ((kind, res), (n, text)) in &parsed {
                if *kind != "requests" {
                    continue;
                }
                if let Some((limit, ltext)) = parsed.get(&("limits", res.clone())) {
                    if n > limit {
                        let f = format!("{base}.requests");
                        let m = format!("must be less than or equal to {res} limit of {ltext}");
                        errs.push(FieldError::invalid(&f, &json!(text), &m));
                    }
                }
            }
        }
    }
    Ok(())
}

const CONFIG_KEY: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// Keys valid, values counted with their keys: `text` maps as they are, `binary` maps
/// base64-decoded. At most 1 MiB in all, as `ValidateConfigMap` and `ValidateSecret` count.
fn data_maps(
    obj: &Value,
    text: Option<&str>,
    binary: &str,
    errs: &mut Vec<FieldError>,
) -> Result<(), String> {
    use base64::Engine;
    let mut total = 0usize;
    let text_map = text.and_then(|t| obj.get(t)).and_then(Value::as_object);
    let maps = [
        (text.unwrap_or(""), text_map, false),
        (binary, obj.get(binary).and_then(Value::as_object), true),
    ];
    for (field, map, decode) in maps {
        let Some(map) = map else { continue };
        for (k, v) in map {
            let f = format!("{field}[{k}]");
            if k.len() > 253 {
                errs.push(FieldError::invalid(
                    &f,
                    &json!(k),
                    "must be no more than 253 characters",
                ));
            }
            let key_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if k.is_empty() || !k.chars().all(key_chars) {
                errs.push(FieldError::invalid(&f, &json!(k), CONFIG_KEY));
            }
            let s = v.as_str().unwrap_or_default();
            let len = if decode {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("illegal base64 data: {e}"))?
                    .len()
            } else {
                s.len()
            };
            total += k.len() + len;
            if decode && text_map.is_some_and(|d| d.contains_key(k)) {
                errs.push(FieldError::invalid(
                    &format!("data[{k}]"),
                    &json!(k),
                    "duplicate of key present in binaryData",
                ));
            }
        }
    }
    if total > 1024 * 1024 {
        let f = if text.is_some() { "[]" } else { binary };
        errs.push(FieldError::too_long(f, "must have at most 1048576 bytes"));
    }
    Ok(())
}

/// The checks of a built-in kind. `Err` is a 400 (the body cannot be decoded as the kind, as
/// with a malformed quantity); field errors come back for one 422.
pub fn builtin(
    resource: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<FieldError>, String> {
    let mut errs = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if old.is_none() {
        for m in name_errors(resource, name) {
            errs.push(FieldError::invalid("metadata.name", &json!(name), &m));
        }
    }
    labels(
        obj.pointer("/metadata/labels"),
        "metadata.labels",
        &mut errs,
    );
    annotations(obj, &mut errs);
    let decode = |e: String| format!("{kind} in version \"v1\" cannot be handled as a {kind}: {e}");
    match resource {
        "pods" => {
            if let Some(spec) = obj.get("spec") {
                resources(spec, "spec", &mut errs).map_err(decode)?;
            }
        }
        "jobs" => {
            // The job controller's labels carry the name, so it must be a label value too.
            let template_labels = obj.pointer("/spec/template/metadata/labels");
            if template_labels.is_none() {
                for m in label_value(name) {
                    errs.push(FieldError::invalid(
                        "spec.template.labels",
                        &json!(name),
                        &m,
                    ));
                }
            }
            labels(template_labels, "spec.template.labels", &mut errs);
            if let Some(spec) = obj.pointer("/spec/template/spec") {
                resources(spec, "spec.template.spec", &mut errs).map_err(decode)?;
            }
        }
        "configmaps" => {
            data_maps(obj, Some("data"), "binaryData", &mut errs).map_err(decode)?;
            if let Some(old) = old.filter(|o| o.get("immutable") == Some(&json!(true))) {
                if obj.get("data") != old.get("data")
                    || obj.get("binaryData") != old.get("binaryData")
                {
                    errs.push(FieldError::forbidden(
                        "data",
                        "field is immutable when `immutable` is set",
                    ));
                }
                if obj.get("immutable") != Some(&json!(true)) {
                    errs.push(FieldError::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        "secrets" => data_maps(obj, None, "data", &mut errs).map_err(decode)?,
        "events" => event(obj, &mut errs),
        _ => {}
    }
    Ok(errs)
}

/// Core v1 Events as the apiserver's `legacyValidateEvent` checks them
/// (pkg/apis/core/validation/events.go): the involved object's namespace is the event's; an
/// event with `eventTime` (the "new" shape) needs a reporting component and instance, an
/// action and a reason, each within its length limit.
fn event(obj: &Value, errs: &mut Vec<FieldError>) {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved = obj
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let str_of = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    if obj.get("eventTime").is_none_or(Value::is_null) {
        let mismatch = if involved.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved
        };
        if mismatch {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(involved),
                "does not match event.namespace",
            ));
        }
    } else {
        for (field, path, limit) in [
            ("reportingComponent", "/reportingComponent", usize::MAX),
            ("reportingInstance", "/reportingInstance", 128),
            ("action", "/action", 128),
            ("reason", "/reason", 128),
        ] {
            let v = str_of(path);
            if v.is_empty() {
                errs.push(FieldError::required(field));
            } else if v.len() > limit {
                errs.push(FieldError::too_long(
                    field,
                    &format!("must have at most {limit} bytes"),
                ));
            }
        }
        if str_of("/message").len() > 1024 {
            errs.push(FieldError::too_long(
                "message",
                "must have at most 1024 bytes",
            ));
        }
    }
}
