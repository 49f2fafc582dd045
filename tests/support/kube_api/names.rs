//! Names as apimachinery checks them: DNS-1123 labels and subdomains, DNS-1035 labels, label
//! values, qualified names (label and annotation keys), with the real messages.

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}
fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_like(s: &str, inner: impl Fn(char) -> bool, edge: impl Fn(char) -> bool) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    edge(first) && edge(last) && s.chars().all(|c| edge(c) || inner(c))
}

const LABEL_1123: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_1123: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
pub const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";

pub fn max_len(s: &str, n: usize) -> Option<String> {
    (s.len() > n).then(|| format!("must be no more than {n} characters"))
}

pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut e: Vec<String> = max_len(s, 63).into_iter().collect();
    if !is_label_like(s, |c| c == '-', lower_alnum) {
        e.push(LABEL_1123.into());
    }
    e
}

pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut e: Vec<String> = max_len(s, 253).into_iter().collect();
    if !s
        .split('.')
        .all(|part| is_label_like(part, |c| c == '-', lower_alnum))
    {
        e.push(SUBDOMAIN_1123.into());
    }
    e
}

pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut e: Vec<String> = max_len(s, 63).into_iter().collect();
    if !is_label_like(s, |c| c == '-', lower_alnum)
        || !s.starts_with(|c: char| c.is_ascii_lowercase())
    {
        e.push(LABEL_1035.into());
    }
    e
}

pub fn label_value(s: &str) -> Vec<String> {
    let mut e: Vec<String> = max_len(s, 63).into_iter().collect();
    if !s.is_empty() && !is_label_like(s, |c| matches!(c, '-' | '_' | '.'), alnum) {
        e.push(LABEL_VALUE.into());
    }
    e
}

/// A label or annotation key: an optional DNS-subdomain prefix (≤ 253) and `/`, then a
/// name (≤ 63).
pub fn qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return vec![QUALIFIED.into()],
    };
    let mut e = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            e.push("prefix part must be non-empty".into());
        } else {
            e.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        e.push("name part must be non-empty".into());
    } else {
        if let Some(m) = max_len(name, 63) {
            e.push(format!("name part {m}"));
        }
        if !is_label_like(name, |c| matches!(c, '-' | '_' | '.'), alnum) {
            e.push(NAME_PART.into());
        }
    }
    e
}

/// How an object's name is checked, by collection.
pub fn name_errors(resource: &str, name: &str) -> Vec<String> {
    match resource {
        "services" => dns1035_label(name),
        "namespaces" => dns1123_label(name),
        _ => dns1123_subdomain(name),
    }
}
