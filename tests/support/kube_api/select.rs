//! Label selectors (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`) and field selectors
//! (`metadata.name=x,involvedObject.kind=Pod`), with the fields each collection supports.

use super::Coll;
use serde_json::Value;

/// Splits on commas outside parentheses.
fn terms(selector: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(selector[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(selector[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn set_term<'a>(term: &'a str, op: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let (k, rest) = term.split_once(op)?;
    let set = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some((k.trim(), set.split(',').map(str::trim).collect()))
}

/// `a=b,c!=d,e,!f,g in (x,y),h notin (z)` against an object's labels.
pub fn selector_matches(selector: &str, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(|l| l.as_object());
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
    terms(selector).into_iter().all(|term| {
        if let Some((k, set)) = set_term(term, " notin ") {
            get(k).is_none_or(|v| !set.contains(&v))
        } else if let Some((k, set)) = set_term(term, " in ") {
            get(k).is_some_and(|v| set.contains(&v))
        } else if let Some((k, v)) = term.split_once("!=") {
            get(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k.trim()) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k.trim()).is_none()
        } else {
            get(term).is_some()
        }
    })
}

/// A parsed field selector: (field, equal?, value) terms, all of which must hold.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// The fields a real apiserver lets each collection be selected by.
fn supported(coll: &Coll, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (coll.group.as_str(), coll.resource.as_str()) {
        ("", "events") => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        ("", "pods") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "secrets") => field == "type",
        ("batch", "jobs") => field == "status.successful",
        _ => false,
    }
}

impl FieldSelector {
    /// `400 field label not supported: …` for a field the collection cannot be selected by.
    pub fn parse(coll: &Coll, selector: &str) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for term in terms(selector) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !supported(coll, field) {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let pointer = if field == "source" {
                "/source/component".to_string()
            } else {
                format!("/{}", field.replace('.', "/"))
            };
            let got = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *value) == *eq
        })
    }
}
