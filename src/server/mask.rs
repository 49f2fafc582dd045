//! Secret values out of text: every place that renders or returns a runner's log or a reason
//! string passes it through [`mask`] first. Pure: the caller says which values are secret.

use serde_json::Value;

pub use crate::results::mask::{mask, MASK};

/// Longest line a log tail or reason shows, in characters; the rest is cut with a marker.
pub const MAX_LINE_CHARS: usize = 2_000;

/// [`mask`] over every string and object key of a JSON value.
pub fn mask_json(value: &mut Value, secrets: &[&str]) {
    if secrets.iter().all(|s| s.is_empty()) {
        return;
    }
    match value {
        Value::String(s) => {
            let masked = mask(s, secrets);
            if masked != *s {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_json(v, secrets)),
        Value::Object(map) => {
            let taken = std::mem::take(map);
            for (k, mut v) in taken {
                mask_json(&mut v, secrets);
                map.insert(mask(&k, secrets), v);
            }
        }
        _ => {}
    }
}

/// `line` cut to `max` characters, with a marker saying how much was cut.
pub fn cap_line(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        None => line.to_string(),
        Some((cut, _)) => {
            let rest = line[cut..].chars().count();
            format!("{} … [{rest} more characters cut]", &line[..cut])
        }
    }
}

/// The last `lines` lines of a log's tail, masked and each capped at [`MAX_LINE_CHARS`].
/// `starts_cut` says the tail's first line was cut at its start (the read began inside it):
/// that fragment, which may hold the end of a secret whose start was not read, is dropped,
/// or, when the tail is all that one line, shown only by its end.
pub fn log_tail(tail: &str, starts_cut: bool, lines: usize, secrets: &[&str]) -> Vec<String> {
    let masked = mask(tail, secrets);
    let mut text = masked.strip_suffix('\n').unwrap_or(&masked);
    let mut fragment = None;
    if starts_cut {
        match text.find('\n') {
            Some(nl) => text = &text[nl + 1..],
            None => {
                // One line longer than what was read: show its end, never its cut start.
                let total = text.chars().count();
                let keep = total.min(MAX_LINE_CHARS);
                let start = text
                    .char_indices()
                    .nth(total - keep)
                    .map_or(text.len(), |(i, _)| i);
                fragment = Some(format!(
                    "[… the start of this line was cut] {}",
                    &text[start..]
                ));
                text = "";
            }
        }
    }
    let mut out: Vec<String> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n')
            .map(|l| cap_line(l.strip_suffix('\r').unwrap_or(l), MAX_LINE_CHARS))
            .collect()
    };
    out.extend(fragment);
    let skip = out.len().saturating_sub(lines);
    out.drain(..skip);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_every_occurrence_and_overlaps_as_one() {
        assert_eq!(mask("a=SECRET b=SECRET", &["SECRET"]), "a=*** b=***");
        assert_eq!(mask("xabcdefghx", &["abcdef", "defgh"]), "x***x");
        assert_eq!(mask("aaa", &["aa"]), "***");
        assert_eq!(mask("nothing here", &["", "zzz"]), "nothing here");
        assert_eq!(mask("é-tok-é", &["tok"]), "é-***-é");
    }

    #[test]
    fn masks_json_strings_and_keys() {
        let mut v = json!({"reason": "token tok1 leaked", "tok1": [1, "x tok1"], "n": 3});
        mask_json(&mut v, &["tok1"]);
        assert_eq!(
            v,
            json!({"reason": "token *** leaked", "***": [1, "x ***"], "n": 3})
        );
    }

    #[test]
    fn caps_long_lines_with_a_marker() {
        let line = "x".repeat(100_000);
        let capped = cap_line(&line, MAX_LINE_CHARS);
        assert!(capped.starts_with(&"x".repeat(MAX_LINE_CHARS)));
        assert!(capped.ends_with("[98000 more characters cut]"), "{capped}");
        assert_eq!(cap_line("short", 10), "short");
    }

    #[test]
    fn a_tail_read_from_the_middle_drops_its_first_fragment() {
        // The read began inside a secret: its end must not show.
        let bytes = "CRET rest of line\nline two SECRET\nline three\n";
        assert_eq!(
            log_tail(bytes, true, 30, &["SECRET"]),
            vec!["line two ***", "line three"]
        );
        assert_eq!(log_tail(bytes, false, 1, &["SECRET"]), vec!["line three"]);
        let one = log_tail(&format!("{}\n", "y".repeat(10_000)), true, 30, &[]);
        assert_eq!(one.len(), 1);
        assert!(one[0].starts_with("[… the start of this line was cut]"));
        assert!(one[0].len() < MAX_LINE_CHARS + 100);
    }
}
