//! What both executors share: how a run is started, what is kept about it so another process
//! can adopt it, and what its runners came to.

use crate::results::report::{Ending, RunnerReport};
use crate::spec::catalog::ResolvedTest;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How much of the end of a runner's log the run page reads: a log can be as long as
/// `executor.local.maxOutputBytes`, and only its tail is shown.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// What is kept about a run (a file in its folder; for the kubernetes executor also an
/// annotation on its TestRun), so another process can adopt it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub run_id: String,
    pub test: String,
    pub revision: String,
    pub parallelism: u32,
    pub start: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// Per runner: the process group of its wrapping shell (local executor only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgids: Vec<i32>,
    /// Per runner: when its wrapping shell (the group's leader) started, in clock ticks after
    /// boot (`/proc/<pid>/stat`), so a process that later gets the same id is never taken
    /// for it (local executor only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgid_starts: Vec<u64>,
    /// The spec the run started with, so an adopting process judges it the same way.
    pub spec: crate::spec::model::PerfTestSpec,
    pub trigger: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    /// What k6 executes ([`crate::spec::bundle::Bundle::content_digest`]): part of the run's
    /// regression series. Absent in folders written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<String>,
}

impl Meta {
    pub fn new(req: &StartRun, start: DateTime<Utc>) -> Meta {
        let rt = req.test;
        Meta {
            run_id: req.run_id.to_string(),
            test: rt.test.metadata.name.clone(),
            revision: rt.revision.clone(),
            parallelism: rt.test.spec.parallelism().max(1),
            start,
            deadline: start
                + chrono::Duration::from_std(req.timeout).unwrap_or(chrono::Duration::hours(1)),
            pgids: Vec::new(),
            pgid_starts: Vec::new(),
            spec: rt.test.spec.clone(),
            trigger: req.trigger.to_string(),
            commit: req.commit.map(str::to_string),
            author: req.author.map(str::to_string),
            content_digest: Some(rt.bundle.content_digest()),
        }
    }
}

/// What a run is started with.
pub struct StartRun<'a> {
    pub run_id: &'a str,
    pub test: &'a ResolvedTest,
    pub timeout: Duration,
    pub trigger: &'a str,
    pub commit: Option<&'a str>,
    pub author: Option<&'a str>,
}

/// A run's folder under the state directory: its meta, its runners' logs.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub meta: Meta,
}

/// What the runners came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collected {
    pub runners: Vec<RunnerReport>,
    pub ending: Ending,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DirError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

fn io(path: &Path, source: std::io::Error) -> DirError {
    DirError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file whole or not at all (a crash leaves the old one or none).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DirError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

impl RunDir {
    pub fn create(path: PathBuf, meta: Meta) -> Result<RunDir, DirError> {
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        let dir = RunDir { path, meta };
        dir.save_meta()?;
        Ok(dir)
    }

    pub fn save_meta(&self) -> Result<(), DirError> {
        let bytes = serde_json::to_vec_pretty(&self.meta).unwrap_or_default();
        write_atomic(&self.path.join("meta.json"), &bytes)
    }

    pub fn load(path: &Path) -> Option<RunDir> {
        let bytes = std::fs::read(path.join("meta.json")).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        Some(RunDir {
            path: path.to_path_buf(),
            meta,
        })
    }

    pub fn is_recorded(&self) -> bool {
        self.path.join("recorded").exists()
    }

    /// Marks the run as recorded; it is then never adopted again.
    pub fn mark_recorded(&self) {
        let _ = std::fs::write(self.path.join("recorded"), b"");
    }

    /// Runs under `root` not yet recorded, oldest first.
    pub fn unrecorded(root: &Path) -> Vec<RunDir> {
        let Ok(entries) = std::fs::read_dir(root) else {
            return Vec::new();
        };
        let mut out: Vec<RunDir> = entries
            .flatten()
            .filter_map(|e| RunDir::load(&e.path()))
            .filter(|d| !d.is_recorded())
            .collect();
        out.sort_by_key(|d| d.meta.start);
        out
    }

    /// The last lines of each runner's log (`runner-<i>.log`), for the run page; only the
    /// last [`LOG_TAIL_BYTES`] of each log are read.
    pub fn log_tail(root: &Path, run_id: &str, lines: usize) -> Vec<(u32, Vec<String>)> {
        let dir = root.join(run_id);
        (1..=64)
            .map_while(|idx| {
                let text = tail(&dir.join(format!("runner-{idx}.log")), LOG_TAIL_BYTES).ok()?;
                let all: Vec<String> = text.lines().map(str::to_string).collect();
                Some((idx, all[all.len().saturating_sub(lines)..].to_vec()))
            })
            .collect()
    }
}

/// The end of the file at `path`: at most its last `max_bytes`, read by seeking from the end
/// (a log of any size costs no more than that). When the file is longer, the first line
/// (cut by the seek) is dropped; bytes that are not UTF-8 are replaced.
pub fn tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.take(max_bytes).read_to_end(&mut bytes)?;
    if start > 0 {
        if let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            bytes.drain(..=newline);
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_only_the_end_and_drops_the_cut_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runner-1.log");
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, &text).expect("write");
        let end = tail(&path, 100).expect("tail");
        assert!(end.len() <= 100, "{}", end.len());
        assert!(
            end.starts_with("line ") && end.ends_with("line 99999\n"),
            "{end:?}"
        );
        assert!(text.ends_with(&end));
        // A short file comes whole, and a missing one is an error.
        std::fs::write(&path, "a\nb").expect("write");
        assert_eq!(tail(&path, 100).expect("tail"), "a\nb");
        assert!(tail(&dir.path().join("none"), 100).is_err());
    }

    #[test]
    fn log_tail_keeps_the_last_lines_of_a_huge_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("r-1");
        std::fs::create_dir_all(&run).expect("mkdir");
        let big = "x".repeat(1024) + "\n";
        let mut text = big.repeat(4096); // 4 MiB
        text.push_str("the end\n");
        std::fs::write(run.join("runner-1.log"), text).expect("write");
        let tails = RunDir::log_tail(dir.path(), "r-1", 2);
        assert_eq!(tails.len(), 1);
        assert_eq!(tails[0].1.last().map(String::as_str), Some("the end"));
        assert_eq!(tails[0].1.len(), 2);
    }
}
