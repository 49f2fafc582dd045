//! `results/<test>/acknowledged.yaml`: regressions a team accepted, reviewed like any change
//! in a merge request. Each sync imports the entries of the files at its head; a run named in
//! one becomes the start of its series' baseline, as an acknowledgement through the API does.
//!
//! ```yaml
//! acknowledged:
//!   - run: checkout-3f9c2a1b7e-4
//!     reason: the new fraud check costs 20 ms, accepted in PLAT-123
//! ```

use crate::record::regressions::{self, Acknowledged};
use crate::source::git::GitSource;
use serde::Deserialize;
use sqlx::PgPool;
use tracing::{info, warn};

pub const FILE: &str = "acknowledged.yaml";
/// An acknowledgement file larger than this is refused (it lists run ids and short reasons).
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckFile {
    acknowledged: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub run: String,
    #[serde(default)]
    pub reason: String,
}

/// The entries of one file, or an error naming the file, the line and what to do.
pub fn parse(path: &str, text: &str) -> Result<Vec<Entry>, String> {
    serde_yaml::from_str::<AckFile>(text)
        .map(|f| f.acknowledged)
        .map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| "1:1".into());
            format!("{path}:{at}: {e}; the file is `acknowledged:` with a list of `{{run: <run id>, reason: <text>}}`")
        })
}

/// Imports `<results_dir>/<test>/acknowledged.yaml` of every test folder at `head`, each
/// looked up by path: the results folder, which grows by a file per run, is read one level
/// deep, never walked. Best effort: a bad file is reported (file and line) and skipped; the
/// sync goes on.
pub async fn import(source: &GitSource, pool: &PgPool, head: &str, results_dir: &str) {
    let listed = {
        let (src, head, dir) = (source.clone(), head.to_string(), results_dir.to_string());
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for test in src.dirs_at(&head, &dir)? {
                let path = format!("{dir}/{test}/{FILE}");
                if let Some(oid) = src.file_at(&head, &path)? {
                    out.push((path, test, src.read_blob(&oid, MAX_BYTES)?));
                }
            }
            Ok::<_, crate::source::SourceError>(out)
        })
        .await
    };
    let files = match listed {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return warn!(error = %e, "acknowledgement files not read"),
        Err(e) => return warn!(error = %e, "acknowledgement files not read"),
    };
    let short = head.get(..10).unwrap_or(head);
    for (path, test, content) in files {
        let Some(bytes) = content else {
            warn!(file = %path, "over {MAX_BYTES} bytes: not read; keep it to run ids and short reasons");
            continue;
        };
        let entries = match parse(&path, &String::from_utf8_lossy(&bytes)) {
            Ok(e) => e,
            Err(e) => {
                warn!("{e}");
                continue;
            }
        };
        let actor = format!("repository ({path} at {short})");
        for entry in entries {
            match regressions::acknowledge(
                pool,
                &entry.run,
                Some(&test),
                &actor,
                &entry.reason,
                "repository",
            )
            .await
            {
                Ok(Acknowledged::New) => {
                    info!(run = %entry.run, file = %path, "regression acknowledged")
                }
                Ok(Acknowledged::Already) => {}
                Ok(Acknowledged::UnknownRun) => warn!(
                    file = %path, run = %entry.run,
                    "names no recorded run of test `{test}`: check the run id (perfsync runs list --test {test})"
                ),
                Err(e) => warn!(error = %e, file = %path, "acknowledgement not stored"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_lists_runs_and_a_broken_one_names_file_and_line() {
        let ok = parse(
            "results/a/acknowledged.yaml",
            "acknowledged:\n  - run: a-1\n    reason: accepted\n  - run: a-2\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].reason, "");
        let e = parse(
            "results/a/acknowledged.yaml",
            "acknowledged:\n  - run: a-1\n    by: alice\n",
        )
        .unwrap_err();
        assert!(e.starts_with("results/a/acknowledged.yaml:3:"), "{e}");
        assert!(e.contains("by"), "{e}");
    }
}
