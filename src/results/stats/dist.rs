//! The distributions the gate and the change-point test need: Student's t (two-sided tail
//! through the regularized incomplete beta) and the normal (through the regularized upper
//! incomplete gamma), with quantiles by bisection. Written here rather than taken from
//! `statrs`, which would bring nalgebra into the daemon for four functions.

use std::f64::consts::PI;

/// Relative accuracy the continued fractions and series stop at.
const EPS: f64 = 1e-15;
/// Keeps Lentz's method away from a division by zero.
const TINY: f64 = 1e-300;
const MAX_TERMS: usize = 500;

/// ln Γ(x) for x > 0, Lanczos (g = 7, 9 terms; accurate to ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in the range where it is accurate.
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of I_x(a, b) (modified Lentz), converging fast for
/// x < (a + 1) / (a + b + 2).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..MAX_TERMS {
        let m = m as f64;
        // Even step, then odd step, of the fraction's coefficients.
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        for coef in [
            even,
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + coef * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + coef / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= c * d;
            if (c * d - 1.0).abs() < EPS {
                return f;
            }
        }
    }
    f
}

/// The regularized incomplete beta I_x(a, b), with `y = 1 - x` given separately so a
/// caller that knows it exactly (the t tail) loses no digits near x = 1.
pub fn beta_reg(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * y.ln() - (ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b));
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, y) / b
    }
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom (df may be fractional, as
/// Welch's is). NaN in gives NaN out.
pub fn t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let t2 = t * t;
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    beta_reg(df / 2.0, 0.5, x, y).clamp(0.0, 1.0)
}

/// The regularized upper incomplete gamma Q(a, x): a series for P below a + 1, a continued
/// fraction for Q above.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        for n in 1..MAX_TERMS {
            term *= x / (a + n as f64);
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut f = d;
        for i in 1..MAX_TERMS {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= d * c;
            if (d * c - 1.0).abs() < EPS {
                break;
            }
        }
        ln_front.exp() * f
    }
}

/// P(|Z| ≥ |z|) for a standard normal Z: erfc(|z|/√2) = Q(½, z²/2).
pub fn normal_two_sided(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z.is_infinite() {
        return 0.0;
    }
    gamma_q(0.5, z * z / 2.0).clamp(0.0, 1.0)
}

/// The c ≥ 0 with `tail(c) = p`, for a tail decreasing from 1 at 0; bisection, since the
/// tails are cheap and monotone and a few dozen evaluations are nothing next to a run.
fn two_sided_quantile(p: f64, tail: impl Fn(f64) -> f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        return f64::INFINITY;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let mut hi = 1.0;
    while tail(hi) > p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The critical |t| of a two-sided test at level `alpha`.
pub fn t_critical(alpha: f64, df: f64) -> f64 {
    two_sided_quantile(alpha, |t| t_two_sided(t, df))
}

/// The critical |z| of a two-sided test at level `alpha`.
pub fn normal_critical(alpha: f64) -> f64 {
    two_sided_quantile(alpha, normal_two_sided)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn gamma_of_integers_and_half() {
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(ln_gamma(0.5), PI.sqrt().ln(), 1e-13));
        assert!(close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-13));
    }

    #[test]
    fn t_with_one_degree_is_cauchy() {
        // P(|T| ≥ t) for df = 1 is 1 - 2 atan(t)/π.
        for t in [0.1, 1.0, 3.0, 30.0] {
            let want = 1.0 - 2.0 * f64::atan(t) / PI;
            assert!(close(t_two_sided(t, 1.0), want, 1e-12), "t = {t}");
        }
    }

    #[test]
    fn t_with_two_degrees_has_a_closed_form() {
        // P(|T| ≥ t) for df = 2 is 1 - t / √(2 + t²), written without the cancellation.
        for t in [0.01f64, 0.5, 2.0, 50.0, 1e4] {
            let r = (2.0 + t * t).sqrt();
            let want = 2.0 / (r * (r + t));
            assert!(close(t_two_sided(t, 2.0), want, 1e-12), "t = {t}");
        }
    }

    #[test]
    fn normal_tail_reference() {
        // erfc(1/√2), erfc(3/√2), erfc(6/√2).
        assert!(close(normal_two_sided(1.0), 0.317_310_507_862_914_1, 1e-12));
        assert!(close(
            normal_two_sided(3.0),
            0.002_699_796_063_260_19,
            1e-10
        ));
        assert!(close(normal_two_sided(6.0), 1.973_175_290_075_2e-9, 1e-8));
        assert_eq!(normal_two_sided(0.0), 1.0);
    }

    #[test]
    fn quantiles_invert_the_tails() {
        assert!(close(normal_critical(0.05), 1.959_963_984_540_054, 1e-9));
        assert!(close(t_critical(0.05, 1.0), 12.706_204_736_174_7, 1e-9));
        for df in [2.0, 7.5, 40.0] {
            let c = t_critical(0.01, df);
            assert!(close(t_two_sided(c, df), 0.01, 1e-9));
        }
    }
}
