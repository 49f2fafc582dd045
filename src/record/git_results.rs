//! Results back into the repository: `results/<test>/<run>.json` (sealed with the daemon's
//! MAC, `seal.rs`) and a regenerated `results/<test>/README.md`, several runs batched into one
//! commit, pushed as a fast-forward and rebuilt on the new head when the remote moved meanwhile.

use super::seal::ResultsKey;
use crate::results::summary::RunSummary;
use crate::source::git::GitSource;
use crate::source::SourceError;
use std::collections::BTreeMap;

pub struct ResultsGit {
    pub source: GitSource,
    pub results_dir: String,
    pub author: (String, String),
    pub retries: u32,
    /// Test hook, called before each push attempt with its number.
    pub before_push: Option<Box<dyn Fn(u32) + Send + Sync>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("results push to {url} was refused {tries} times (the branch keeps moving); will retry later")]
    Contended { url: String, tries: u32 },
}

pub fn result_path(results_dir: &str, s: &RunSummary) -> String {
    format!("{results_dir}/{}/{}.json", s.run.test, s.run.id)
}

/// The summary as pretty JSON: the canonical bytes a results file's MAC covers.
pub fn result_json(s: &RunSummary) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(s).unwrap_or_default();
    v.push(b'\n');
    v
}

fn fmt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("–".to_string(), |x| format!("{x:.digits$}{suffix}"))
}

/// The README table of a test's recent runs, newest first.
pub fn readme(test: &str, runs: &[RunSummary]) -> String {
    let mut out = format!(
        "# Results of `{test}`\n\nWritten by perfsync; do not edit. Newest first.\n\n| run | status | p95 | error rate | RPS | commit | regression | ended |\n|---|---|---|---|---|---|---|---|\n"
    );
    for s in runs {
        let regression = match &s.comparison {
            Some(c) if c.regression => format!("⚠ {}", c.reasons.join("; ")),
            Some(c) => format!("no (vs {})", c.baseline_run),
            None => "–".into(),
        };
        let approx = s
            .metrics
            .get("http_req_duration")
            .is_some_and(|m| m.approximate.iter().any(|k| k == "p(95)"));
        out.push_str(&format!(
            "| [{id}]({id}.json) | {status} | {p95} | {err} | {rps} | {commit} | {regression} | {end} |\n",
            id = s.run.id,
            status = s.status.as_str(),
            p95 = fmt(s.p95_ms(), 1, if approx { " ms ≈" } else { " ms" }),
            err = fmt(s.error_rate().map(|r| r * 100.0), 2, " %"),
            rps = fmt(s.rps(), 1, ""),
            commit = s.run.commit.as_deref().map_or("–".to_string(), |c| format!("`{}`", &c[..c.len().min(10)])),
            end = s.run.end,
        ));
    }
    out
}

impl ResultsGit {
    /// Commits `batch`, each file sealed with `key` (and the README of each test, from
    /// `history`: recent runs per test, newest first, the batch included) and pushes. Returns
    /// the commit that holds them, or the current head when everything was already there.
    pub fn write(
        &self,
        key: &ResultsKey,
        batch: &[RunSummary],
        history: &BTreeMap<String, Vec<RunSummary>>,
    ) -> Result<String, WriteBackError> {
        let mut files: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|s| (result_path(&self.results_dir, s), key.seal(s)))
            .collect();
        for (test, runs) in history {
            files.push((
                format!("{}/{test}/README.md", self.results_dir),
                readme(test, runs).into_bytes(),
            ));
        }
        let tests: Vec<&str> = history.keys().map(String::as_str).collect();
        let verdicts: Vec<String> = batch
            .iter()
            .map(|s| format!("{} {}", s.run.id, s.status.as_str()))
            .collect();
        let message = format!(
            "perfsync: results of {}\n\n{}\n",
            if tests.len() == 1 {
                tests[0].to_string()
            } else {
                format!("{} tests", tests.len())
            },
            verdicts.join("\n")
        );
        for attempt in 0..=self.retries {
            let base = match self.source.fetch() {
                Ok(head) => Some(head.to_string()),
                Err(SourceError::BranchMissing { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let author = (self.author.0.as_str(), self.author.1.as_str());
            let Some(commit) =
                self.source
                    .commit_files(base.as_deref(), &files, &message, author)?
            else {
                return Ok(base.unwrap_or_default());
            };
            if let Some(hook) = &self.before_push {
                hook(attempt);
            }
            if self.source.push_commit(&commit)? {
                return Ok(commit);
            }
            tracing::info!(url = %self.source.url(), "results push refused: the branch moved; rebuilding on the new head");
        }
        Err(WriteBackError::Contended {
            url: self.source.url(),
            tries: self.retries + 1,
        })
    }
}
