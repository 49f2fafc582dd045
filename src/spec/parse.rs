//! YAML documents to typed specs, with every failure turned into a located diagnostic.

use super::diagnostic::{pos_of_offset, Code, Diagnostic, Pos};
use serde::de::DeserializeOwned;

/// One YAML document of a multi-document file, with where it starts.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub text: &'a str,
    /// 1-based line of the file on which `text` begins.
    pub first_line: usize,
}

/// Bytes as UTF-8, or a diagnostic naming the line of the first bad byte.
pub fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
        Diagnostic::new(
            file,
            pos_of_offset(&good, good.len()),
            Code::YamlSyntax,
            "the file is not valid UTF-8: save it as UTF-8",
        )
    })
}

/// Splits a YAML stream at `---` lines. Documents holding only comments are dropped.
pub fn split_documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        let is_marker =
            bare == "---" || bare.starts_with("--- ") || bare == "..." || bare.starts_with("---\t");
        if is_marker {
            push_doc(&mut docs, &text[start..offset], start_line);
            // Content after `--- ` on the same line belongs to the next document; keep it by
            // blanking only the marker.
            start = offset
                + if bare.starts_with("--- ") {
                    4
                } else {
                    line.len()
                };
            start_line = if bare.starts_with("--- ") {
                i + 1
            } else {
                i + 2
            };
        }
        offset += line.len();
    }
    push_doc(&mut docs, &text[start..], start_line);
    docs
}

fn push_doc<'a>(docs: &mut Vec<Doc<'a>>, text: &'a str, first_line: usize) {
    let meaningful = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
    });
    if meaningful {
        docs.push(Doc { text, first_line });
    }
}

/// What a document says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

/// Reads `apiVersion` and `kind`. The whole document is loaded here, aliases expanded, so a
/// syntax error, an alias bomb or runaway nesting anywhere in it surfaces as `yaml-syntax`
/// (serde_norway bounds both alias repetition and depth).
pub fn read_kind(file: &str, doc: Doc) -> Result<Kind, Diagnostic> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(doc.text).map_err(|e| to_diagnostic(file, doc, &e, true))?;
    let serde_yaml::Value::Mapping(map) = value else {
        let what = match value {
            serde_yaml::Value::Sequence(_) => "a list",
            serde_yaml::Value::Null => "empty",
            _ => "a single value",
        };
        return Err(Diagnostic::new(
            file,
            Pos::new(doc.first_line, 1),
            Code::Schema,
            format!("a spec document must be a mapping with apiVersion, kind, metadata and spec; this one is {what}"),
        ));
    };
    let field = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Kind {
        api_version: field("apiVersion"),
        kind: field("kind"),
    })
}

/// Deserialises a document whose syntax is known to be good.
pub fn typed<T: DeserializeOwned>(file: &str, doc: Doc) -> Result<T, Diagnostic> {
    serde_yaml::from_str::<T>(doc.text).map_err(|e| to_diagnostic(file, doc, &e, false))
}

fn to_diagnostic(file: &str, doc: Doc, e: &serde_yaml::Error, header_pass: bool) -> Diagnostic {
    let pos = e.location().map_or(Pos::new(doc.first_line, 1), |l| {
        Pos::new(doc.first_line + l.line().saturating_sub(1), l.column())
    });
    let raw = e.to_string();
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    let type_error = message.contains("invalid type")
        || message.contains("missing field")
        || message.contains("unknown field")
        || message.contains("unknown variant")
        || message.contains("invalid value")
        || message.contains("invalid length");
    if header_pass && !type_error {
        return Diagnostic::new(file, pos, Code::YamlSyntax, syntax_hint(&message));
    }
    // A value refused by its own parser (a duration, say) is reported by serde at the start of
    // the enclosing mapping; point at the value itself when the message quotes it.
    let pos = match message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("invalid duration"))
    {
        Some(value) => {
            super::locate::find_after(doc.text, doc.first_line, pos, value).unwrap_or(pos)
        }
        None => pos,
    };
    Diagnostic::new(file, pos, Code::Schema, schema_hint(&message))
}

fn syntax_hint(message: &str) -> String {
    if message.contains("recursion limit") {
        format!("{message}: the document is nested too deeply; flatten it")
    } else if message.contains("repetition limit") || message.contains("alias") {
        format!("{message}: YAML aliases expand without bound here; write the values out")
    } else {
        format!("invalid YAML: {message}")
    }
}

/// Adds a did-you-mean to serde's unknown-field messages and a quoting hint to type errors.
fn schema_hint(message: &str) -> String {
    if let Some(idx) = message.find("unknown field `") {
        let rest = &message[idx + "unknown field `".len()..];
        let field = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, e)| e.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let suggestion = expected
            .iter()
            .map(|c| (strsim::jaro_winkler(field, c), *c))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c);
        let place = message[..idx].trim_end_matches(": ").trim();
        let place = if place.is_empty() {
            String::new()
        } else {
            format!(" in `{place}`")
        };
        let allowed = expected.join(", ");
        return match suggestion {
            Some(s) => {
                format!("unknown field `{field}`{place}: did you mean `{s}`? (allowed: {allowed})")
            }
            None if allowed.is_empty() => format!("unknown field `{field}`{place}: remove it"),
            None => format!("unknown field `{field}`{place}: remove it or use one of {allowed}"),
        };
    }
    if message.contains("expected a string") {
        return format!("{message}: quote the value so it is read as text");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multi_document_streams_with_line_numbers() {
        let text = "# c\n---\na: 1\n---\nb: 2\n...\n---\n# only a comment\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].first_line, docs[0].text), (3, "a: 1\n"));
        assert_eq!((docs[1].first_line, docs[1].text), (5, "b: 2\n"));
    }

    #[test]
    fn suggests_the_closest_field() {
        let m = schema_hint(
            "spec: unknown field `scrpt`, expected one of `description`, `script`, `template`",
        );
        assert!(m.contains("did you mean `script`?"), "{m}");
        assert!(m.contains("in `spec`"), "{m}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let d = utf8("f.yaml", b"a: 1\nb: \xff\n").unwrap_err();
        assert_eq!((d.line, d.code), (2, Code::YamlSyntax));
    }
}
