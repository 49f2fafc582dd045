//! Summaries of a small sample: mean and variance, and quartiles as numpy's default
//! (linear interpolation between order statistics) so figures can be checked there.

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (n - 1); 0 for fewer than two values.
pub fn variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64
}

/// The q-quantile (0 ≤ q ≤ 1) of values already sorted; NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_as_numpy() {
        // numpy.percentile([1, 2, 4, 8, 16], [25, 50, 75]) = [2, 4, 8];
        // numpy.percentile([3, 1, 2], [25, 75]) = [1.5, 2.5].
        let s = sorted(&[16.0, 1.0, 4.0, 2.0, 8.0]);
        assert_eq!(
            [0.25, 0.5, 0.75].map(|q| quantile_sorted(&s, q)),
            [2.0, 4.0, 8.0]
        );
        let s = sorted(&[3.0, 1.0, 2.0]);
        assert_eq!(quantile_sorted(&s, 0.25), 1.5);
        assert_eq!(quantile_sorted(&s, 0.75), 2.5);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn variance_is_the_sample_one() {
        assert_eq!(variance(&[1.0, 2.0, 3.0, 4.0]), 5.0 / 3.0);
        assert_eq!(variance(&[7.0]), 0.0);
    }
}
