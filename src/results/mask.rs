//! Secret values out of text, wherever a runner's output or a reason is kept or shown: the
//! stored summary (recorder), the page and the API (server). Pure: the caller says which
//! values are secret.

/// What a secret value becomes.
pub const MASK: &str = "***";

/// `text` with every occurrence of every non-empty secret replaced by `***`. Occurrences that
/// overlap (one secret inside or across another) become one `***`, so no part of either shows.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let step = secret.chars().next().map_or(1, char::len_utf8);
        let mut from = 0;
        while let Some(i) = text.get(from..).and_then(|rest| rest.find(secret)) {
            let start = from + i;
            spans.push((start, start + secret.len()));
            // Overlapping occurrences of the same secret count too ("aaa" holds "aa" twice).
            from = start + step;
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(s, e)) = iter.peek() {
            if s > end {
                break;
            }
            end = end.max(e);
            iter.next();
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}
