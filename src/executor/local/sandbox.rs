//! The runner's sandbox: each k6 runs under bubblewrap (`bwrap`, Debian's `bubblewrap`) in
//! mount, pid, IPC and UTS namespaces of its own. It sees
//!
//! - its bundle read-only at `/perfsync/bundle` (its working directory), its own work folder
//!   (`<run>/work`, its `HOME`) writable at `/perfsync/work`, the k6 binary at `/perfsync/k6`;
//! - the system's programs and libraries read-only (`/usr`, `/bin`, `/lib*`), and from `/etc`
//!   only what name resolution and TLS need;
//! - a private `/tmp`, a fresh `/proc` (its own processes only) and a minimal `/dev`;
//!
//! and nothing else: not the state directory (other runs, the spool, the git clone, pid
//! files), not the config, not `/home`, `/root`, `/var` or `/run`. The network is shared: a
//! load test needs it.
//!
//! The runner is never root. When the daemon runs as root, bubblewrap sets the sandbox up
//! without a user namespace and `setpriv` drops to `executor.local.runnerUid`/`runnerGid`
//! (65534, `nobody`, by default) with no capabilities before k6 starts, so k6 has that uid on
//! the host as well. Otherwise (or when that cannot work here) a user namespace maps the
//! daemon's own user to 65534 inside. Which one works is found once, at start, by running
//! `k6 version` in it.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where a runner sees its bundle (its working directory).
pub const BUNDLE: &str = "/perfsync/bundle";
/// Where a runner sees its work folder (its `HOME`).
pub const WORK: &str = "/perfsync/work";
/// Where a runner finds the k6 binary.
pub const K6: &str = "/perfsync/k6";
/// Size of a runner's private `/tmp`.
const TMP_BYTES: u64 = 256 * 1024 * 1024;

/// System folders a runner sees read-only (or as the same symlinks).
const SYSTEM: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// What a runner sees of `/etc`: name resolution, TLS trust, time zone, the loader's cache.
const ETC: [&str; 18] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/etc/crypto-policies",
    "/etc/fonts",
];

/// How the runners of this host are isolated.
#[derive(Debug, Clone, PartialEq)]
pub enum Sandbox {
    Bubblewrap(Bwrap),
    /// No sandbox works here; runs go unsandboxed (unless `executor.local.requireSandbox`).
    Off {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bwrap {
    pub bwrap: PathBuf,
    /// The k6 binary itself (a launcher script such as a pyenv shim resolved to what it runs).
    pub k6: PathBuf,
    pub user: RunnerUser,
}

/// Who a sandboxed k6 is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerUser {
    /// The daemon is root: `setpriv` drops to `uid`/`gid`, no capabilities, before k6 starts.
    Dropped {
        setpriv: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// A user namespace: the daemon's own user on the host, 65534 inside.
    Namespace,
}

impl Sandbox {
    pub fn is_on(&self) -> bool {
        matches!(self, Sandbox::Bubblewrap(_))
    }

    /// What `/readyz` says about it.
    pub fn status(&self) -> serde_json::Value {
        match self {
            Sandbox::Bubblewrap(b) => serde_json::json!({
                "enabled": true,
                "kind": "bubblewrap",
                "runnerUser": match &b.user {
                    RunnerUser::Dropped { uid, gid, .. } => format!("uid {uid}, gid {gid}"),
                    RunnerUser::Namespace => "the daemon's user, in a user namespace".to_string(),
                },
            }),
            Sandbox::Off { why } => serde_json::json!({
                "enabled": false,
                "warning": warning(why),
            }),
        }
    }

    /// Finds the sandbox that works on this host for the k6 binary `k6`, trying it in
    /// `scratch` (a folder on the same file system as the runs; removed afterwards).
    pub fn detect(k6: &Path, scratch: &Path, uid: u32, gid: u32) -> Sandbox {
        let Some(bwrap) = find_on_path("bwrap") else {
            return Sandbox::Off {
                why: "bubblewrap (`bwrap`) is not installed".into(),
            };
        };
        let mut tries = Vec::new();
        // SAFETY: geteuid only reads this process's credentials.
        if unsafe { libc::geteuid() } == 0 {
            match find_on_path("setpriv").filter(|p| p.starts_with("/usr") || p.starts_with("/bin")) {
                Some(setpriv) => tries.push(RunnerUser::Dropped { setpriv, uid, gid }),
                None => tracing::warn!("setpriv (util-linux) not found under /usr: sandboxed runners keep the daemon's user id (in a user namespace)"),
            }
        }
        tries.push(RunnerUser::Namespace);
        let mut failures = Vec::new();
        for user in tries {
            let b = Bwrap {
                bwrap: bwrap.clone(),
                k6: k6.to_path_buf(),
                user,
            };
            match b.probe(scratch) {
                Ok(()) => return Sandbox::Bubblewrap(b),
                Err(e) => failures.push(e),
            }
        }
        Sandbox::Off {
            why: format!("bubblewrap cannot run k6 here: {}", failures.join("; ")),
        }
    }
}

/// The warning logged at start and shown on `/readyz` when runners are not sandboxed.
pub fn warning(why: &str) -> String {
    format!("runners are NOT sandboxed ({why}): a test's script can read any file the daemon's user can read; install bubblewrap (`apt-get install bubblewrap`) and restart")
}

impl Bwrap {
    /// bubblewrap's command line for a runner of the run whose bundle and work folder are
    /// `bundle` and `work` (absolute paths); k6's own arguments follow it.
    pub fn command(&self, bundle: &Path, work: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![self.bwrap.clone().into()];
        let mut push = |args: &[&str]| a.extend(args.iter().map(OsString::from));
        push(&[
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "perfsync-runner",
        ]);
        match &self.user {
            RunnerUser::Dropped { .. } => push(&[
                "--cap-drop",
                "ALL",
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
            ]),
            RunnerUser::Namespace => push(&[
                "--unshare-user",
                "--uid",
                "65534",
                "--gid",
                "65534",
                "--disable-userns",
            ]),
        }
        for dir in SYSTEM {
            let path = Path::new(dir);
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        a.extend([
                            "--symlink".into(),
                            target.into_os_string(),
                            OsString::from(dir),
                        ]);
                    }
                }
                Ok(m) if m.is_dir() => a.extend(["--ro-bind", dir, dir].map(OsString::from)),
                _ => {}
            }
        }
        for file in ETC {
            a.extend(["--ro-bind-try", file, file].map(OsString::from));
        }
        let tmp = TMP_BYTES.to_string();
        a.extend(
            [
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--perms",
                "01777",
                "--size",
                &tmp,
                "--tmpfs",
                "/tmp",
                "--perms",
                "0755",
                "--dir",
                "/perfsync",
            ]
            .map(OsString::from),
        );
        a.extend([
            "--ro-bind".into(),
            bundle.as_os_str().to_owned(),
            BUNDLE.into(),
            "--bind".into(),
            work.as_os_str().to_owned(),
            WORK.into(),
            "--ro-bind".into(),
            self.k6.as_os_str().to_owned(),
            K6.into(),
            "--chdir".into(),
            BUNDLE.into(),
            "--".into(),
        ]);
        if let RunnerUser::Dropped { setpriv, uid, gid } = &self.user {
            a.push(setpriv.clone().into());
            a.extend(
                [
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--inh-caps=-all".into(),
                    "--".into(),
                ]
                .map(OsString::from),
            );
        }
        a.push(K6.into());
        a
    }

    /// Prepares a run's work folder for the runner's user.
    pub fn prepare_work(&self, work: &Path) -> std::io::Result<()> {
        if let RunnerUser::Dropped { uid, gid, .. } = &self.user {
            std::os::unix::fs::chown(work, Some(*uid), Some(*gid))?;
        }
        Ok(())
    }

    /// Runs `k6 version` in the sandbox, as a runner would run k6.
    fn probe(&self, scratch: &Path) -> Result<(), String> {
        let bundle = scratch.join("bundle");
        let work = scratch.join("work");
        let made = std::fs::create_dir_all(&bundle)
            .and_then(|()| std::fs::create_dir_all(&work))
            .and_then(|()| self.prepare_work(&work));
        let result = match made {
            Err(e) => Err(format!("{}: {e}", scratch.display())),
            Ok(()) => {
                let argv = self.command(&bundle, &work);
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]).arg("version");
                run_briefly(cmd, Duration::from_secs(30)).and_then(|(ok, out)| {
                    if ok && out.contains("k6") {
                        Ok(())
                    } else {
                        Err(last_line(&out))
                    }
                })
            }
        };
        let _ = std::fs::remove_dir_all(scratch);
        result.map_err(|e| {
            let how = match &self.user {
                RunnerUser::Dropped { uid, .. } => format!("as uid {uid}"),
                RunnerUser::Namespace => "in a user namespace".to_string(),
            };
            format!("{how}: {e}")
        })
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .chars()
        .take(300)
        .collect()
}

/// Runs `cmd` with an environment of `PATH` only, waiting at most `limit`; its exit status
/// and its output (stdout, then stderr).
fn run_briefly(mut cmd: Command, limit: Duration) -> Result<(bool, String), String> {
    cmd.env_clear()
        .env("PATH", super::runner_env::RUNNER_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", limit.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    Ok((status.success(), out))
}

/// `name` on the daemon's `PATH` (or `name` itself when it holds a `/`), as an absolute path.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return std::fs::canonicalize(name).ok();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .and_then(|p| std::fs::canonicalize(p).ok())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// The k6 binary `k6` (`executor.k6Binary`, a name on `PATH` or a path) stands for. A launcher
/// script (a pyenv or asdf shim) is started once, reading a script from its standard input,
/// to see which binary named like it the script ends up running; it never gets a script.
pub fn resolve_k6(k6: &str) -> Result<PathBuf, String> {
    let path = find_on_path(k6).ok_or_else(|| format!("k6 binary `{k6}` not found on PATH"))?;
    if is_elf(&path) {
        return Ok(path);
    }
    let name = path
        .file_name()
        .map(OsString::from)
        .ok_or_else(|| format!("{}: not a file", path.display()))?;
    let mut child = Command::new(&path)
        .args(["run", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let exe = format!("/proc/{}/exe", child.id());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut found = None;
    while Instant::now() < deadline {
        if let Ok(target) = std::fs::read_link(&exe) {
            if target.file_name() == Some(name.as_os_str()) && is_elf(&target) {
                found = Some(target);
                break;
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Our own child, not yet reaped: its pid cannot belong to anyone else.
    let _ = child.kill();
    let _ = child.wait();
    found.ok_or_else(|| {
        format!(
            "{} is a script and the k6 binary it runs was not found; set executor.k6Binary to the binary itself",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_sees_only_its_bundle_work_folder_k6_and_the_system() {
        let b = Bwrap {
            bwrap: "/usr/bin/bwrap".into(),
            k6: "/opt/k6/k6".into(),
            user: RunnerUser::Dropped {
                setpriv: "/usr/bin/setpriv".into(),
                uid: 65534,
                gid: 65534,
            },
        };
        let argv: Vec<String> = b
            .command(
                Path::new("/state/runs/r/bundle"),
                Path::new("/state/runs/r/work"),
            )
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = argv.join(" ");
        assert!(
            text.contains("--ro-bind /state/runs/r/bundle /perfsync/bundle"),
            "{text}"
        );
        assert!(
            text.contains("--bind /state/runs/r/work /perfsync/work"),
            "{text}"
        );
        assert!(text.contains("--ro-bind /opt/k6/k6 /perfsync/k6"), "{text}");
        assert!(text.contains("--tmpfs /tmp"), "{text}");
        assert!(text.ends_with("-- /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- /perfsync/k6"), "{text}");
        // Nothing else of the state directory, and no writable bind but the work folder.
        let binds: Vec<&[String]> = argv
            .windows(3)
            .filter(|w| w[0] == "--bind" || w[0] == "--bind-try")
            .collect();
        assert_eq!(binds.len(), 1, "{binds:?}");
        assert_eq!(argv.iter().filter(|a| a.starts_with("/state")).count(), 2);
        assert!(
            !text.contains("/etc/ssl/private") && !text.contains(" /etc /etc"),
            "{text}"
        );
    }

    #[test]
    fn a_script_in_front_of_k6_is_resolved_to_the_binary_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        // A binary named k6 (here: a copy of `sleep`) behind a shim named k6.
        let sleep = find_on_path("sleep").expect("sleep");
        std::fs::copy(&sleep, bin.join("k6")).expect("copy");
        let shim = dir.path().join("k6");
        std::fs::write(
            &shim,
            format!("#!/bin/sh\nexec {} 30\n", bin.join("k6").display()),
        )
        .expect("shim");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let found = resolve_k6(&shim.display().to_string()).expect("resolved");
        assert_eq!(
            found,
            std::fs::canonicalize(bin.join("k6")).expect("canonical")
        );
        assert_eq!(resolve_k6(&found.display().to_string()), Ok(found.clone()));
        assert!(resolve_k6("no-such-k6-binary").is_err());
    }
}
