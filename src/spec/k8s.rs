//! Kubernetes' own grammars, checked before anything reaches an apiserver: DNS names, label
//! keys and values, resource quantities, and the runner settings a pod spec is made of. A
//! value these refuse would come back as a 422 at run time, or (inside a TestRun, which the
//! operator copies into Jobs) as an operator `error` stage with no message at all.

use super::model::RunnerSettings;

/// A ConfigMap's `data` plus `binaryData` (keys included, binary values decoded) holds at
/// most this many bytes.
pub const MAX_CONFIGMAP_BYTES: u64 = 1024 * 1024;

/// Label keys perfsync sets itself on the objects it creates.
const OWN_LABEL_KEYS: [&str; 1] = ["app.kubernetes.io/managed-by"];
/// Label prefix perfsync owns (and its subdomains).
const OWN_LABEL_PREFIX: &str = "perfsync.dev";
/// Label keys the k6-operator sets on the Jobs and pods of a TestRun (and the Job controller).
const OPERATOR_LABEL_KEYS: [&str; 4] = ["app", "k6_cr", "runner", "job-name"];

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// A DNS-1123 label: 1–63 lowercase letters, digits and `-`, starting and ending with a letter
/// or digit (Job names, ConfigMap keys' volumes, most object names).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated DNS-1123 labels (Secret
/// names, service account names, label key prefixes).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The name part of a label key, and a non-empty label value: at most 63 characters,
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| alnum(*c) || b"-_.".contains(c))
        && alnum(b[0])
        && alnum(b[b.len() - 1])
}

const LABEL_SHAPE: &str =
    "at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit";

/// A label key (also a node selector key, an annotation key, a resource name): an optional
/// DNS-1123 subdomain prefix of at most 253 characters and `/`, then a name of at most 63
/// characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Err(format!(
                "the prefix `{p}` of `{key}` is not a DNS subdomain; use lowercase letters, digits, `-` and `.` (at most 253), e.g. `example.com/team`"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "`{key}` is not a Kubernetes label key; its name part takes {LABEL_SHAPE}, e.g. `team` or `example.com/team`"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and ending
/// with a letter or digit.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a Kubernetes label value; use {LABEL_SHAPE} (or nothing), e.g. `qa-team`"
        ))
    }
}

/// A test's own label: a valid label that is not one perfsync or the k6-operator sets.
pub fn check_test_label(key: &str, value: &str) -> Result<(), String> {
    check_label_key(key).map_err(|e| format!("label {e}"))?;
    check_label_value(value).map_err(|e| format!("label `{key}`: {e}"))?;
    let prefix = key.split_once('/').map(|(p, _)| p);
    let own_prefix = prefix
        .is_some_and(|p| p == OWN_LABEL_PREFIX || p.ends_with(&format!(".{OWN_LABEL_PREFIX}")));
    if own_prefix || OWN_LABEL_KEYS.contains(&key) {
        return Err(format!(
            "label `{key}` is perfsync's own (keys under `{OWN_LABEL_PREFIX}/` and `app.kubernetes.io/managed-by`); choose another key, e.g. `team`"
        ));
    }
    if OPERATOR_LABEL_KEYS.contains(&key) {
        return Err(format!(
            "label `{key}` is set by the k6-operator on a run's Jobs and pods ({}); choose another key",
            OPERATOR_LABEL_KEYS.join(", ")
        ));
    }
    Ok(())
}

/// The parts of a quantity: sign, mantissa digits (before and after the point) and suffix.
struct Quantity<'a> {
    negative: bool,
    number: &'a str,
    suffix: &'a str,
}

/// Splits a quantity the way apimachinery's `ParseQuantity` does.
fn split_quantity(s: &str) -> Option<Quantity<'_>> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int_end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    let mut end = int_end;
    let mut frac_digits = 0;
    if rest.as_bytes().get(end) == Some(&b'.') {
        end += 1;
        frac_digits = rest[end..]
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len() - end);
        end += frac_digits;
    }
    if int_end == 0 && frac_digits == 0 {
        return None;
    }
    Some(Quantity {
        negative,
        number: &rest[..end],
        suffix: &rest[end..],
    })
}

/// The multiplier a quantity suffix stands for, or `None` when it is not one.
fn suffix_factor(suffix: &str) -> Option<f64> {
    let binary = |p: i32| Some(1024f64.powi(p));
    let decimal = |p: i32| Some(10f64.powi(p));
    match suffix {
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = exp.parse().ok()?;
            Some(10f64.powi(e))
        }
    }
}

/// A Kubernetes resource quantity, by apimachinery's grammar: an optional sign, digits with
/// an optional decimal part, then a binary suffix (`Ki Mi Gi Ti Pi Ei`), a decimal suffix
/// (`n u m k M G T P E`, or none) or a decimal exponent (`e3`, `E-2`). `500m`, `2`, `1.5Gi`,
/// `1e3` are quantities; `2 cores`, `lots`, `1.5.0`, `1K`, `1gb` are not.
pub fn check_quantity(s: &str) -> Result<(), String> {
    let ok = split_quantity(s).is_some_and(|q| suffix_factor(q.suffix).is_some());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a Kubernetes quantity; write a number with an optional suffix, e.g. `500m` or `2` (CPU), `512Mi` or `1Gi` (memory)"
        ))
    }
}

/// A quantity's value as a float (for comparing a request with its limit); `None` when it
/// does not parse.
pub fn quantity_value(s: &str) -> Option<f64> {
    let q = split_quantity(s)?;
    let factor = suffix_factor(q.suffix)?;
    let n: f64 = if q.number.starts_with('.') {
        format!("0{}", q.number).parse().ok()?
    } else {
        q.number.trim_end_matches('.').parse().ok()?
    };
    Some(if q.negative { -n } else { n } * factor)
}

/// A finding about runner settings: the key path below the settings and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// E.g. `["resources", "limits", "cpu"]`.
    pub path: Vec<String>,
    /// Names the full key path (`<prefix>.resources.limits.cpu`) and the fix.
    pub message: String,
}

/// Checks runner settings as the pod spec they become: resource names and quantities
/// (requests within limits), node selector labels, the service account's name. `prefix` is
/// where the settings sit, for messages (`spec.runner`, `executor.runner`).
pub fn check_runner(prefix: &str, runner: &RunnerSettings) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |path: &[&str], message: String| {
        out.push(Finding {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
        })
    };
    if let Some(res) = &runner.resources {
        for (kind, list) in [("requests", &res.requests), ("limits", &res.limits)] {
            for (name, value) in list {
                let at = format!("{prefix}.resources.{kind}.{name}");
                if let Err(e) = check_label_key(name) {
                    push(
                        &["resources", kind, name],
                        format!("{at}: resource name {e}; use e.g. `cpu`, `memory` or `ephemeral-storage`"),
                    );
                }
                if let Err(e) = check_quantity(value) {
                    push(&["resources", kind, name], format!("{at}: {e}"));
                } else if value.starts_with('-') {
                    push(
                        &["resources", kind, name],
                        format!("{at}: `{value}` is negative; resources are at least 0"),
                    );
                }
            }
        }
        for (name, request) in &res.requests {
            let Some(limit) = res.limits.get(name) else {
                continue;
            };
            if let (Some(r), Some(l)) = (quantity_value(request), quantity_value(limit)) {
                if r > l {
                    push(
                        &["resources", "requests", name],
                        format!("{prefix}.resources.requests.{name}: the request `{request}` is more than the limit `{limit}`; raise the limit or lower the request"),
                    );
                }
            }
        }
    }
    for (key, value) in &runner.node_selector {
        let at = format!("{prefix}.nodeSelector.{key}");
        if let Err(e) = check_label_key(key) {
            push(&["nodeSelector", key], format!("{at}: {e}"));
        }
        if let Err(e) = check_label_value(value) {
            push(&["nodeSelector", key], format!("{at}: {e}"));
        }
    }
    if let Some(sa) = &runner.service_account_name {
        if !is_dns1123_subdomain(sa) {
            push(
                &["serviceAccountName"],
                format!("{prefix}.serviceAccountName: `{sa}` is not a service account name; use lowercase letters, digits, `-` and `.`, at most 253"),
            );
        }
    }
    if let Some(image) = &runner.image {
        if image.is_empty() || image.contains(char::is_whitespace) {
            push(
                &["image"],
                format!("{prefix}.image: `{image}` is not an image reference; write e.g. `grafana/k6:1.1.0`"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_follow_apimachinery() {
        for ok in [
            "0", "1", "500m", "1.5", "1.", ".5", "+2", "-1", "1Ki", "1Mi", "1.5Gi", "2Ti", "1Pi",
            "1Ei", "10n", "10u", "1k", "1M", "1G", "1T", "1P", "1E", "1e3", "1E3", "1e-3", "1E+3",
            "0.25",
        ] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "2 cores", "lots", "1.5.0", "1K", "1gb", "1Gb", "1e", "e3", ".", "-", "+", "1 ",
            " 1", "1m1", "1ke3", "Mi", "1.5e", "0x10", "1_000",
        ] {
            let e = check_quantity(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value(".5"), Some(0.5));
        assert_eq!(quantity_value("lots"), None);
    }

    #[test]
    fn labels_follow_kubernetes() {
        for ok in ["team", "example.com/team", "a", "A.b-c_d", "k6.io/x"] {
            assert!(check_label_key(ok).is_ok(), "{ok}");
        }
        let long_name = "a".repeat(64);
        let long_prefix = format!("{}/a", "a.".repeat(127));
        for bad in [
            "",
            "QA Team",
            "-a",
            "a-",
            "Example.com/a",
            "/a",
            "a/",
            "a/b/c",
            long_name.as_str(),
            long_prefix.as_str(),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "qa", "QA_team.1", &"a".repeat(63)] {
            assert!(check_label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["QA Team", "-qa", "qa.", "a/b", &"a".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
        for own in [
            "perfsync.dev/test",
            "x.perfsync.dev/y",
            "app.kubernetes.io/managed-by",
            "app",
            "k6_cr",
            "runner",
            "job-name",
        ] {
            assert!(check_test_label(own, "x").is_err(), "{own}");
        }
        assert!(check_test_label("app.kubernetes.io/part-of", "shop").is_ok());
        assert!(check_test_label("team", "commerce").is_ok());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("a-1") && is_dns1123_label("1a"));
        assert!(!is_dns1123_label("A") && !is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1035_label("a1") && !is_dns1035_label("1a"));
        assert!(is_dns1123_subdomain("a.b-c") && !is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn runner_settings_are_checked_with_their_key_path() {
        let runner: RunnerSettings = serde_json::from_value(serde_json::json!({
            "resources": {"requests": {"cpu": "2 cores", "memory": "2Gi"}, "limits": {"memory": "1Gi", "cpu": "-1"}},
            "nodeSelector": {"pool": "load pool"},
            "serviceAccountName": "K6 Runner",
        }))
        .unwrap();
        let found = check_runner("executor.runner", &runner);
        let messages: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(found.len(), 5, "{messages:#?}");
        assert!(messages
            .iter()
            .any(|m| m.starts_with("executor.runner.resources.requests.cpu: `2 cores`")));
        assert!(messages
            .iter()
            .any(|m| m.starts_with("executor.runner.resources.limits.cpu: `-1` is negative")));
        assert!(messages
            .iter()
            .any(|m| m.contains("request `2Gi` is more than the limit `1Gi`")));
        assert!(messages
            .iter()
            .any(|m| m.starts_with("executor.runner.nodeSelector.pool")));
        assert!(messages
            .iter()
            .any(|m| m.starts_with("executor.runner.serviceAccountName")));
        assert_eq!(found[0].path, vec!["resources", "requests", "cpu"]);
    }
}
