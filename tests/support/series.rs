//! Generated series with known shifts for the statistics tests and benches: a small seeded
//! generator (SplitMix64) and Box–Muller normals, so every figure is reproducible without
//! a crate. Included by path (`#[path = "support/series.rs"] mod series;`), not through
//! `support/mod.rs`, so the statistics tests build without the heavy test ground.
#![allow(dead_code)]

/// SplitMix64: tiny, fast, and good enough for noise (not for cryptography).
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed ^ 0x5DEE_CE66_D1CE_4E5B,
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * v;
        self.spare = Some(r * a.sin());
        r * a.cos()
    }
}

/// `n` values around `level(i)` with normal noise of standard deviation `sd(i)`.
pub fn generate(
    seed: u64,
    n: usize,
    level: impl Fn(usize) -> f64,
    sd: impl Fn(usize) -> f64,
) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| level(i) + sd(i) * rng.normal()).collect()
}

/// Noise only: `level ± sd`.
pub fn noise(seed: u64, n: usize, level: f64, sd: f64) -> Vec<f64> {
    generate(seed, n, |_| level, |_| sd)
}

/// A step from `before` to `after` at index `at` (the first value of the new level).
pub fn step(seed: u64, n: usize, at: usize, before: f64, after: f64, sd: f64) -> Vec<f64> {
    generate(seed, n, |i| if i < at { before } else { after }, |_| sd)
}

/// A linear drift from `from` to `to` between indices `start` and `end`, flat outside.
pub fn drift(
    seed: u64,
    n: usize,
    start: usize,
    end: usize,
    from: f64,
    to: f64,
    sd: f64,
) -> Vec<f64> {
    let level = move |i: usize| {
        if i <= start {
            from
        } else if i >= end {
            to
        } else {
            from + (to - from) * (i - start) as f64 / (end - start) as f64
        }
    };
    generate(seed, n, level, |_| sd)
}

/// The same level throughout; the noise changes from `sd_before` to `sd_after` at `at`.
pub fn variance_change(
    seed: u64,
    n: usize,
    at: usize,
    level: f64,
    sd_before: f64,
    sd_after: f64,
) -> Vec<f64> {
    generate(
        seed,
        n,
        |_| level,
        |i| if i < at { sd_before } else { sd_after },
    )
}

/// Noise with one value at `at` replaced by `outlier`.
pub fn outlier(seed: u64, n: usize, at: usize, level: f64, sd: f64, value: f64) -> Vec<f64> {
    let mut xs = noise(seed, n, level, sd);
    xs[at] = value;
    xs
}

/// Log-normal noise: `level · e^(σ·z)`, the shape of run-to-run latency noise.
pub fn lognormal(seed: u64, n: usize, level: impl Fn(usize) -> f64, sigma: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| level(i) * (sigma * rng.normal()).exp())
        .collect()
}

/// What the per-run gate does on a generated history, run by run.
pub mod gate_sim {
    use perfsync::results::stats::{
        gate_run, GateConfig, InconclusiveReason, MetricRule, Observation, Verdict,
    };

    #[derive(Debug, Default, Clone, Copy)]
    pub struct Outcome {
        /// Runs judged before the step (noise only) and how many were called regressions.
        pub judged_before: u64,
        pub false_alarms: u64,
        /// Steps flagged, the runs from the step to the flag summed (0: the step's own run),
        /// and steps never flagged within the history.
        pub flagged: u64,
        pub delay_sum: u64,
        pub missed: u64,
    }

    impl Outcome {
        pub fn false_alarm_rate(&self) -> f64 {
            self.false_alarms as f64 / self.judged_before.max(1) as f64
        }
        pub fn mean_delay(&self) -> f64 {
            self.delay_sum as f64 / self.flagged.max(1) as f64
        }
    }

    /// Latency histories of `runs` runs, log-normal noise `sigma` around 100 ms, stepping by
    /// `step` (0.2 = +20 %) at run `at`, over `seeds` seeds.
    #[derive(Debug, Clone, Copy)]
    pub struct Scenario {
        pub sigma: f64,
        pub step: f64,
        pub at: usize,
        pub runs: usize,
        pub seeds: u64,
        /// Runs join the baseline as the gate says (`joinsBaseline`); false: every run does.
        pub hold_out: bool,
    }

    impl Scenario {
        /// 5 % noise, 60 runs, no step.
        pub fn noise() -> Self {
            Scenario {
                sigma: 0.05,
                step: 0.0,
                at: 60,
                runs: 60,
                seeds: 200,
                hold_out: true,
            }
        }
        /// 5 % noise, a step at run 30 of 60.
        pub fn step(step: f64) -> Self {
            Scenario {
                step,
                at: 30,
                ..Self::noise()
            }
        }
    }

    /// Each history judged one run at a time against the last accepted runs.
    pub fn simulate(config: &GateConfig, rule: &MetricRule, sc: &Scenario) -> Outcome {
        let Scenario {
            sigma,
            step,
            at,
            runs,
            seeds,
            hold_out,
        } = *sc;
        let mut out = Outcome::default();
        for seed in 0..seeds {
            let level = |i: usize| if i < at { 100.0 } else { 100.0 * (1.0 + step) };
            let xs = super::lognormal(seed, runs, level, sigma);
            let mut accepted: Vec<Observation> = Vec::new();
            let mut found = None;
            for (i, &x) in xs.iter().enumerate() {
                let obs = Observation::exact(format!("r{i}"), x);
                let r = gate_run(&obs, &accepted, rule, config).expect("valid config");
                let regressed = r.verdict == Verdict::Regressed;
                if i < at && r.reason != Some(InconclusiveReason::TooFewRuns) {
                    out.judged_before += 1;
                    out.false_alarms += u64::from(regressed);
                }
                if i >= at && regressed && found.is_none() {
                    found = Some(i - at);
                }
                if r.joins_baseline || !hold_out {
                    accepted.push(obs);
                }
            }
            match found {
                Some(d) if step != 0.0 => {
                    out.flagged += 1;
                    out.delay_sum += d as u64;
                }
                _ if step != 0.0 => out.missed += 1,
                _ => {}
            }
        }
        out
    }
}
