//! Series identity: which runs measure the same thing and may be compared.
//!
//! A run's series key is a digest of the parts of its revision that change what is measured.
//! Thresholds, schedules, tags and notes change what is *judged* or *when*, not the numbers,
//! so they stay out: editing a threshold must not throw away a test's history. A change to
//! anything in [`SeriesInputs`] starts a new series, so a heavier script is never a
//! "regression" of the old one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Bumped when what goes into the digest changes, so keys of two formats never meet.
const FORMAT: &[u8] = b"perfsync-series-v1\0";

/// Everything about a run that changes what its numbers mean, as plain values so the
/// caller fills it from the spec, the catalog and the config without this module knowing
/// their types.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesInputs {
    /// The test's name (`metadata.name`): series never span tests, and a renamed test
    /// starts over.
    pub test: String,
    /// Digest of what k6 executes: the entry script and every bundle file, by path and
    /// content (hex, any algorithm, as long as it is always the same one). Not the revision,
    /// which also covers thresholds and schedules.
    pub content_digest: String,
    /// The load the runners really run, after script options and `k6 inspect` are folded in.
    pub load: LoadProfile,
    /// Number of runners (`spec.parallelism`, 1 when unset): the same VUs split over more
    /// runners load the target the same but measure from more places.
    pub parallelism: u32,
    /// Runner CPU and memory, `requests` and `limits` as Kubernetes quantities
    /// (`cpu` → `500m`). Empty for the local executor. Compared as written, so the caller
    /// should spell a quantity one way (`1` and `1000m` are different keys here).
    #[serde(default)]
    pub runner_requests: BTreeMap<String, String>,
    #[serde(default)]
    pub runner_limits: BTreeMap<String, String>,
    /// The environment's target URLs (`spec.targets`), normalised by the caller. Order and
    /// repeats do not matter; they are sorted and deduplicated here.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Where runners run (`local`, `kubernetes`): the same script measures differently from
    /// the daemon's host and from pods.
    pub executor: String,
    /// The runner image (the k6 version), when the test or the policy names one; `None`
    /// when it is the executor's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_image: Option<String>,
}

/// The load profile in numbers, so `60s` and `1m` are the same load.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadProfile {
    /// VUs at the start (the constant VUs when there are no stages).
    pub vus: u32,
    /// Total duration of a constant-VU run, in milliseconds (0 when stages set it).
    pub duration_ms: u64,
    /// Ramping stages, in order.
    #[serde(default)]
    pub stages: Vec<LoadStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadStage {
    pub duration_ms: u64,
    pub target: u32,
}

/// A series key: 64 lowercase hex digits of SHA-256.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct SeriesKey(pub String);

impl SeriesKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SeriesKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Length-prefixed fields, each under its own tag, so no two different inputs can be spelt
/// the same byte string (`["a,b"]` vs `["a", "b"]`) and a new field never shifts old ones.
struct Writer(Sha256);

impl Writer {
    fn bytes(&mut self, tag: &str, v: &[u8]) {
        self.0.update((tag.len() as u64).to_le_bytes());
        self.0.update(tag.as_bytes());
        self.0.update((v.len() as u64).to_le_bytes());
        self.0.update(v);
    }
    fn str(&mut self, tag: &str, v: &str) {
        self.bytes(tag, v.as_bytes());
    }
    fn num(&mut self, tag: &str, v: u64) {
        self.bytes(tag, &v.to_le_bytes());
    }
    fn map(&mut self, tag: &str, m: &BTreeMap<String, String>) {
        self.num(tag, m.len() as u64);
        for (k, v) in m {
            self.str("k", k);
            self.str("v", v);
        }
    }
}

/// The series key of a run.
pub fn series_key(inputs: &SeriesInputs) -> SeriesKey {
    let mut w = Writer(Sha256::new());
    w.0.update(FORMAT);
    w.str("test", &inputs.test);
    w.str("content", &inputs.content_digest);
    w.num("vus", u64::from(inputs.load.vus));
    w.num("duration", inputs.load.duration_ms);
    w.num("stages", inputs.load.stages.len() as u64);
    for s in &inputs.load.stages {
        w.num("stage.duration", s.duration_ms);
        w.num("stage.target", u64::from(s.target));
    }
    w.num("parallelism", u64::from(inputs.parallelism));
    w.map("requests", &inputs.runner_requests);
    w.map("limits", &inputs.runner_limits);
    let mut targets: Vec<&str> = inputs.targets.iter().map(String::as_str).collect();
    targets.sort_unstable();
    targets.dedup();
    w.num("targets", targets.len() as u64);
    for t in targets {
        w.str("target", t);
    }
    w.str("executor", &inputs.executor);
    match &inputs.runner_image {
        Some(image) => w.str("image", image),
        None => w.num("image.none", 0),
    }
    let digest = w.0.finalize();
    SeriesKey(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a series starts in a test's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesStart {
    /// Position in the history given (0 for the first run).
    pub index: usize,
    /// The first run of the series there.
    pub run_id: String,
    pub key: SeriesKey,
    /// The key of the run just before, `None` at the start of the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SeriesKey>,
    /// The key was seen earlier in the history (a revert): its runs continue that
    /// earlier series, which the gate's baseline may draw on.
    pub resumed: bool,
}

/// Where a new series starts in a history of `(run id, series key)`, oldest first: the first
/// run and every run whose key differs from the run before it.
pub fn series_starts<R: AsRef<str>, K: AsRef<str>>(history: &[(R, K)]) -> Vec<SeriesStart> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    for (index, (run, key)) in history.iter().enumerate() {
        let key = key.as_ref();
        if previous != Some(key) {
            out.push(SeriesStart {
                index,
                run_id: run.as_ref().to_string(),
                key: SeriesKey(key.to_string()),
                previous: previous.map(|p| SeriesKey(p.to_string())),
                resumed: seen.contains(key),
            });
        }
        seen.insert(key);
        previous = Some(key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> SeriesInputs {
        SeriesInputs {
            test: "checkout".into(),
            content_digest: "ab12".into(),
            load: LoadProfile {
                vus: 10,
                duration_ms: 60_000,
                stages: vec![],
            },
            parallelism: 2,
            runner_requests: [("cpu".to_string(), "500m".to_string())].into(),
            runner_limits: BTreeMap::new(),
            targets: vec!["https://b.example".into(), "https://a.example".into()],
            executor: "kubernetes".into(),
            runner_image: None,
        }
    }

    #[test]
    fn key_is_stable_hex_and_ignores_target_order() {
        let a = series_key(&inputs());
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        let mut swapped = inputs();
        swapped.targets.reverse();
        swapped.targets.push("https://a.example".into());
        assert_eq!(series_key(&swapped), a);
    }

    #[test]
    fn every_measured_part_changes_the_key() {
        let base = series_key(&inputs());
        let changes: Vec<Box<dyn Fn(&mut SeriesInputs)>> = vec![
            Box::new(|i| i.test = "other".into()),
            Box::new(|i| i.content_digest = "ab13".into()),
            Box::new(|i| i.load.vus = 11),
            Box::new(|i| i.load.duration_ms = 61_000),
            Box::new(|i| {
                i.load.stages.push(LoadStage {
                    duration_ms: 1,
                    target: 1,
                })
            }),
            Box::new(|i| i.parallelism = 3),
            Box::new(|i| {
                i.runner_requests.insert("memory".into(), "1Gi".into());
            }),
            Box::new(|i| {
                i.runner_limits.insert("cpu".into(), "500m".into());
            }),
            Box::new(|i| i.targets.push("https://c.example".into())),
            Box::new(|i| i.executor = "local".into()),
            Box::new(|i| i.runner_image = Some("grafana/k6:1.1.0".into())),
        ];
        for (n, change) in changes.iter().enumerate() {
            let mut i = inputs();
            change(&mut i);
            assert_ne!(series_key(&i), base, "change {n}");
        }
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        let mut a = inputs();
        a.targets = vec!["x".into(), "y".into()];
        let mut b = inputs();
        b.targets = vec!["xy".into()];
        assert_ne!(series_key(&a), series_key(&b));
        let mut c = inputs();
        c.runner_requests = [("cpu".to_string(), "1".to_string())].into();
        let mut d = inputs();
        d.runner_limits = [("cpu".to_string(), "1".to_string())].into();
        d.runner_requests.clear();
        assert_ne!(series_key(&c), series_key(&d));
    }

    #[test]
    fn starts_at_each_change_and_marks_reverts() {
        let h = [
            ("r1", "A"),
            ("r2", "A"),
            ("r3", "B"),
            ("r4", "B"),
            ("r5", "A"),
        ];
        let starts = series_starts(&h);
        let at: Vec<(usize, &str, bool)> = starts
            .iter()
            .map(|s| (s.index, s.run_id.as_str(), s.resumed))
            .collect();
        assert_eq!(at, [(0, "r1", false), (2, "r3", false), (4, "r5", true)]);
        assert_eq!(starts[1].previous, Some(SeriesKey("A".into())));
        assert!(series_starts::<&str, &str>(&[]).is_empty());
    }
}
