//! Prefix sums of a series, so the mean and spread of any segment cost O(1): the change-point
//! merge re-tests segments many times over a long history.

use super::dist::t_two_sided;

/// Running sums of `x - shift` and its square. The shift (the first value) keeps the squares
/// small, so `ss = Σd² - (Σd)²/n` does not cancel away a small spread around a large level.
#[derive(Debug, Clone, Default)]
pub struct PrefixMoments {
    shift: f64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

/// A segment's count, mean and sum of squared deviations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub n: usize,
    pub mean: f64,
    pub ss: f64,
}

impl Segment {
    /// Sample standard deviation (0 for a single value).
    pub fn stddev(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.ss / (self.n - 1) as f64).sqrt()
        }
    }
}

impl PrefixMoments {
    pub fn push(&mut self, x: f64) {
        if self.sum.is_empty() {
            self.shift = x;
            self.sum.push(0.0);
            self.sum_sq.push(0.0);
        }
        let d = x - self.shift;
        let (s, q) = (
            self.sum[self.sum.len() - 1],
            self.sum_sq[self.sum_sq.len() - 1],
        );
        self.sum.push(s + d);
        self.sum_sq.push(q + d * d);
    }

    /// Values `a..b` (`a < b ≤ len`).
    pub fn segment(&self, a: usize, b: usize) -> Segment {
        let n = b.saturating_sub(a);
        if n == 0 || b >= self.sum.len() {
            return Segment {
                n: 0,
                mean: f64::NAN,
                ss: 0.0,
            };
        }
        let s = self.sum[b] - self.sum[a];
        let q = self.sum_sq[b] - self.sum_sq[a];
        let nf = n as f64;
        Segment {
            n,
            mean: self.shift + s / nf,
            ss: (q - s * s / nf).max(0.0),
        }
    }
}

/// How the t-test between two segments pools their spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Student's test: the segments' squared deviations over n₁ + n₂ − 2.
    Sample,
    /// As Apache Otava 0.8.0 computes it: population standard deviations (÷ n) handed to
    /// a formula that expects sample ones, which understates the spread of short segments.
    Otava,
}

/// Two-sided p-value of Student's two-sample t-test (pooled variance) that two segments
/// share a mean. Two single values say nothing (1); two flat segments at different levels
/// are as different as can be (0).
pub fn student_p(left: Segment, right: Segment, pooling: Pooling) -> f64 {
    if left.n == 0 || right.n == 0 || left.n + right.n <= 2 {
        return 1.0;
    }
    let df = (left.n + right.n - 2) as f64;
    let (n1, n2) = (left.n as f64, right.n as f64);
    let pooled = match pooling {
        Pooling::Sample => (left.ss + right.ss) / df,
        Pooling::Otava => ((n1 - 1.0) * left.ss / n1 + (n2 - 1.0) * right.ss / n2) / df,
    };
    let se = (pooled * (1.0 / n1 + 1.0 / n2)).sqrt();
    let diff = left.mean - right.mean;
    if se == 0.0 || !se.is_finite() {
        return if diff == 0.0 { 1.0 } else { 0.0 };
    }
    let p = t_two_sided(diff / se, df);
    if p.is_nan() {
        1.0
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_direct_sums() {
        let xs = [1000.0, 1000.5, 999.5, 1001.0, 998.0, 1003.0];
        let mut m = PrefixMoments::default();
        xs.iter().for_each(|&x| m.push(x));
        let s = m.segment(1, 5);
        let part = &xs[1..5];
        let mean = part.iter().sum::<f64>() / 4.0;
        let ss: f64 = part.iter().map(|x| (x - mean) * (x - mean)).sum();
        assert!((s.mean - mean).abs() < 1e-12);
        assert!((s.ss - ss).abs() < 1e-9);
        assert_eq!(m.segment(3, 3).n, 0);
    }

    #[test]
    fn student_reference_value() {
        // scipy.stats.ttest_ind([1, 2, 3, 4], [3, 4, 5, 6, 7]).pvalue = 0.03833372883603087 (scipy 1.16.3)
        let mut m = PrefixMoments::default();
        [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0, 7.0]
            .iter()
            .for_each(|&x| m.push(x));
        let p = student_p(m.segment(0, 4), m.segment(4, 9), Pooling::Sample);
        assert!((p - 0.038_333_728_836_030_87).abs() < 1e-10, "{p}");
    }
}
