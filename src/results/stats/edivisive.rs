//! E-divisive means inside one window (Matteson & James 2014, as Hunter/Otava use it): split
//! the window where the energy statistic between the two sides peaks, keep the split if
//! Student's t-test between the whole segments on either side passes, and repeat on the
//! pieces until a split fails.

use super::moments::{student_p, Pooling, PrefixMoments};

/// Sums of pairwise distances |z_i - z_k| over every segment `[p, q)` of a window, so the
/// energy statistic of any split is O(1). O(L²) time and memory for a window of L values,
/// built once per window.
struct PairSums {
    len: usize,
    within: Vec<f64>,
}

impl PairSums {
    fn new(z: &[f64]) -> Self {
        let len = z.len();
        let side = len + 1;
        let mut within = vec![0.0; side * side];
        // within[p][q + 1] = within[p][q] + Σ_{i = p..q} |z_i - z_q|: the new last value
        // against everything before it in the segment.
        for q in 1..len {
            let mut tail = 0.0;
            for p in (0..q).rev() {
                tail += (z[p] - z[q]).abs();
                within[p * side + q + 1] = within[p * side + q] + tail;
            }
        }
        PairSums { len, within }
    }

    fn w(&self, p: usize, q: usize) -> f64 {
        self.within[p * (self.len + 1) + q]
    }

    /// The split τ of `[a, b)` and the end κ ≤ b maximising the scaled energy distance
    /// between `[a, τ)` and `[τ, κ)`; its value. The first maximum wins, scanning τ then κ
    /// upwards, so equal data always give the same split.
    fn best_split(&self, a: usize, b: usize) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for tau in a + 1..b {
            let n = (tau - a) as f64;
            let within_left = self.w(a, tau);
            for kappa in tau + 1..=b {
                let m = (kappa - tau) as f64;
                let total = n + m;
                let within_right = self.w(tau, kappa);
                let cross = self.w(a, kappa) - within_left - within_right;
                let mut q = 2.0 * cross / total;
                if n > 1.0 {
                    q -= 2.0 * m * within_left / (total * (n - 1.0));
                }
                if m > 1.0 {
                    q -= 2.0 * n * within_right / (total * (m - 1.0));
                }
                if best.is_none_or(|(_, v)| q > v) {
                    best = Some((tau, q));
                }
            }
        }
        best
    }
}

/// Change points of `values[start..end]` (indices into `values`), each significant at
/// `max_p` against the segments it splits at the moment it was found.
pub fn window_change_points(
    values: &[f64],
    moments: &PrefixMoments,
    start: usize,
    end: usize,
    max_p: f64,
    pooling: Pooling,
) -> Vec<usize> {
    let Some(window) = values.get(start..end) else {
        return Vec::new();
    };
    let sums = PairSums::new(window);
    let mut cuts: Vec<usize> = Vec::new();
    loop {
        // Segments between the window's ends and the cuts found so far.
        let mut best: Option<(usize, usize, usize, f64)> = None;
        let mut lo = 0;
        for hi in cuts.iter().copied().chain(std::iter::once(window.len())) {
            if hi - lo > 1 {
                if let Some((tau, q)) = sums.best_split(lo, hi) {
                    if best.is_none_or(|(_, _, _, v)| q > v) {
                        best = Some((lo, hi, tau, q));
                    }
                }
            }
            lo = hi;
        }
        let Some((lo, hi, tau, _)) = best else { break };
        let p = student_p(
            moments.segment(start + lo, start + tau),
            moments.segment(start + tau, start + hi),
            pooling,
        );
        if p > max_p {
            break;
        }
        let at = cuts.partition_point(|&c| c < tau);
        cuts.insert(at, tau);
    }
    cuts.into_iter().map(|c| c + start).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(xs: &[f64]) -> PrefixMoments {
        let mut m = PrefixMoments::default();
        xs.iter().for_each(|&x| m.push(x));
        m
    }

    #[test]
    fn energy_of_two_values_is_their_distance() {
        let sums = PairSums::new(&[1.0, 4.0]);
        assert_eq!(sums.best_split(0, 2), Some((1, 3.0)));
    }

    #[test]
    fn pair_sums_match_brute_force() {
        let z = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0];
        let sums = PairSums::new(&z);
        for p in 0..z.len() {
            for q in p..=z.len() {
                let mut direct = 0.0;
                for i in p..q {
                    for k in i + 1..q {
                        direct += f64::abs(z[i] - z[k]);
                    }
                }
                assert!((sums.w(p, q) - direct).abs() < 1e-12, "[{p}, {q})");
            }
        }
    }

    #[test]
    fn finds_a_clear_step_in_a_window() {
        let xs: Vec<f64> = (0..40)
            .map(|i| if i < 25 { 10.0 } else { 20.0 } + (i % 3) as f64 * 0.1)
            .collect();
        let m = moments(&xs);
        assert_eq!(
            window_change_points(&xs, &m, 0, 40, 0.01, Pooling::Sample),
            vec![25]
        );
        assert_eq!(
            window_change_points(&xs, &m, 10, 40, 0.01, Pooling::Sample),
            vec![25]
        );
    }
}
