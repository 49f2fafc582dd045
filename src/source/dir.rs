//! Reads a repository's spec folders from a local directory into a [`Tree`].
//! Symlinks are recorded, never followed, so nothing outside the repository is read.

use super::tree::{Entry, Tree};
use super::SourceError;
use std::fs;
use std::path::Path;

/// Files larger than this are recorded as [`Entry::Oversized`] without being read.
/// A ConfigMap holds at most 1 MiB, so no valid bundle file comes near it.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Deeper folders than this are reported instead of walked (a guard against link farms).
const MAX_DEPTH: usize = 64;

/// Loads `root/<folder>` for each folder (missing folders are simply empty).
pub fn load_dir(root: &Path, folders: &[&str]) -> Result<Tree, SourceError> {
    let meta = fs::metadata(root).map_err(|e| SourceError::Io {
        path: root.display().to_string(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADirectory(root.display().to_string()));
    }
    let mut tree = Tree::new();
    for folder in folders {
        let folder = folder.trim_matches('/');
        let start = root.join(folder);
        match fs::symlink_metadata(&start) {
            Ok(m) if m.is_dir() => walk(&start, folder, 0, &mut tree)?,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SourceError::Io {
                    path: start.display().to_string(),
                    source: e,
                })
            }
        }
    }
    Ok(tree)
}

fn walk(dir: &Path, rel: &str, depth: usize, tree: &mut Tree) -> Result<(), SourceError> {
    let io = |p: &Path, e| SourceError::Io {
        path: p.display().to_string(),
        source: e,
    };
    if depth > MAX_DEPTH {
        return Err(SourceError::TooDeep(rel.to_string()));
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(SourceError::NonUtf8Path(entry.path().display().to_string()));
        };
        if name == ".git" {
            continue;
        }
        let rel_path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| io(&path, e))?;
            tree.insert(
                rel_path,
                Entry::Symlink(target.to_string_lossy().into_owned()),
            );
        } else if meta.is_dir() {
            walk(&path, &rel_path, depth + 1, tree)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_BYTES {
                tree.insert(rel_path, Entry::Oversized(meta.len()));
            } else {
                let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
                tree.insert_file(rel_path, bytes);
            }
        }
    }
    Ok(())
}
