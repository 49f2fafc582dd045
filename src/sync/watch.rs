//! Watches a local-path repository's refs and fires a trigger on each new commit of the branch.

use super::triggers::Triggers;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The git directory of a local repository (work tree or bare), if `url` is a local path.
pub fn local_git_dir(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.contains("://") {
        return None;
    }
    let p = Path::new(path);
    if p.join(".git").is_dir() {
        Some(p.join(".git"))
    } else if p.join("HEAD").is_file() && p.join("refs").is_dir() {
        Some(p.to_path_buf())
    } else {
        None
    }
}

/// Starts watching; the returned watcher must be kept alive. Events touching the branch's ref,
/// `packed-refs` or `HEAD` fire a `watch` trigger; the sync itself decides if anything changed.
pub fn watch(
    git_dir: &Path,
    branch: &str,
    triggers: Arc<Triggers>,
) -> notify::Result<notify::RecommendedWatcher> {
    let branch_ref = PathBuf::from("refs/heads").join(branch);
    let root = git_dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = event.paths.iter().any(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(p);
            rel.starts_with(&branch_ref)
                || rel == Path::new("packed-refs")
                || rel == Path::new("HEAD")
        });
        if relevant {
            triggers.fire("watch", None);
        }
    })?;
    watcher.watch(&git_dir.join("refs"), RecursiveMode::Recursive)?;
    watcher.watch(git_dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
