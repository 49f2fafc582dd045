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

/// Where a piece of a rendered text came from: its own text, or a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Byte range in the rendered text.
    pub rendered: std::ops::Range<usize>,
    /// Byte offset in the template text: where the copied text starts, or where the
    /// `${NAME}` (or `$${`) that produced it is written.
    pub source: usize,
    /// The parameter whose value this is; `None` for text copied from the template.
    pub param: Option<String>,
}

/// A rendered text with the way back to the template it came from, so that a finding in the
/// rendered script can point at the template's line and at the parameter that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub text: String,
    pub pieces: Vec<Piece>,
}

impl Rendered {
    /// The template offset of a rendered offset: inside copied text, the same character; inside
    /// a parameter's value, the `${NAME}` that put it there.
    pub fn source_offset(&self, offset: usize) -> usize {
        let i = self
            .pieces
            .partition_point(|p| p.rendered.end <= offset)
            .min(self.pieces.len().saturating_sub(1));
        match self.pieces.get(i) {
            Some(p) if p.param.is_none() => p.source + offset.saturating_sub(p.rendered.start),
            Some(p) => p.source,
            None => offset,
        }
    }

    /// The parameters whose values make up any part of `range` of the rendered text.
    pub fn params_in(&self, range: std::ops::Range<usize>) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .pieces
            .iter()
            .filter(|p| {
                p.rendered.start < range.end.max(range.start + 1) && range.start < p.rendered.end
            })
            .filter_map(|p| p.param.as_deref())
            .collect();
        out.dedup();
        out
    }
}

/// [`substitute`], keeping where every piece of the result came from.
pub fn substitute_mapped(text: &str, values: &BTreeMap<String, String>) -> Rendered {
    let mut r = Rendered {
        text: String::with_capacity(text.len()),
        pieces: Vec::new(),
    };
    let push = |r: &mut Rendered, s: &str, source: usize, param: Option<&str>| {
        if s.is_empty() {
            return;
        }
        let start = r.text.len();
        r.text.push_str(s);
        r.pieces.push(Piece {
            rendered: start..r.text.len(),
            source,
            param: param.map(str::to_string),
        });
    };
    let b = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'$' && b.get(i + 2) == Some(&b'{') {
            push(&mut r, &text[copied..i], copied, None);
            // `$${` renders as `${`: the `$` and `{` of the escape, one character further on.
            push(&mut r, "${", i + 1, None);
            i += 3;
            copied = i;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            if let Some(len) = text[i + 2..].find('}') {
                let name = &text[i + 2..i + 2 + len];
                if let Some(v) = values.get(name) {
                    push(&mut r, &text[copied..i], copied, None);
                    push(&mut r, v, i, Some(name));
                    i += 2 + len + 1;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    push(&mut r, &text[copied..], copied, None);
    r
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
    fn mapped_rendering_points_back_at_the_template_and_its_parameters() {
        let values = BTreeMap::from([
            ("HOST".to_string(), "https://a.example".to_string()),
            ("PATH".to_string(), "@evil.example/x".to_string()),
        ]);
        let text = "get('${HOST}${PATH}'); `$${x}` end";
        let r = substitute_mapped(text, &values);
        assert_eq!(r.text, substitute(text, &values));
        assert_eq!(
            r.text,
            "get('https://a.example@evil.example/x'); `${x}` end"
        );
        // Inside a value: the `${NAME}` that put it there.
        let at = r.text.find("evil").unwrap();
        assert_eq!(r.source_offset(at), text.find("${PATH}").unwrap());
        let close = r.text[5..].find('\'').unwrap() + 5;
        assert_eq!(r.params_in(5..close), vec!["HOST", "PATH"]);
        assert!(r.params_in(0..4).is_empty());
        // Copied text after an escape keeps its own place.
        let end = r.text.find("end").unwrap();
        assert_eq!(r.source_offset(end), text.find("end").unwrap());
        assert_eq!(r.source_offset(0), 0);
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
