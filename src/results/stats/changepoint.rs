//! Change points over a series' history, in the manner of Hunter/Apache Otava: E-divisive
//! means in sliding windows with a Student t-test in place of permutations (deterministic),
//! then a merge that drops the weakest points until every one left is significant and large
//! enough.
//!
//! 1. **Split.** Windows of `window` values step through the series by `window / 2`, or jump
//!    to the last change point a window found when that is further. Inside each window
//!    E-divisive splits while the t-test passes a relaxed level (10× `max_p_value` below
//!    0.05), giving *weak* change points: candidates, not verdicts.
//! 2. **Merge.** Each weak point is tested against its neighbours' segments over the whole
//!    series; the one with the worst p-value above `max_p_value` — or, once all pass, the
//!    smallest one not above `min_magnitude` — is dropped and its two neighbours re-tested,
//!    until none is to drop.
//!
//! Two departures from Otava 0.8.0, both corrections: the t-test pools sample variances
//! (Otava hands population standard deviations to a formula for sample ones, which makes
//! short segments look surer than they are), and after a merge drops a point it re-tests
//! the points on *both* sides of the gap (Otava re-tests the one after and the one after
//! that, leaving the one before with a stale, too short right segment).
//! `otavaCompatible: true` reproduces both, so the two can be compared point for point.
//!
//! [`Detector`] keeps every window that was complete when computed: appending values only
//! re-runs the windows the old end cut short (two or three), and the merge works on prefix
//! sums. Its answer is always equal to [`change_points`] over the same values.

use super::edivisive::window_change_points;
use super::moments::{student_p, Pooling, PrefixMoments, Segment};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChangePointError {
    #[error("the window must hold at least 2 values, not {0}")]
    Window(usize),
    #[error("the p-value threshold must lie in (0, 1], not {0}")]
    MaxPValue(f64),
    #[error("the minimum magnitude must be a finite number ≥ 0, not {0}")]
    MinMagnitude(f64),
    #[error("value {index} of the series is {value}: only finite numbers can be compared")]
    NotFinite { index: usize, value: f64 },
}

/// Otava's defaults: window 50, p-value 0.001, no minimum magnitude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePointConfig {
    /// Values in each window of the split step.
    pub window: usize,
    /// Significance level a change point must reach (two-sided t-test).
    pub max_p_value: f64,
    /// Smallest relative change kept, as a fraction (0.05 = 5 %), measured both ways
    /// (`max(|after/before - 1|, |before/after - 1|)`).
    pub min_magnitude: f64,
    /// Compute exactly as Apache Otava 0.8.0 does, quirks included (see the module's
    /// notes); for comparisons, not for judging.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub otava_compatible: bool,
}

impl Default for ChangePointConfig {
    fn default() -> Self {
        ChangePointConfig {
            window: 50,
            max_p_value: 0.001,
            min_magnitude: 0.0,
            otava_compatible: false,
        }
    }
}

impl ChangePointConfig {
    pub fn validate(&self) -> Result<(), ChangePointError> {
        if self.window < 2 {
            return Err(ChangePointError::Window(self.window));
        }
        if !(self.max_p_value > 0.0 && self.max_p_value <= 1.0) {
            return Err(ChangePointError::MaxPValue(self.max_p_value));
        }
        if !(self.min_magnitude.is_finite() && self.min_magnitude >= 0.0) {
            return Err(ChangePointError::MinMagnitude(self.min_magnitude));
        }
        Ok(())
    }

    fn pooling(&self) -> Pooling {
        if self.otava_compatible {
            Pooling::Otava
        } else {
            Pooling::Sample
        }
    }

    /// The split step's level: looser than the final one, so the merge has candidates to
    /// weigh (Hunter's choice).
    fn first_pass_p(&self) -> f64 {
        let p = self.max_p_value;
        if p < 0.05 {
            p * 10.0
        } else if p < 0.5 {
            p * 2.0
        } else {
            p
        }
    }
}

/// A shift in the series: the level changes between `index - 1` and `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePoint {
    /// The first value of the new level (the run that starts the shift).
    pub index: usize,
    /// Two-sided p-value of the t-test between the segments on either side (each up to the
    /// neighbouring change point or the series' end).
    pub p_value: f64,
    pub mean_before: f64,
    pub mean_after: f64,
    pub stddev_before: f64,
    pub stddev_after: f64,
    /// `(after / before - 1) × 100`; `None` when the mean before is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_percent: Option<f64>,
    /// `max(|after/before - 1|, |before/after - 1|)`, the size `min_magnitude` is compared
    /// with (a halving and a doubling weigh the same).
    pub magnitude: f64,
}

fn describe(index: usize, before: Segment, after: Segment, pooling: Pooling) -> ChangePoint {
    let rel = |to: f64, from: f64| if from == 0.0 { 0.0 } else { to / from - 1.0 };
    let forward = rel(after.mean, before.mean);
    let backward = rel(before.mean, after.mean);
    ChangePoint {
        index,
        p_value: student_p(before, after, pooling),
        mean_before: before.mean,
        mean_after: after.mean,
        stddev_before: before.stddev(),
        stddev_after: after.stddev(),
        change_percent: (before.mean != 0.0).then_some(forward * 100.0),
        magnitude: forward.abs().max(backward.abs()),
    }
}

/// A window of the split step and the change points found in it.
#[derive(Debug, Clone)]
struct Window {
    start: usize,
    end: usize,
    found: Vec<usize>,
}

/// Change points of a series kept up to date as values are appended.
#[derive(Debug, Clone)]
pub struct Detector {
    config: ChangePointConfig,
    values: Vec<f64>,
    moments: PrefixMoments,
    windows: Vec<Window>,
    found: Vec<ChangePoint>,
}

impl Detector {
    pub fn new(config: ChangePointConfig) -> Result<Self, ChangePointError> {
        config.validate()?;
        Ok(Detector {
            config,
            values: Vec::new(),
            moments: PrefixMoments::default(),
            windows: Vec::new(),
            found: Vec::new(),
        })
    }

    pub fn config(&self) -> &ChangePointConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The change points of everything appended so far, by index.
    pub fn change_points(&self) -> &[ChangePoint] {
        &self.found
    }

    /// Appends one value (a new run) and brings the change points up to date.
    pub fn push(&mut self, value: f64) -> Result<&[ChangePoint], ChangePointError> {
        self.extend(std::iter::once(value))
    }

    /// Appends values, oldest first, and brings the change points up to date once. A
    /// non-finite value is refused and nothing of the batch is kept.
    pub fn extend(
        &mut self,
        values: impl IntoIterator<Item = f64>,
    ) -> Result<&[ChangePoint], ChangePointError> {
        let before = self.values.len();
        let new: Vec<f64> = values.into_iter().collect();
        if let Some((i, &value)) = new.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ChangePointError::NotFinite {
                index: before + i,
                value,
            });
        }
        for value in new {
            self.values.push(value);
            self.moments.push(value);
        }
        if self.values.len() != before {
            self.split();
            self.found = self.merge();
        }
        Ok(&self.found)
    }

    /// Where the window after `w` starts.
    fn next_start(&self, w: &Window) -> usize {
        let step = (self.config.window / 2).max(1);
        let last = w.found.last().copied().unwrap_or(0);
        last.max(w.start + step)
    }

    fn split(&mut self) {
        let full = self.config.window;
        // A window cut short by the old end sees different data now; it and every window
        // after it are done again. Complete windows cannot change.
        let keep = self
            .windows
            .iter()
            .position(|w| w.end - w.start < full)
            .unwrap_or(self.windows.len());
        self.windows.truncate(keep);
        let mut start = self.windows.last().map_or(0, |w| self.next_start(w));
        let n = self.values.len();
        let p = self.config.first_pass_p();
        while start < n {
            let end = (start + full).min(n);
            let found = window_change_points(
                &self.values,
                &self.moments,
                start,
                end,
                p,
                self.config.pooling(),
            );
            let w = Window { start, end, found };
            start = self.next_start(&w);
            self.windows.push(w);
        }
    }

    fn merge(&self) -> Vec<ChangePoint> {
        let mut weak: Vec<usize> = self
            .windows
            .iter()
            .flat_map(|w| w.found.iter().copied())
            .collect();
        weak.sort_unstable();
        weak.dedup();
        let n = self.values.len();
        let at = |weak: &[usize], i: usize| {
            let before = if i == 0 { 0 } else { weak[i - 1] };
            let after = weak.get(i + 1).copied().unwrap_or(n);
            describe(
                weak[i],
                self.moments.segment(before, weak[i]),
                self.moments.segment(weak[i], after),
                self.config.pooling(),
            )
        };
        let mut points: Vec<ChangePoint> = (0..weak.len()).map(|i| at(&weak, i)).collect();
        let cfg = &self.config;
        while !points.is_empty() {
            let mut drop = first_best(&points, |a, b| a.p_value > b.p_value);
            if points[drop].p_value < cfg.max_p_value {
                drop = first_best(&points, |a, b| a.magnitude < b.magnitude);
                if points[drop].magnitude > cfg.min_magnitude {
                    break;
                }
            }
            points.remove(drop);
            weak.remove(drop);
            // Only the two neighbours' segments changed: the one before now reaches further
            // right, the one after further left.
            let retest = if cfg.otava_compatible {
                [Some(drop), Some(drop + 1)]
            } else {
                [drop.checked_sub(1), Some(drop)]
            };
            for i in retest.into_iter().flatten() {
                if i < points.len() {
                    points[i] = at(&weak, i);
                }
            }
        }
        points
    }
}

/// Index of the first element no other beats (`better(a, b)`: a beats b).
fn first_best(
    points: &[ChangePoint],
    better: impl Fn(&ChangePoint, &ChangePoint) -> bool,
) -> usize {
    let mut best = 0;
    for (i, p) in points.iter().enumerate().skip(1) {
        if better(p, &points[best]) {
            best = i;
        }
    }
    best
}

/// The change points of a whole series at once.
pub fn change_points(
    values: &[f64],
    config: &ChangePointConfig,
) -> Result<Vec<ChangePoint>, ChangePointError> {
    let mut d = Detector::new(config.clone())?;
    d.extend(values.iter().copied())?;
    Ok(d.found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wobble(i: usize) -> f64 {
        // A fixed, patternless ±1 wobble: deterministic without a generator.
        ((i as f64 * 12.9898).sin() * 43_758.545_3).fract()
    }

    #[test]
    fn step_is_found_where_it_is() {
        let xs: Vec<f64> = (0..120)
            .map(|i| if i < 70 { 100.0 } else { 130.0 } + wobble(i) * 3.0)
            .collect();
        let cps = change_points(&xs, &ChangePointConfig::default()).unwrap();
        assert_eq!(cps.iter().map(|c| c.index).collect::<Vec<_>>(), [70]);
        let c = &cps[0];
        assert!(c.p_value < 1e-10);
        assert!((c.change_percent.unwrap() - 30.0).abs() < 3.0);
    }

    #[test]
    fn flat_series_has_none() {
        let xs = vec![5.0; 200];
        assert!(change_points(&xs, &ChangePointConfig::default())
            .unwrap()
            .is_empty());
        assert!(change_points(&[], &ChangePointConfig::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn appending_one_by_one_equals_the_whole() {
        let xs: Vec<f64> = (0..400)
            .map(|i| 50.0 + (i / 90) as f64 * 4.0 + wobble(i) * 3.0)
            .collect();
        let cfg = ChangePointConfig {
            window: 30,
            ..Default::default()
        };
        let mut d = Detector::new(cfg.clone()).unwrap();
        for (n, &x) in xs.iter().enumerate() {
            let live = d.push(x).unwrap().to_vec();
            if n % 37 == 0 || n == xs.len() - 1 {
                assert_eq!(live, change_points(&xs[..=n], &cfg).unwrap(), "after {n}");
            }
        }
    }

    #[test]
    fn bad_input_is_refused_and_forgotten() {
        let mut d = Detector::new(ChangePointConfig::default()).unwrap();
        d.extend([1.0, 2.0]).unwrap();
        let err = d.extend([3.0, f64::NAN]).unwrap_err();
        assert!(
            matches!(err, ChangePointError::NotFinite { index: 3, .. }),
            "{err}"
        );
        assert_eq!(d.len(), 2);
        assert!(Detector::new(ChangePointConfig {
            window: 1,
            ..Default::default()
        })
        .is_err());
    }
}
