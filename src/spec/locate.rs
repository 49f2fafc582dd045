//! Finds where a key path sits in block-style YAML, so findings made after deserialisation
//! (a target outside the allowlist, a bad threshold) still point at a line and column.
//! serde gives no spans for values that parsed fine; an indentation walk over the text is
//! exact for block style and falls back to the nearest enclosing key for flow style.

use super::diagnostic::Pos;

#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Line<'a> {
    no: usize,
    indent: usize,
    content: &'a str,
}

/// Position of `path` in a YAML document; the first line of `text` is `first_line` of the file.
/// Returns the deepest position it could find (the document start at worst).
pub fn locate(text: &str, first_line: usize, path: &[Seg]) -> Pos {
    let mut lines: Vec<Line> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                return None;
            }
            Some(Line {
                no: first_line + i,
                indent: raw.len() - trimmed.len(),
                content: trimmed,
            })
        })
        .collect();
    let mut best = lines
        .first()
        .map_or(Pos::new(first_line, 1), |l| Pos::new(l.no, l.indent + 1));
    for seg in path {
        let Some(child_indent) = lines.first().map(|l| l.indent) else {
            break;
        };
        let found = match seg {
            Seg::Key(key) => find_key(&lines, child_indent, key),
            Seg::Index(i) => find_item(&lines, child_indent, *i),
        };
        let Some((start, head)) = found else { break };
        best = Pos::new(head.no, head.indent + 1);
        // The block below the found line: everything indented deeper than it.
        let mut block: Vec<Line> = Vec::new();
        if let Some(inline) = inline_rest(head, seg) {
            block.push(inline);
        }
        block.extend(
            lines[start + 1..]
                .iter()
                .take_while(|l| l.indent > lines[start].indent)
                .copied(),
        );
        lines = block;
    }
    best
}

fn key_matches(content: &str, key: &str) -> bool {
    for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(rest) = content.strip_prefix(quoted.as_str()) {
            if rest.starts_with(':') {
                return true;
            }
        }
    }
    false
}

fn find_key<'a>(lines: &[Line<'a>], indent: usize, key: &str) -> Option<(usize, Line<'a>)> {
    lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| (l.indent == indent && key_matches(l.content, key)).then_some((i, *l)))
}

fn find_item<'a>(lines: &[Line<'a>], indent: usize, index: usize) -> Option<(usize, Line<'a>)> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.indent == indent && (l.content == "-" || l.content.starts_with("- ")))
        .nth(index)
        .map(|(i, l)| (i, *l))
}

/// What follows the key or the dash on the found line, as a line of its own one level deeper,
/// so `- name: x` makes `name` findable inside item 0.
fn inline_rest<'a>(head: Line<'a>, seg: &Seg) -> Option<Line<'a>> {
    match seg {
        Seg::Index(_) => {
            let rest = head.content.strip_prefix('-')?;
            let trimmed = rest.trim_start();
            if trimmed.is_empty() {
                return None;
            }
            let skipped = head.content.len() - trimmed.len();
            Some(Line {
                no: head.no,
                indent: head.indent + skipped,
                content: trimmed,
            })
        }
        Seg::Key(_) => None,
    }
}

/// Position of `needle` inside the block under `path`, for values in flow style.
pub fn locate_text(text: &str, first_line: usize, path: &[Seg], needle: &str) -> Pos {
    let base = locate(text, first_line, path);
    find_after(text, first_line, base, needle).unwrap_or(base)
}

/// First occurrence of `needle` on or after the line of `from`.
pub fn find_after(text: &str, first_line: usize, from: Pos, needle: &str) -> Option<Pos> {
    let start_line = from.line.saturating_sub(first_line);
    text.lines()
        .enumerate()
        .skip(start_line)
        .find_map(|(i, raw)| {
            raw.find(needle)
                .map(|col| Pos::new(first_line + i, raw[..col].chars().count() + 1))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: x\nkind: PerfTest\nmetadata:\n  name: a\nspec:\n  targets:\n    - https://a\n    - https://b\n  thresholds:\n    http_req_duration: [\"p(95)<500\"]\n  secretEnv:\n    - name: TOKEN\n      secret: s\n  env: {A: b}\n";

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(locate(DOC, 1, &[Seg::Key("spec")]), Pos::new(5, 1));
        let t1 = [Seg::Key("spec"), Seg::Key("targets"), Seg::Index(1)];
        assert_eq!(locate(DOC, 1, &t1), Pos::new(8, 5));
        let th = [
            Seg::Key("spec"),
            Seg::Key("thresholds"),
            Seg::Key("http_req_duration"),
        ];
        assert_eq!(locate(DOC, 10, &th), Pos::new(19, 5));
        let secret = [
            Seg::Key("spec"),
            Seg::Key("secretEnv"),
            Seg::Index(0),
            Seg::Key("secret"),
        ];
        assert_eq!(locate(DOC, 1, &secret), Pos::new(13, 7));
    }

    #[test]
    fn falls_back_to_the_enclosing_key_for_flow_style() {
        let p = [Seg::Key("spec"), Seg::Key("env"), Seg::Key("A")];
        assert_eq!(locate(DOC, 1, &p), Pos::new(14, 3));
        assert_eq!(locate_text(DOC, 1, &p, "b}"), Pos::new(14, 12));
    }
}
