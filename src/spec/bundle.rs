//! A test's bundle: the files of its folder (and its template's), resolved through symlinks
//! that must stay inside the bundle. What a runner gets is exactly this, nothing from outside.

use super::diagnostic::{Code, Diagnostic, Pos};
use crate::source::tree::{is_within, join, parent, Entry, Tree};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Files a runner receives, keyed by their path inside the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bundle {
    /// Path of the script k6 runs, inside the bundle.
    pub entry: String,
    pub files: super::small_map::SmallMap<String, Arc<[u8]>>,
    /// Where each bundle file came from in the repository, for error messages.
    pub origin: BTreeMap<String, String>,
}

impl Bundle {
    /// SHA-256 over the entry and every file, by path and content: what k6 executes, so the
    /// same digest means the same script (a regression series' identity).
    pub fn content_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.entry.as_bytes());
        h.update([0]);
        let mut files: Vec<(&String, &Arc<[u8]>)> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        for (path, content) in files {
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update((content.len() as u64).to_le_bytes());
            h.update(content);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
}

pub const SPEC_FILES: [&str; 2] = ["perftest.yaml", "perftest.yml"];
pub const TEMPLATE_FILES: [&str; 2] = ["template.yaml", "template.yml"];

pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The content of `path`, following symlinks only while they stay inside `boundary`.
pub fn read(tree: &Tree, path: &str, boundary: &str) -> Result<Arc<[u8]>, Diagnostic> {
    let mut current = path.to_string();
    for _ in 0..8 {
        match tree.get(&current) {
            Some(Entry::File(bytes)) => return Ok(bytes.clone()),
            Some(Entry::Oversized(size)) => {
                return Err(Diagnostic::new(
                    path,
                    Pos::START,
                    Code::LimitExceeded,
                    format!(
                        "the file is {size} bytes, over the {} bytes perfsync reads; a ConfigMap holds at most 1 MiB, so move large data out of the repository",
                        crate::source::dir::MAX_FILE_BYTES
                    ),
                ))
            }
            Some(Entry::Symlink(target)) => {
                let resolved = join(parent(&current), target)
                    .filter(|p| is_within(p, boundary));
                match resolved {
                    Some(p) => current = p,
                    None => {
                        return Err(Diagnostic::new(
                            path,
                            Pos::START,
                            Code::PathEscape,
                            format!(
                                "symlink to `{target}` leads outside `{boundary}`; copy the file into the folder instead"
                            ),
                        ))
                    }
                }
            }
            None => {
                return Err(Diagnostic::new(
                    path,
                    Pos::START,
                    Code::ScriptMissing,
                    format!("`{current}` does not exist in the repository"),
                ))
            }
        }
    }
    Err(Diagnostic::new(
        path,
        Pos::START,
        Code::PathEscape,
        "symlinks chain more than 8 times (a loop?); point it straight at the file",
    ))
}

/// Collects every file under `dir` except those under `excluded` folders (nested tests) and
/// spec files, keyed relative to `dir` with `prefix` in front.
pub fn collect(
    tree: &Tree,
    dir: &str,
    excluded: &[&str],
    prefix: &str,
    bundle: &mut Bundle,
    errors: &mut Vec<Diagnostic>,
) {
    for (path, _) in tree.under(dir) {
        if excluded.iter().any(|x| is_within(path, x)) {
            continue;
        }
        let name = file_name(path);
        if SPEC_FILES.contains(&name) || TEMPLATE_FILES.contains(&name) {
            continue;
        }
        let rel = &path[dir.len() + usize::from(!dir.is_empty())..];
        let key = format!("{prefix}{rel}");
        match read(tree, path, dir) {
            Ok(bytes) => {
                bundle.files.insert(key.clone(), bytes);
                bundle.origin.insert(key, path.to_string());
            }
            Err(d) => errors.push(d),
        }
    }
}
