//! `${NAME}` substitution for PerfTemplates. `$${` stands for a literal `${`, so JavaScript
//! template literals survive: write `$${__ENV.X}` in a template script.

use std::collections::BTreeMap;

/// A `${…}` found in a text, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub offset: usize,
    /// Whether `name` is a valid parameter name (`[A-Za-z_][A-Za-z0-9_]*`).
    pub valid: bool,
    /// The closing `}` is missing.
    pub unclosed: bool,
}

fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `${…}` in `text` that is not escaped as `$${`.
pub fn references(text: &str) -> Vec<Reference> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'$' && b.get(i + 2) == Some(&b'{') {
            i += 3;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            let start = i + 2;
            match text[start..].find('}') {
                Some(len) if !text[start..start + len].contains('\n') => {
                    let name = &text[start..start + len];
                    out.push(Reference {
                        name: name.to_string(),
                        offset: i,
                        valid: is_param_name(name),
                        unclosed: false,
                    });
                    i = start + len + 1;
                }
                _ => {
                    out.push(Reference {
                        name: String::new(),
                        offset: i,
                        valid: false,
                        unclosed: true,
                    });
                    i = start;
                }
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Replaces every valid `${NAME}` with its value and `$${` with `${`. Names without a value
/// are left as they are; callers check [`references`] first.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'$' && b.get(i + 2) == Some(&b'{') {
            out.push_str(&text[copied..i]);
            out.push_str("${");
            i += 3;
            copied = i;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            if let Some(len) = text[i + 2..].find('}') {
                let name = &text[i + 2..i + 2 + len];
                if let Some(v) = values.get(name) {
                    out.push_str(&text[copied..i]);
                    out.push_str(v);
                    i += 2 + len + 1;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_parameters_and_keeps_escapes() {
        let values = BTreeMap::from([("URL".to_string(), "http://x".to_string())]);
        let text = "get('${URL}/a'); const s = `$${id}`; $x";
        assert_eq!(
            substitute(text, &values),
            "get('http://x/a'); const s = `${id}`; $x"
        );
    }

    #[test]
    fn reports_references_with_offsets() {
        let refs = references("a ${URL} $${no} ${__ENV.X} ${open");
        let names: Vec<(&str, usize, bool)> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.offset, r.valid))
            .collect();
        assert_eq!(
            names,
            vec![("URL", 2, true), ("__ENV.X", 16, false), ("", 27, false)]
        );
        assert!(refs[2].unclosed);
    }
}
