//! Running a container as a host process: in a mount namespace of its own
//! (`unshare -m --propagation private`) where each volume is bind-mounted at its `mountPath`
//! and the pod's own folder is `/tmp`; stdout and stderr go to the pod's log file.

use super::kubelet::{self, PodRun};
use super::{lock, Shared};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The host folder of a pod: `log`, `tmp/` (its `/tmp`), `volumes/<name>/`.
pub fn pod_dir(work: &Path, ns: &str, pod: &str) -> PathBuf {
    let ns = if ns.is_empty() { "_" } else { ns };
    work.join(ns).join(pod)
}

pub struct Mount {
    pub src: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Writes a volume's files (`None`: an empty folder).
pub fn write_files(dir: &Path, files: Option<&BTreeMap<String, Vec<u8>>>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (path, bytes) in files.into_iter().flatten() {
        if path.split('/').any(|p| p == "..") || path.starts_with('/') {
            return Err(format!("item path {path} escapes the volume"));
        }
        let target = dir.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The shell program that sets the mounts up, then `exec`s the container's command.
fn mount_program(dir: &Path, mounts: &[Mount]) -> String {
    let tmp = dir.join("tmp");
    let mut lines = vec!["set -e".to_string()];
    let mut bind = |src: &Path, target: &Path, ro: bool| {
        let (t, sr) = (quote(target), quote(src));
        if src.is_dir() {
            lines.push(format!("mkdir -p {t}"));
        } else {
            let parent = target.parent().unwrap_or(Path::new("/"));
            lines.push(format!("mkdir -p {} && touch {t}", quote(parent)));
        }
        lines.push(format!("mount --bind {sr} {t}"));
        if ro {
            lines.push(format!("mount -o remount,bind,ro {t}"));
        }
    };
    // Mounts under /tmp go into the pod's own tmp first, which then replaces /tmp whole (the
    // sources may themselves live under the host's /tmp).
    for m in mounts {
        match m.target.strip_prefix("/tmp") {
            Ok(rel) => bind(&m.src, &tmp.join(rel), m.read_only),
            Err(_) => bind(&m.src, &m.target, m.read_only),
        }
    }
    lines.push(format!("mount --rbind {} /tmp", quote(&tmp)));
    lines.push("cd /".into());
    lines.push("exec \"$@\"".into());
    lines.join("\n")
}

fn on_path(cmd: &str, path: &str) -> bool {
    if cmd.contains('/') {
        return Path::new(cmd).exists();
    }
    std::env::split_paths(path).any(|d| d.join(cmd).is_file())
}

/// Starts the container's process; its log is `<dir>/log`.
pub fn spawn(
    sh: &Arc<Shared>,
    ns: &str,
    pod: &str,
    dir: &Path,
    argv: &[String],
    env: &[(String, String)],
    mounts: &[Mount],
) -> Result<tokio::process::Child, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let Some(exe) = argv.first() else {
        return Err("no command to run".into());
    };
    if !on_path(exe, &path) {
        return Err(format!(
            "failed to create containerd task: exec: \"{exe}\": executable file not found in $PATH"
        ));
    }
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
    let log = dir.join("log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    sh.store.set_log(ns, pod, &log);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(mount_program(dir, mounts))
        .arg("sh")
        .args(argv)
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/tmp")
        .env("K6_NO_USAGE_REPORT", "true")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| format!("failed to start the container: {e}"))?;
    if let Some(pid) = child.id() {
        lock(&sh.processes).insert(pod.to_string(), pid as i32);
    }
    Ok(child)
}

/// Waits for the container's end and reports it.
pub fn wait(sh: &Arc<Shared>, mut child: tokio::process::Child, run: PodRun, pod: Value) {
    let sh = sh.clone();
    tokio::spawn(async move {
        let code = child.wait().await.ok().and_then(|st| {
            use std::os::unix::process::ExitStatusExt;
            st.code().or_else(|| st.signal().map(|sig| 128 + sig))
        });
        lock(&sh.processes).remove(&run.name);
        kubelet::finished(&sh, &run, &pod, code.unwrap_or(137));
    });
}

/// A deleted pod's container: SIGTERM, then SIGKILL after `grace` seconds.
pub fn kill_pod(sh: &Arc<Shared>, pod: &str, grace: u64) {
    let Some(pgid) = lock(&sh.processes).get(pod).copied() else {
        return;
    };
    // SAFETY: signals the container's own process group.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let (sh, pod) = (sh.clone(), pod.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(grace)).await;
        if lock(&sh.processes).get(&pod) == Some(&pgid) {
            // SAFETY: as above; the group is still this pod's.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    });
}
