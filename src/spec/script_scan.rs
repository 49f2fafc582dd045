//! A small JavaScript scanner: the string literals of a k6 script, with offsets, so that the
//! URLs it may hit and the local files it imports or opens can be checked without executing it.
//! Comments are skipped, so a link in a comment is not mistaken for a target.

/// A string literal (or the static text of a template literal) and what it is used for.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal<'a> {
    pub text: &'a str,
    /// Byte offset of `text` in the script.
    pub offset: usize,
    pub usage: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `import … from "x"`, `import "x"`, `export … from "x"`, `require("x")`.
    Module,
    /// `open("x")`: a file k6 reads at init time.
    Open,
    Other,
}

/// A URL found in a literal: where it starts and what it is. URLs built from `${…}` stop there.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundUrl {
    pub url: String,
    pub offset: usize,
    /// Part of the host comes from an interpolation and cannot be checked statically.
    pub dynamic_host: bool,
}

pub fn literals(src: &str) -> Vec<Literal<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = src[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            }
            q @ (b'"' | b'\'' | b'`') => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != q {
                    if b[j] == b'\\' {
                        j += 1;
                    } else if q != b'`' && b[j] == b'\n' {
                        break;
                    }
                    j += 1;
                }
                let end = j.min(b.len());
                out.push(Literal {
                    text: &src[start..end],
                    offset: start,
                    usage: usage_before(&src[..i]),
                });
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn usage_before(before: &str) -> Usage {
    let t = before.trim_end();
    let t = t.strip_suffix('(').map_or(t, str::trim_end);
    let word_end = |w: &str| {
        t.ends_with(w)
            && t[..t.len() - w.len()]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'))
    };
    if word_end("from") || word_end("import") || word_end("require") {
        Usage::Module
    } else if word_end("open") {
        Usage::Open
    } else {
        Usage::Other
    }
}

const SCHEMES: [&str; 4] = ["https://", "http://", "wss://", "ws://"];

/// Every http(s):// and ws(s):// URL inside the literals that are not module specifiers.
pub fn urls(src: &str) -> Vec<FoundUrl> {
    let mut found = Vec::new();
    for lit in literals(src)
        .into_iter()
        .filter(|l| l.usage == Usage::Other)
    {
        let lower = lit.text.to_ascii_lowercase();
        let mut from = 0;
        while let Some(rel) = SCHEMES
            .iter()
            .filter_map(|s| lower[from..].find(s).map(|p| (p, s.len())))
            .min()
        {
            let start = from + rel.0;
            // Must not be the tail of a longer word such as `xhttp://`.
            let boundary = start == 0 || !lower.as_bytes()[start - 1].is_ascii_alphanumeric();
            let rest = &lit.text[start..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "\"'`<>\\^|".contains(c))
                .unwrap_or(rest.len());
            let interp = rest[..end].find("${");
            let url_end = interp.unwrap_or(end);
            let url = &rest[..url_end];
            let authority_end = url[rel.1..].find(['/', '?', '#']).map(|p| p + rel.1);
            let dynamic_host =
                interp.is_some() && authority_end.is_none_or(|a| interp.is_some_and(|i| i <= a));
            if boundary && url.len() > rel.1 || dynamic_host {
                found.push(FoundUrl {
                    url: url.to_string(),
                    offset: lit.offset + start,
                    dynamic_host,
                });
            }
            from = start + rel.1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"import http from 'k6/http';
import { helper } from "./lib/helpers.js";
// see https://grafana.com/docs for options
const data = open('./data/users.json');
/* http://commented.example */
export default function () {
  http.get("https://api.staging.example.com/items?x=1");
  http.get(`${__ENV.BASE}/x`);
  http.get(`https://${__ENV.HOST}/x`);
  http.get(`http://fixed.example/${id}`);
}
"#;

    #[test]
    fn finds_literal_urls_outside_comments_and_imports() {
        let urls: Vec<(String, bool)> = urls(SCRIPT)
            .into_iter()
            .map(|u| (u.url, u.dynamic_host))
            .collect();
        assert_eq!(
            urls,
            vec![
                (
                    "https://api.staging.example.com/items?x=1".to_string(),
                    false
                ),
                ("https://".to_string(), true),
                ("http://fixed.example/".to_string(), false),
            ]
        );
    }

    #[test]
    fn classifies_imports_and_opens() {
        let lits = literals(SCRIPT);
        let modules: Vec<&str> = lits
            .iter()
            .filter(|l| l.usage == Usage::Module)
            .map(|l| l.text)
            .collect();
        assert_eq!(modules, vec!["k6/http", "./lib/helpers.js"]);
        let opens: Vec<&str> = lits
            .iter()
            .filter(|l| l.usage == Usage::Open)
            .map(|l| l.text)
            .collect();
        assert_eq!(opens, vec!["./data/users.json"]);
    }
}
