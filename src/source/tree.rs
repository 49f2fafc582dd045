//! A snapshot of the part of a repository perfsync reads, held in memory. It is filled from a
//! directory or from git objects and then handed to the pure spec stage, which never does I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Arc<[u8]>),
    /// A symbolic link and its target as written; it is never followed outside the snapshot.
    Symlink(String),
    /// A file over the reader's size cap: its size is known, its content was never read.
    Oversized(u64),
}

impl Entry {
    /// Bytes of content the entry holds in memory (an oversized file holds none).
    pub fn content_len(&self) -> u64 {
        match self {
            Entry::File(b) => b.len() as u64,
            Entry::Symlink(t) => t.len() as u64,
            Entry::Oversized(_) => 0,
        }
    }
}

/// Paths are relative to the repository root, `/`-separated, without `.` or `..` segments.
/// Identical files may share one buffer (the git source keeps one copy per blob id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
    /// Sum of [`Entry::content_len`] over the entries, each path counted (shared or not).
    content_bytes: u64,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, entry: Entry) {
        self.content_bytes += entry.content_len();
        if let Some(old) = self.entries.insert(path.into(), entry) {
            self.content_bytes -= old.content_len();
        }
    }

    pub fn insert_file(&mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) {
        let bytes: Vec<u8> = content.into();
        self.insert(path, Entry::File(Arc::from(bytes)));
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        let old = self.entries.remove(path)?;
        self.content_bytes -= old.content_len();
        Some(old)
    }

    /// Bytes of file content and symlink targets held, each path counted once.
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Entries below folder `dir` (`""` for the root), in path order.
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.trim_end_matches('/'))
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// Joins `rel` onto folder `base` and resolves `.` and `..` lexically. `None` when the
/// result would climb above the root or `rel` is absolute.
pub fn join(base: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') || rel.starts_with('\\') || rel.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The folder part of a path (`""` for a top-level file).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// True when `path` is `dir` itself or lies below it.
pub fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_lexically_and_refuses_escapes() {
        assert_eq!(
            join("tests/a", "./lib/x.js").as_deref(),
            Some("tests/a/lib/x.js")
        );
        assert_eq!(
            join("tests/a", "../b/x.js").as_deref(),
            Some("tests/b/x.js")
        );
        assert_eq!(join("tests", "../../etc/passwd"), None);
        assert_eq!(join("tests", "/etc/passwd"), None);
    }

    #[test]
    fn lists_only_what_is_under_a_folder() {
        let mut t = Tree::new();
        for p in ["tests/a/x", "tests/ab/y", "tests/a/b/z", "tests/a"] {
            t.insert_file(p, "");
        }
        let under: Vec<&str> = t.under("tests/a").map(|(p, _)| p).collect();
        assert_eq!(t.content_bytes(), 0);
        assert_eq!(under, vec!["tests/a/b/z", "tests/a/x"]);
        assert!(is_within("tests/a/x", "tests/a") && !is_within("tests/ab", "tests/a"));
    }

    #[test]
    fn counts_the_content_it_holds_through_inserts_replacements_and_removals() {
        let mut t = Tree::new();
        let shared: Arc<[u8]> = Arc::from(&b"12345"[..]);
        t.insert("a", Entry::File(shared.clone()));
        t.insert("b", Entry::File(shared));
        t.insert("c", Entry::Symlink("a".into()));
        t.insert("d", Entry::Oversized(1 << 30));
        assert_eq!(t.content_bytes(), 11, "each path counts, shared or not");
        t.insert("a", Entry::File(Arc::from(&b"1"[..])));
        assert_eq!(t.content_bytes(), 7);
        t.remove("b");
        t.remove("missing");
        assert_eq!(t.content_bytes(), 2);
    }
}
