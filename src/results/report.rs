//! What an executor hands over when a run ends: per-runner exit codes and end-of-test
//! summaries, and how the run ended. Both executors (kubernetes, local) produce this.

use crate::spec::render::SUMMARY_MARKER;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunnerReport {
    /// 1-based, as the k6-operator numbers its runner jobs.
    pub index: u32,
    /// `None` when the runner never exited on its own (killed, evicted, never started).
    pub exit_code: Option<i32>,
    /// A platform reason (`OOMKilled`, `Evicted`, `DeadlineExceeded`) when there is one.
    pub reason: Option<String>,
    /// k6's end-of-test summary (the `handleSummary` data), from the runner's output.
    pub summary: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ending {
    /// Every runner exited; their exit codes say how it went.
    Finished,
    /// Stopped by perfsync at the spec's timeout.
    Timeout,
    /// Stopped on request (API abort, test deleted, newer revision).
    Aborted(String),
    /// The platform failed the run (operator `error` stage, no progress, runner lost).
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub run_id: String,
    pub test: String,
    pub revision: String,
    pub commit: Option<String>,
    pub author: Option<String>,
    pub trigger: super::summary::RunTrigger,
    pub executor: String,
    pub parallelism: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub ending: Ending,
    pub runners: Vec<RunnerReport>,
}

/// The last summary line in a runner's output (stdout or pod log), parsed.
pub fn summary_from_output(output: &str) -> Option<serde_json::Value> {
    output
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix(SUMMARY_MARKER))
        .and_then(|json| serde_json::from_str(json).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_marked_line() {
        let out = "noise\nPERFSYNC_SUMMARY {\"a\":1}\nmore\nPERFSYNC_SUMMARY {\"a\":2}\ntrailing\n";
        assert_eq!(summary_from_output(out), Some(serde_json::json!({"a": 2})));
        assert_eq!(summary_from_output("PERFSYNC_SUMMARY {broken"), None);
        assert_eq!(summary_from_output(""), None);
    }
}
