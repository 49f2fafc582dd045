//! `perfsync serve` as a process for end-to-end tests, and waiting on what it does.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Daemon {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `perfsync serve --config cfg`; its log goes beside the config, for a failing test.
pub fn start_daemon(
    cfg: &std::path::Path,
    db_url: &str,
    port: u16,
    env: &[(&str, &str)],
) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.with_file_name("daemon.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("PERFSYNC_DATABASE_URL", db_url)
        .env("PERFSYNC_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

/// Polls `f` every 100 ms for `secs`; on time-out fails with the tail of the daemon logs.
pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..secs * 10 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Daemon logs sit in a test's temporary folder, or one level below (one per replica).
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let logs: Vec<String> = dirs
        .iter()
        .flat_map(|d| {
            let below = std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path());
            std::iter::once(d.clone()).chain(below)
        })
        .map(|p| p.join("daemon.log"))
        .filter(|p| {
            // Only logs written in the last few minutes: this test's, not an old run's.
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(600))
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let tail: String = logs
        .iter()
        .flat_map(|l| {
            l.lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
        })
        .collect::<Vec<_>>()
        .join("\n");
    panic!("timed out waiting for {what}; daemon logs:\n{tail}");
}

/// Waits for a daemon's first sync (what the repository holds then is the baseline, not run).
pub async fn wait_baseline(pool: &sqlx::PgPool) {
    wait_for("the baseline sync", 30, || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT last_commit FROM sync_state")
            .fetch_optional(pool)
            .await
            .ok()
            .flatten()
            .flatten()
    })
    .await;
}

/// A daemon config on the local executor, written to `dir/perfsync.yaml`: the repository at
/// `url`, state under `dir/state`, the API token and GitHub webhook secret from
/// `E2E_API_TOKEN` and `E2E_HOOK_SECRET`, no polling; `policy` is YAML added under `policy:`
/// (indented two spaces), `extra` top-level YAML.
pub fn local_config(
    dir: &std::path::Path,
    url: &str,
    port: u16,
    policy: &str,
    extra: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("perfsync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repository:\n  url: {url}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  apiToken: {{env: E2E_API_TOKEN}}\nwebhooks:\n  github: {{env: E2E_HOOK_SECRET}}\nsync:\n  pollInterval: 0s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n{policy}executor:\n  kind: local\n{extra}results:\n  authorName: perfsync-bot\n  authorEmail: bot@example.com\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}
