//! What a structural schema dropped: the apiserver prunes fields a CustomResourceDefinition
//! does not know, silently. perfsync compares what it applied with what the server kept, so
//! an operator whose CRD is older than the fields perfsync sends fails the run with the
//! fields named instead of running without them.

use serde_json::Value;

/// JSON paths (`spec.runner.x`) present in `sent` and missing from `kept`. Arrays are
/// compared element by element.
pub fn pruned_paths(sent: &Value, kept: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(sent, Some(kept), String::new(), &mut out);
    out
}

fn walk(sent: &Value, kept: Option<&Value>, at: String, out: &mut Vec<String>) {
    match (sent, kept) {
        (_, None) => out.push(at),
        (Value::Object(s), Some(Value::Object(k))) => {
            for (key, v) in s {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                walk(v, k.get(key), path, out);
            }
        }
        (Value::Array(s), Some(Value::Array(k))) => {
            for (i, v) in s.iter().enumerate() {
                walk(v, k.get(i), format!("{at}[{i}]"), out);
            }
        }
        // A scalar kept (possibly defaulted or normalised) is not a pruned field.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_what_the_server_dropped() {
        let sent = json!({"spec": {"args": ["--vus", "2"], "arguments": "--vus 2", "runner": {"env": [{"name": "A", "value": "1"}], "image": "k6"}}});
        let kept = json!({"spec": {"arguments": "--vus 2", "runner": {"env": [{"name": "A"}], "image": "k6"}}});
        assert_eq!(
            pruned_paths(&sent, &kept),
            vec![
                "spec.args".to_string(),
                "spec.runner.env[0].value".to_string()
            ]
        );
        assert!(pruned_paths(&sent, &sent).is_empty());
    }
}
