//! What the end-to-end tests that report to these stand-ins share: the files of a commit and
//! the daemon's configuration around its `forges:` or `notifications:` section.

use std::path::{Path, PathBuf};

/// `(path, contents)` pairs as a commit's files.
pub fn files(v: &[(String, String)]) -> Vec<(&str, Option<&str>)> {
    v.iter()
        .map(|(a, b)| (a.as_str(), Some(b.as_str())))
        .collect()
}

/// Writes `perfsync.yaml` into `dir`: the local executor, quick delivery retries, the GitHub
/// webhook secret from the environment variable `hook_secret_env`, then `tail` (a `forges:`
/// or `notifications:` section). Its path.
pub fn write_config(
    dir: &Path,
    repo: &str,
    port: u16,
    public: &str,
    hook_secret_env: &str,
    max_runs: u32,
    tail: &str,
) -> PathBuf {
    let cfg = dir.join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {repo}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  publicUrl: {public}\nwebhooks:\n  github: {{env: {hook_secret_env}}}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n  maxConcurrentRuns: {max_runs}\nexecutor:\n  kind: local\ndelivery:\n  initialBackoff: 200ms\n  maxBackoff: 2s\n  requestTimeout: 5s\n{tail}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}
