//! URLs inside strings: a plain value (an `env` value, a template parameter) or a string a
//! script builds, given as pieces that are known text, values of the spec's `env`, or unknown
//! until run time (see [`super::js`], which folds a script's constant expressions into these).
//!
//! A URL is found wherever `<scheme>://` stands, for the schemes k6 connects to (http, https,
//! ws, wss). Its authority ends at `/`, `?` or `#`, as Go's `net/url` (k6) reads it, so
//! userinfo (`allowed.example@evil.example`) is part of what is checked.

/// A piece of a string whose URLs are sought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'s> {
    /// Text known before the run.
    Text(&'s str),
    /// The value of `__ENV.<name>`, set in the spec's `env`.
    Env { name: &'s str, value: &'s str },
    /// Known only at run time.
    Unknown,
}

/// A URL found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUrl {
    /// The URL as far as it is known, for messages.
    pub url: String,
    /// What the allowlist is asked about: `scheme://authority/`. Empty when the host is not
    /// known at all ([`FoundUrl::dynamic_host`]).
    pub check: String,
    /// Index of the piece where the URL starts, and the byte offset in that piece.
    pub piece: usize,
    pub offset: usize,
    /// No part of the host is known before the run: nothing can be checked.
    pub dynamic_host: bool,
    /// The host is known up to a piece that is not: `check` holds the part that is.
    pub partial_host: bool,
    /// The scheme starts in a piece known only at run time; `check` uses `https`, and the
    /// caller tries every scheme.
    pub scheme_unknown: bool,
    /// `env` variables whose values make up part of the scheme or authority.
    pub env: Vec<String>,
    /// The whole URL up to the end of its authority is one `env` value, which the spec's own
    /// check of `env` already compared with the allowlist.
    pub within_env: bool,
}

const SCHEMES: [&str; 4] = ["http", "https", "ws", "wss"];

/// Every http(s) and ws(s) URL of a plain text.
pub fn urls(text: &str) -> Vec<FoundUrl> {
    urls_in(&[Piece::Text(text)])
}

/// Every http(s) and ws(s) URL of a string made of `pieces`.
pub fn urls_in(pieces: &[Piece]) -> Vec<FoundUrl> {
    // The known text, joined, with where each piece starts in it and which ones are unknown.
    let mut joined = String::new();
    // (start in `joined`, piece index); an unknown piece takes no room.
    let mut starts: Vec<(usize, usize)> = Vec::with_capacity(pieces.len());
    let mut unknown_at: Vec<usize> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        starts.push((joined.len(), i));
        match p {
            Piece::Text(t) => joined.push_str(t),
            Piece::Env { value, .. } => joined.push_str(value),
            Piece::Unknown => unknown_at.push(joined.len()),
        }
    }
    if !joined.contains("://") {
        return Vec::new();
    }
    let bytes = joined.as_bytes();
    let piece_at = |pos: usize| -> (usize, usize) {
        // The last piece starting at or before `pos` that holds text there.
        let mut found = (0, 0);
        for &(start, i) in &starts {
            if start > pos {
                break;
            }
            if !matches!(pieces[i], Piece::Unknown) {
                found = (i, pos - start);
            }
        }
        found
    };
    let env_names_in = |range: std::ops::Range<usize>| -> Vec<String> {
        let mut names = Vec::new();
        for (k, &(start, i)) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map_or(joined.len(), |s| s.0);
            if let Piece::Env { name, .. } = pieces[i] {
                if start < range.end && range.start < end && !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        names
    };
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = joined[from..].find("://") {
        let sep = from + rel;
        from = sep + 3;
        // The scheme: the letters, digits, `+`, `-` and `.` before `://`.
        let mut start = sep;
        while start > 0 && {
            let c = bytes[start - 1];
            c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
        } {
            start -= 1;
        }
        // An unknown piece inside the scheme (or right before `://`) leaves it unknown; one
        // right before it can only make it invalid, so the scheme read counts.
        let scheme_unknown = unknown_at
            .iter()
            .any(|&u| u <= sep && (u > start || (u == start && start == sep)));
        let scheme = joined[start..sep].to_ascii_lowercase();
        if !scheme_unknown && !SCHEMES.contains(&scheme.as_str()) {
            continue;
        }
        // The authority: up to `/`, `?`, `#`, whitespace or a quote, or an unknown piece.
        let auth_start = sep + 3;
        let mut auth_end = auth_start;
        while auth_end < bytes.len()
            && !matches!(
                bytes[auth_end],
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'`' | b'<' | b'>'
            )
            && !bytes[auth_end].is_ascii_whitespace()
            && !unknown_at.contains(&auth_end)
        {
            auth_end += 1;
        }
        let cut_by_unknown = unknown_at.contains(&auth_end);
        let authority = &joined[auth_start..auth_end];
        let mut url_end = auth_end;
        while url_end < bytes.len()
            && !matches!(bytes[url_end], b'"' | b'\'' | b'`' | b'<' | b'>')
            && !bytes[url_end].is_ascii_whitespace()
            && !unknown_at.contains(&url_end)
        {
            url_end += 1;
        }
        let (piece, offset) = piece_at(if scheme_unknown { sep } else { start });
        let dynamic_host = authority.is_empty() && cut_by_unknown;
        if authority.is_empty() && !dynamic_host {
            continue; // `https://` alone, or `https:///path`: no host to reach
        }
        let shown_scheme = if scheme_unknown {
            "…"
        } else {
            &joined[start..sep]
        };
        let url = format!(
            "{shown_scheme}://{}{}",
            &joined[auth_start..url_end],
            if url_end < bytes.len() && unknown_at.contains(&url_end) || cut_by_unknown {
                "${…}"
            } else {
                ""
            }
        );
        let check = if dynamic_host {
            String::new()
        } else {
            let s = if scheme_unknown {
                "https"
            } else {
                scheme.as_str()
            };
            format!("{s}://{authority}/")
        };
        let within_env = {
            let (p, _) = piece_at(start);
            let (q, _) = piece_at(auth_end.saturating_sub(1));
            p == q
                && matches!(pieces[p], Piece::Env { .. })
                && !scheme_unknown
                && !cut_by_unknown
                && starts
                    .iter()
                    .find(|(_, i)| *i == p)
                    .is_some_and(|(s, _)| *s <= start)
        };
        out.push(FoundUrl {
            url,
            check,
            piece,
            offset,
            dynamic_host,
            partial_host: cut_by_unknown && !authority.is_empty(),
            scheme_unknown,
            env: env_names_in(start..auth_end.max(sep + 3)),
            within_env,
        });
    }
    out
}

/// The schemes a URL of unknown scheme is tried with.
pub fn schemes() -> &'static [&'static str] {
    &SCHEMES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(pieces: &[Piece]) -> Vec<(String, bool, bool)> {
        urls_in(pieces)
            .into_iter()
            .map(|u| (u.check, u.dynamic_host, u.partial_host))
            .collect()
    }

    #[test]
    fn finds_urls_in_plain_text_with_userinfo_in_the_authority() {
        let found =
            urls("see https://api.example.com@evil.example/x?y and ftp://no.example, xhttps://no");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].check, "https://api.example.com@evil.example/");
        assert_eq!(found[0].url, "https://api.example.com@evil.example/x?y");
        assert_eq!((found[0].piece, found[0].offset), (0, 4));
        assert!(urls("https:// and https:///x").is_empty());
    }

    #[test]
    fn pieces_join_and_unknown_pieces_stop_the_host() {
        use Piece::{Text, Unknown};
        assert_eq!(
            checks(&[Text("https://"), Text("evil.example/x")]),
            vec![("https://evil.example/".to_string(), false, false)]
        );
        assert_eq!(
            checks(&[Text("https://"), Unknown, Text("/x")]),
            vec![(String::new(), true, false)]
        );
        assert_eq!(
            checks(&[Text("https://api.example.com"), Unknown]),
            vec![("https://api.example.com/".to_string(), false, true)]
        );
        assert_eq!(
            checks(&[Text("https://api.example.com/"), Unknown]),
            vec![("https://api.example.com/".to_string(), false, false)]
        );
        let u = &urls_in(&[Unknown, Text("://evil.example/")])[0];
        assert!(
            u.scheme_unknown && u.check == "https://evil.example/",
            "{u:?}"
        );
    }

    #[test]
    fn env_values_count_as_text_and_are_named() {
        let pieces = [
            Piece::Env {
                name: "BASE",
                value: "https://api.example.com",
            },
            Piece::Text("@evil.example/x"),
        ];
        let u = &urls_in(&pieces)[0];
        assert_eq!(u.check, "https://api.example.com@evil.example/");
        assert_eq!(u.env, vec!["BASE".to_string()]);
        assert!(!u.within_env);
        let alone = [
            Piece::Env {
                name: "BASE",
                value: "https://api.example.com",
            },
            Piece::Text("/x"),
        ];
        assert!(urls_in(&alone)[0].within_env);
    }
}
