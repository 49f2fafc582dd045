//! Results back into the repository: `results/<test>/<run>.json` (sealed with the daemon's
//! MAC, `seal.rs`) and a regenerated `results/<test>/README.md`, several runs batched into one
//! commit, pushed as a fast-forward and rebuilt on the new head when the remote moved meanwhile.

use super::seal::ResultsKey;
use crate::results::regression::Shift;
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

/// The README of a test: its recent runs, newest first, with the statistical gate's verdict,
/// then the shifts found in its history (change points), newest first.
pub fn readme(test: &str, runs: &[RunSummary], shifts: &[Shift]) -> String {
    let mut out = format!(
        "# Results of `{test}`\n\nWritten by perfsync; do not edit. Newest first.\n\n| run | status | p95 | error rate | RPS | commit | regression | ended |\n|---|---|---|---|---|---|---|---|\n"
    );
    for s in runs {
        let regression = match (&s.regression, &s.comparison) {
            (Some(r), _) if r.regressed => format!("⚠ regressed: {}", gate_effects(r)),
            (Some(r), _) => r.metrics.get("p95").map_or("–".into(), |g| {
                format!("{:?} (p95)", g.verdict).to_lowercase()
            }),
            (None, Some(c)) if c.regression => format!("⚠ {}", c.reasons.join("; ")),
            (None, Some(c)) => format!("no (vs {})", c.baseline_run),
            (None, None) => "–".into(),
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
    if !shifts.is_empty() {
        out.push_str("\n## Shifts in the history\n\nWhere a metric's level changed (E-divisive means with a t-test over the runs of one series), newest first.\n\n| metric | first run of the new level | commit | before | after | change | p-value |\n|---|---|---|---|---|---|---|\n");
        for c in shifts {
            out.push_str(&format!(
                "| {} | [{id}]({id}.json) | {} | {:.2} | {:.2} | {} | {:.1e} |\n",
                c.metric,
                c.commit.as_deref().map_or("–".to_string(), |x| format!(
                    "`{}`",
                    &x[..x.len().min(10)]
                )),
                c.point.mean_before,
                c.point.mean_after,
                c.point
                    .change_percent
                    .map_or("–".into(), |p| format!("{p:+.1} %")),
                c.point.p_value,
                id = c.run_id,
            ));
        }
    }
    out
}

/// `p95 +45.2 %, requestRate -30.1 %`: the regressed metrics and their effects.
fn gate_effects(r: &crate::results::regression::RegressionReport) -> String {
    r.metrics
        .iter()
        .filter(|(_, g)| g.verdict == crate::results::stats::Verdict::Regressed)
        .map(|(m, g)| match g.effect {
            Some(e) => format!("{m} {e:+.1}"),
            None => m.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        shifts: &BTreeMap<String, Vec<Shift>>,
    ) -> Result<String, WriteBackError> {
        let mut files: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|s| (result_path(&self.results_dir, s), key.seal(s)))
            .collect();
        for (test, runs) in history {
            files.push((
                format!("{}/{test}/README.md", self.results_dir),
                readme(test, runs, shifts.get(test).map_or(&[][..], Vec::as_slice)).into_bytes(),
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
