//! Records the git commit perfsync is built from, for `perfsync --version`.
//!
//! `PERFSYNC_COMMIT` wins when set (a build without `.git`, such as the container build, is
//! given the commit by `scripts/image.sh`); otherwise `git rev-parse HEAD` in the source tree;
//! otherwise `unknown`. The script runs again when HEAD moves (`.git/HEAD`, the branch's ref),
//! so a new commit is never reported as the old one, and only then.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PERFSYNC_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());

    // The files that move with HEAD: HEAD itself (in a worktree's own git dir), and the ref it
    // names (in the common git dir): its loose file, or, when the ref is packed, packed-refs
    // and the folder its loose file would appear in. Only paths that exist are named: cargo
    // reruns a build script on every build while a path it watches is missing.
    if let Some(git_dir) = git(&manifest_dir, &["rev-parse", "--git-dir"]) {
        let git_dir = manifest_dir.join(git_dir);
        let common = git(&manifest_dir, &["rev-parse", "--git-common-dir"])
            .map(|c| manifest_dir.join(c))
            .unwrap_or_else(|| git_dir.clone());
        let mut watch = vec![git_dir.join("HEAD")];
        if let Some(head_ref) = git(&manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
            let loose = common.join(&head_ref);
            if loose.is_file() {
                watch.push(loose);
            } else {
                watch.push(common.join("packed-refs"));
                if let Some(dir) = loose.ancestors().skip(1).find(|d| d.is_dir()) {
                    watch.push(dir.to_path_buf());
                }
            }
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let commit = match std::env::var("PERFSYNC_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git(&manifest_dir, &["rev-parse", "HEAD"])
            .filter(|c| is_commit(c))
            .unwrap_or_else(|| "unknown".to_string()),
    };
    // Only characters that are safe in a version line.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    let commit = if commit.is_empty() {
        "unknown".to_string()
    } else {
        commit
    };
    println!("cargo:rustc-env=PERFSYNC_COMMIT={commit}");
}
