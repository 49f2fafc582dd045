//! The local executor: each run as `parallelism` k6 processes on this host, each with its
//! execution segment, in a folder of its own under the state directory.
//!
//! Every runner is wrapped in a small `sh` that sends k6's output to files and writes k6's
//! exit code to a file when it ends. Nothing depends on the daemon staying alive: a daemon
//! that is restarted (or killed) finds the folder again and adopts the run where it stands.
//!
//! A runner gets nothing of the daemon: its environment is built from nothing
//! ([`runner_env`]), it runs sandboxed ([`sandbox`]: its bundle read-only, its own work
//! folder, no state directory, no config), k6's REST API is off (`--address ''`), its output
//! files are capped (`executor.local.maxOutputBytes`), and only its own process group is ever
//! signalled ([`procs`]).

mod procs;
pub mod runner_env;
pub mod sandbox;

pub use sandbox::Sandbox;

use super::run::{Collected, Meta, RunDir, StartRun};
use super::ExecutorError;
use crate::config::LocalExecutorConfig;
use crate::results::report::{summary_from_output, Ending, RunnerReport};
use crate::spec::render::{entry_script, execution_segments, k6_args, ENTRY_FILE};
use chrono::{DateTime, Utc};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

pub struct LocalExecutor {
    /// `executor.k6Binary` as configured.
    pub k6: String,
    /// What runners start: `k6` resolved to the binary itself (see [`sandbox::resolve_k6`]).
    pub binary: PathBuf,
    /// `<stateDir>/runs`: one folder per run.
    pub root: PathBuf,
    /// Extra environment for every runner (Prometheus remote write).
    pub extra_env: Vec<(String, String)>,
    /// How long runners get to finish after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Variables of the daemon's environment a test's `secretEnv` may name.
    pub secret_env: Vec<String>,
    /// The most bytes a runner's output or log file may hold.
    pub max_output_bytes: u64,
    /// Refuse runs when [`LocalExecutor::sandbox`] is off.
    pub require_sandbox: bool,
    /// How runners are isolated, found when the executor is made.
    pub sandbox: Sandbox,
}

/// Why a local run does not start. Never holds a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{why}")]
    Refused { run: String, why: String },
    #[error("secretEnv `{name}` is listed in executor.local.secretEnv, but the daemon's environment has no value for it")]
    MissingSecret { run: String, name: String },
    #[error("no sandbox works on this host and executor.local.requireSandbox is set: {why}")]
    NoSandbox { run: String, why: String },
}

impl From<LocalError> for ExecutorError {
    fn from(e: LocalError) -> ExecutorError {
        let run = match &e {
            LocalError::Refused { run, .. }
            | LocalError::MissingSecret { run, .. }
            | LocalError::NoSandbox { run, .. } => run.clone(),
        };
        ExecutorError::Spawn {
            run,
            message: e.to_string(),
        }
    }
}

/// The line added to a runner's output or log file that reached the size cap.
pub const DROPPED: &str =
    "[perfsync: output past executor.local.maxOutputBytes was dropped from here on]";

/// The runner's wrapper: `$1`–`$4` are perfsync's files (output, log, pid, exit code: never
/// the environment, which holds the test's values), the rest is the command. It ignores the
/// signals a stop sends to the whole group (k6 handles them), writes the pid of the command,
/// and k6's exit code once it ends. It exports nothing of its own (no `PWD`): k6's `__ENV` is
/// the runner's environment as [`runner_env`] built it.
const WRAPPER: &str = r#"out=$1 err=$2 pid=$3 exit=$4; shift 4
unset PWD OLDPWD
trap '' TERM INT HUP XFSZ
"$@" > "$out" 2> "$err" & k=$!
echo $k > "$pid"
wait $k; echo $? > "$exit.tmp" && mv "$exit.tmp" "$exit""#;

fn dir_error(e: super::run::DirError) -> ExecutorError {
    ExecutorError::Io {
        path: e.path,
        source: e.source,
    }
}

fn io(path: &Path, source: std::io::Error) -> ExecutorError {
    ExecutorError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` readable by anyone (a runner may have another uid than the
/// daemon), creating its folders likewise.
fn write_readable(path: &Path, bytes: &[u8]) -> Result<(), ExecutorError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|e| io(path, e))
}

/// Appends [`DROPPED`] to a runner file that reached `cap` (its writer cannot go past it).
fn mark_dropped(path: &Path, cap: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == cap) {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("\n{DROPPED}\n").as_bytes()));
        if let Err(e) = appended {
            tracing::warn!(path = %path.display(), error = %e, "cannot mark a capped runner file");
        }
    }
}

impl LocalExecutor {
    /// An executor for the k6 binary `k6` with runs under `root` and `executor.local`'s
    /// defaults: no secrets, 16 MiB per output file, the sandbox found on this host.
    pub fn new(k6: impl Into<String>, root: PathBuf) -> LocalExecutor {
        LocalExecutor::with_settings(k6, root, Vec::new(), &LocalExecutorConfig::default())
    }

    /// An executor with `executor.local`'s settings. Finds the k6 binary and the sandbox (by
    /// trying it) now, and says in the log when runners will not be sandboxed.
    pub fn with_settings(
        k6: impl Into<String>,
        root: PathBuf,
        extra_env: Vec<(String, String)>,
        local: &LocalExecutorConfig,
    ) -> LocalExecutor {
        let k6 = k6.into();
        let resolved = sandbox::resolve_k6(&k6);
        let binary = match &resolved {
            Ok(path) => path.clone(),
            Err(_) => sandbox::find_on_path(&k6).unwrap_or_else(|| PathBuf::from(&k6)),
        };
        let sandbox = match &resolved {
            Err(why) => Sandbox::Off { why: why.clone() },
            Ok(path) => {
                let scratch = root.join(format!(".sandbox-probe-{}", std::process::id()));
                Sandbox::detect(path, &scratch, local.runner_uid, local.runner_gid)
            }
        };
        match &sandbox {
            Sandbox::Bubblewrap(_) => {
                tracing::info!(sandbox = %sandbox.status(), k6 = %binary.display(), "local runners are sandboxed")
            }
            Sandbox::Off { why } => {
                tracing::warn!(k6 = %binary.display(), "{}", sandbox::warning(why))
            }
        }
        LocalExecutor {
            k6,
            binary,
            root,
            extra_env,
            grace: Duration::from_secs(10),
            secret_env: local.secret_env.clone(),
            max_output_bytes: local.max_output_bytes,
            require_sandbox: local.require_sandbox,
            sandbox,
        }
    }

    fn dir(&self, run_id: &str) -> PathBuf {
        self.root.join(run_id)
    }

    /// Writes the bundle and starts the runners. Idempotent on the run id: a run whose folder
    /// already holds started runners is returned as it is, never started twice. A test whose
    /// environment names something a test may not set, or a secret the operator did not list,
    /// starts nothing.
    pub fn start(&self, req: &StartRun) -> Result<RunDir, ExecutorError> {
        let (run_id, rt) = (req.run_id, req.test);
        let dir = self.dir(run_id);
        if let Some(existing) = RunDir::load(&dir) {
            return Ok(existing);
        }
        let bwrap = match &self.sandbox {
            Sandbox::Bubblewrap(b) => Some(b),
            Sandbox::Off { why } if self.require_sandbox => {
                return Err(LocalError::NoSandbox {
                    run: run_id.to_string(),
                    why: why.clone(),
                }
                .into())
            }
            Sandbox::Off { .. } => None,
        };
        // Absolute: the sandbox binds the bundle and work folder by path.
        let dir = std::path::absolute(&dir).map_err(|e| io(&dir, e))?;
        let (bundle, work) = (dir.join("bundle"), dir.join("work"));
        let (home, tmpdir) = match bwrap {
            Some(_) => (sandbox::WORK.to_string(), "/tmp".to_string()),
            None => (work.display().to_string(), work.display().to_string()),
        };
        let env = runner_env::build(
            run_id,
            &rt.test.spec,
            &self.secret_env,
            |name| std::env::var(name).ok(),
            &runner_env::Own {
                extra: &self.extra_env,
                home: &home,
                tmpdir: &tmpdir,
            },
        )?;
        for (path, bytes) in &rt.bundle.files {
            // Bundle paths were checked to stay inside the bundle; `join` keeps them there.
            write_readable(&bundle.join(path), bytes)?;
        }
        write_readable(
            &bundle.join(ENTRY_FILE),
            entry_script(&format!("./{}", rt.bundle.entry), &rt.test.spec.thresholds).as_bytes(),
        )?;
        std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
        if let Some(b) = bwrap {
            b.prepare_work(&work).map_err(|e| io(&work, e))?;
        }
        let mut meta = Meta::new(req, Utc::now());
        let n = meta.parallelism;
        let segments = execution_segments(n);
        // The folder is claimed before any runner starts, so a crash in between leaves a run
        // that is adopted (its runners found lost) rather than one started twice.
        let mut run = RunDir::create(dir.clone(), meta.clone()).map_err(dir_error)?;
        for (i, (segment, sequence)) in (0..n).zip(&segments) {
            let idx = i + 1;
            let file = |ext: &str| dir.join(format!("runner-{idx}.{ext}"));
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(WRAPPER).arg("perfsync-runner").args([
                file("out"),
                file("log"),
                file("pid"),
                file("exit"),
            ]);
            match bwrap {
                Some(b) => cmd.args(b.command(&bundle, &work)),
                None => cmd.arg(&self.binary),
            };
            cmd.args(self.k6_arguments(req, idx, segment, sequence, n));
            cmd.current_dir(&bundle)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let cap = self.max_output_bytes;
            // SAFETY: between fork and exec only async-signal-safe calls: setsid(2) gives the
            // runner a session and process group of its own (stopping a run signals exactly
            // that group; the run survives the daemon; no controlling terminal), and
            // setrlimit(2) caps every file it writes at `cap` bytes.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let limit = libc::rlimit {
                        rlim_cur: cap as libc::rlim_t,
                        rlim_max: cap as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().map_err(|e| ExecutorError::Spawn {
                run: run_id.to_string(),
                message: format!("/bin/sh: {e}"),
            })?;
            let pid = child.id() as i32;
            meta.pgids.push(pid);
            meta.pgid_starts.push(procs::start_time(pid).unwrap_or(0));
            // The wrapper is reaped by a thread so it never lingers as a zombie.
            let span = tracing::info_span!("runner-reaper", run = %run_id, runner = idx);
            std::thread::spawn(move || {
                let _entered = span.enter();
                let mut child = child;
                let _ = child.wait();
            });
        }
        run.meta = meta;
        run.save_meta().map_err(dir_error)?;
        Ok(run)
    }

    /// k6's arguments for runner `idx` of `n`.
    fn k6_arguments(
        &self,
        req: &StartRun,
        idx: u32,
        segment: &str,
        sequence: &str,
        n: u32,
    ) -> Vec<OsString> {
        let mut args: Vec<String> = [
            "run",
            "--quiet",
            "--no-usage-report",
            "--no-color",
            // No REST API: one run can never pause or stop another through it.
            "--address",
            "",
            // __ENV is the runner's environment, which holds only what `runner_env` put there.
            "--include-system-env-vars=true",
        ]
        .map(String::from)
        .to_vec();
        args.extend(k6_args(req.test, req.run_id));
        args.extend(["--tag".to_string(), format!("instance_id={idx}")]);
        if self
            .extra_env
            .iter()
            .any(|(k, _)| k == "K6_PROMETHEUS_RW_SERVER_URL")
        {
            args.extend(["-o".to_string(), "experimental-prometheus-rw".to_string()]);
        }
        if n > 1 {
            args.extend(["--execution-segment".to_string(), segment.to_string()]);
            args.extend([
                "--execution-segment-sequence".to_string(),
                sequence.to_string(),
            ]);
        }
        args.push(ENTRY_FILE.to_string());
        args.into_iter().map(OsString::from).collect()
    }

    /// Runs left by an earlier process and not yet recorded.
    pub fn leftovers(&self) -> Vec<RunDir> {
        RunDir::unrecorded(&self.root)
    }

    pub fn mark_recorded(&self, dir: &RunDir) {
        dir.mark_recorded();
    }

    fn exited(dir: &RunDir, idx: u32) -> Option<i32> {
        std::fs::read_to_string(dir.path.join(format!("runner-{idx}.exit")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Runner `idx`'s process group and its leader's start time (when recorded).
    fn group(dir: &RunDir, idx: u32) -> Option<(i32, Option<u64>)> {
        let i = idx as usize - 1;
        let pgid = *dir.meta.pgids.get(i)?;
        let start = dir.meta.pgid_starts.get(i).copied().filter(|s| *s > 0);
        Some((pgid, start))
    }

    /// A runner that looks like it will never write an exit code: it never started (no
    /// process group a few seconds after the run began), or its group has no process of its
    /// own any more and no exit code was recorded.
    fn looks_lost(dir: &RunDir, idx: u32) -> bool {
        let pid_file = dir.path.join(format!("runner-{idx}.pid"));
        match Self::group(dir, idx) {
            None => Utc::now() - dir.meta.start > chrono::Duration::seconds(10),
            Some((pgid, start)) => !procs::group_alive(pgid, start, &pid_file),
        }
    }

    /// Whether every runner has ended. A runner that looks lost counts as ended only when it
    /// still does on the next poll (in `suspects`), which gives its wrapper time to write the
    /// exit code of a k6 that has just ended.
    fn all_exited(dir: &RunDir, suspects: &mut std::collections::BTreeSet<u32>) -> bool {
        let mut done = true;
        for i in 1..=dir.meta.parallelism {
            if Self::exited(dir, i).is_some() {
                continue;
            }
            if Self::looks_lost(dir, i) {
                if suspects.insert(i) {
                    done = false;
                }
            } else {
                suspects.remove(&i);
                done = false;
            }
        }
        done
    }

    /// Signals the process group of every runner still going. Only a group that still has
    /// its own processes is signalled; a pid from a pid file never is.
    fn signal(dir: &RunDir, sig: i32) {
        for idx in 1..=dir.meta.parallelism {
            if Self::exited(dir, idx).is_some() {
                continue;
            }
            if let Some((pgid, start)) = Self::group(dir, idx) {
                let pid_file = dir.path.join(format!("runner-{idx}.pid"));
                procs::signal_group(pgid, start, &pid_file, sig);
            }
        }
    }

    /// Stops a run: SIGTERM to each runner's group (the wrapper and the sandbox ignore it; k6
    /// stops gracefully and prints its summary), SIGKILL after the grace.
    async fn stop(&self, dir: &RunDir) {
        Self::signal(dir, libc::SIGTERM);
        let give_up = tokio::time::Instant::now() + self.grace;
        let mut suspects = std::collections::BTreeSet::new();
        while !Self::all_exited(dir, &mut suspects) && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !Self::all_exited(dir, &mut suspects) {
            Self::signal(dir, libc::SIGKILL);
        }
    }

    /// Waits until the runners end, the deadline passes (stopped: `timeout`) or `cancel`
    /// carries a reason (stopped: `aborted`), then collects exit codes and summaries.
    pub async fn wait(
        &self,
        dir: &RunDir,
        mut cancel: watch::Receiver<Option<String>>,
    ) -> Collected {
        let mut ending = Ending::Finished;
        let mut suspects = std::collections::BTreeSet::new();
        loop {
            if Self::all_exited(dir, &mut suspects) {
                break;
            }
            if Utc::now() >= dir.meta.deadline {
                self.stop(dir).await;
                ending = Ending::Timeout;
                break;
            }
            let requested = cancel.borrow().clone();
            if let Some(why) = requested {
                self.stop(dir).await;
                ending = Ending::Aborted(why);
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = cancel.changed() => {}
            }
        }
        let mut end = dir.meta.start;
        let runners = (1..=dir.meta.parallelism)
            .map(|idx| {
                let exit_path = dir.path.join(format!("runner-{idx}.exit"));
                if let Ok(t) = std::fs::metadata(&exit_path).and_then(|m| m.modified()) {
                    end = end.max(DateTime::<Utc>::from(t));
                }
                let out_path = dir.path.join(format!("runner-{idx}.out"));
                for path in [&out_path, &dir.path.join(format!("runner-{idx}.log"))] {
                    mark_dropped(path, self.max_output_bytes);
                }
                let out = std::fs::read(&out_path)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let code = Self::exited(dir, idx);
                RunnerReport {
                    index: idx,
                    exit_code: code,
                    reason: code
                        .is_none()
                        .then(|| "the runner was lost (killed, or never started)".to_string()),
                    summary: summary_from_output(&out),
                }
            })
            .collect();
        if end == dir.meta.start {
            end = Utc::now();
        }
        Collected {
            runners,
            ending,
            start: dir.meta.start,
            end,
        }
    }
}
