//! The local executor: each run as `parallelism` k6 processes on this host, each with its
//! execution segment, in a folder of its own under the state directory.
//!
//! Every runner is wrapped in a small `sh` that sends k6's output to files and writes k6's
//! exit code to a file when it ends. Nothing depends on the daemon staying alive: a daemon
//! that is restarted (or killed) finds the folder again and adopts the run where it stands.

use super::run::{Collected, Meta, RunDir, StartRun};
use super::ExecutorError;
use crate::results::report::{summary_from_output, Ending, RunnerReport};
use crate::spec::catalog::ResolvedTest;
use crate::spec::render::{entry_script, execution_segments, k6_args, ENTRY_FILE};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

pub struct LocalExecutor {
    pub k6: String,
    /// `<stateDir>/runs`: one folder per run.
    pub root: PathBuf,
    /// Extra environment for every runner (Prometheus remote write).
    pub extra_env: Vec<(String, String)>,
    /// How long runners get to finish after SIGTERM before SIGKILL.
    pub grace: Duration,
}

const WRAPPER: &str = r#""$0" "$@" > "$PERFSYNC_OUT" 2> "$PERFSYNC_ERR" & k=$!; echo $k > "$PERFSYNC_PID"; trap "" TERM INT HUP; wait $k; echo $? > "$PERFSYNC_EXIT.tmp" && mv "$PERFSYNC_EXIT.tmp" "$PERFSYNC_EXIT""#;

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

/// The secret values of `secretEnv` for a local run: the daemon's own environment, under the
/// variable the test names (there is no Kubernetes Secret on this host).
fn secret_env(rt: &ResolvedTest) -> Vec<(String, String)> {
    rt.test
        .spec
        .secret_env
        .iter()
        .filter_map(|s| std::env::var(&s.name).ok().map(|v| (s.name.clone(), v)))
        .collect()
}

impl LocalExecutor {
    fn dir(&self, run_id: &str) -> PathBuf {
        self.root.join(run_id)
    }

    /// Writes the bundle and starts the runners. Idempotent on the run id: a run whose folder
    /// already holds started runners is returned as it is, never started twice.
    pub fn start(&self, req: &StartRun) -> Result<RunDir, ExecutorError> {
        let (run_id, rt) = (req.run_id, req.test);
        let dir = self.dir(run_id);
        if let Some(existing) = RunDir::load(&dir) {
            return Ok(existing);
        }
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).map_err(|e| io(&bundle, e))?;
        for (path, bytes) in &rt.bundle.files {
            // Bundle paths were checked to stay inside the bundle; `join` keeps them there.
            let target = bundle.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&target, bytes).map_err(|e| io(&target, e))?;
        }
        let entry = bundle.join(ENTRY_FILE);
        std::fs::write(
            &entry,
            entry_script(&format!("./{}", rt.bundle.entry), &rt.test.spec.thresholds),
        )
        .map_err(|e| io(&entry, e))?;
        let mut meta = Meta::new(req, Utc::now());
        let n = meta.parallelism;
        let segments = execution_segments(n);
        let mut env: Vec<(String, String)> = rt
            .test
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(secret_env(rt));
        env.extend(self.extra_env.iter().cloned());
        // The folder is claimed before any runner starts, so a crash in between leaves a run
        // that is adopted (its runners found lost) rather than one started twice.
        let mut run = RunDir::create(dir.clone(), meta.clone()).map_err(dir_error)?;
        for (i, (segment, sequence)) in (0..n).zip(&segments) {
            let idx = i + 1;
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(WRAPPER).arg(&self.k6).args([
                "run",
                "--quiet",
                "--no-usage-report",
                "--no-color",
            ]);
            cmd.args(k6_args(rt, run_id));
            cmd.args(["--tag", &format!("instance_id={idx}")]);
            if self
                .extra_env
                .iter()
                .any(|(k, _)| k == "K6_PROMETHEUS_RW_SERVER_URL")
            {
                cmd.args(["-o", "experimental-prometheus-rw"]);
            }
            if n > 1 {
                cmd.args(["--execution-segment", segment]);
                cmd.args(["--execution-segment-sequence", sequence]);
            }
            cmd.arg(ENTRY_FILE);
            cmd.current_dir(&bundle)
                .env("PERFSYNC_OUT", dir.join(format!("runner-{idx}.out")))
                .env("PERFSYNC_ERR", dir.join(format!("runner-{idx}.log")))
                .env("PERFSYNC_PID", dir.join(format!("runner-{idx}.pid")))
                .env("PERFSYNC_EXIT", dir.join(format!("runner-{idx}.exit")))
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // Its own process group: stopping a run signals every process of it, and the run
            // survives the daemon.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd.spawn().map_err(|e| ExecutorError::Spawn {
                run: run_id.to_string(),
                message: format!("{}: {e}", self.k6),
            })?;
            meta.pgids.push(child.id() as i32);
            // The wrapper is reaped by a thread so it never lingers as a zombie.
            std::thread::spawn(move || {
                let mut child = child;
                let _ = child.wait();
            });
        }
        run.meta = meta;
        run.save_meta().map_err(dir_error)?;
        Ok(run)
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

    /// A runner that looks like it will never write an exit code: it never started (no pid a
    /// few seconds after the run began), or its k6 is gone and no exit code was recorded.
    fn looks_lost(dir: &RunDir, idx: u32) -> bool {
        let pid_file = dir.path.join(format!("runner-{idx}.pid"));
        let age = Utc::now() - dir.meta.start;
        match std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            None => age > chrono::Duration::seconds(10),
            Some(pid) => {
                // SAFETY: signal 0 only checks that the process exists.
                let alive = unsafe { libc::kill(pid, 0) } == 0;
                !alive
                    && std::fs::metadata(&pid_file)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(5))
            }
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

    fn signal(dir: &RunDir, sig: i32) {
        for idx in 1..=dir.meta.parallelism {
            if sig == libc::SIGKILL {
                if let Some(pgid) = dir.meta.pgids.get(idx as usize - 1) {
                    // SAFETY: kill(2) with a negative pid signals the run's own process group.
                    unsafe { libc::kill(-pgid, sig) };
                }
            } else if let Some(pid) =
                std::fs::read_to_string(dir.path.join(format!("runner-{idx}.pid")))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
            {
                // SAFETY: signals k6 itself (the shell ignores TERM and records k6's exit code).
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// Stops a run: SIGTERM (k6 stops gracefully and prints its summary), SIGKILL after the grace.
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
                if let Some(t) = std::fs::metadata(&exit_path)
                    .and_then(|m| m.modified())
                    .ok()
                {
                    end = end.max(DateTime::<Utc>::from(t));
                }
                let out = std::fs::read_to_string(dir.path.join(format!("runner-{idx}.out")))
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
