//! `cargo bench --bench changepoints`: the regression statistics (issue 13).
//!
//! 1. Time per new run: a [`Detector`] holding 1,000 or 10,000 runs takes one more; and the
//!    whole history computed from nothing (a restart, or a caller that keeps no state).
//! 2. Change points on noise only (false points per 1,000 runs) and the runs after a step
//!    until the detector names it.
//! 3. The per-run gate per method and K: false alarms on noise only, runs until a step is
//!    flagged.
//!
//! Histories are generated (tests/support/series.rs), seeded, so every figure but the
//! times is the same on any machine.

#[path = "../tests/support/series.rs"]
mod series;

use perfsync::results::stats::{
    change_points, ChangePointConfig, Detector, GateConfig, Method, MetricRule,
};
use series::gate_sim::{simulate, Scenario};
use std::time::{Duration, Instant};

/// A long history with a few real shifts in it, sd 5 around 100.
fn history(n: usize) -> Vec<f64> {
    series::generate(
        42,
        n,
        |i| 100.0 + [0.0, 12.0, 4.0, -6.0][(i * 4 / n.max(1)).min(3)],
        |_| 5.0,
    )
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn timing(n: usize) {
    const NEW: usize = 1_000;
    let xs = history(n + NEW);
    let cfg = ChangePointConfig::default();
    let mut d = Detector::new(cfg.clone()).unwrap();
    d.extend(xs[..n].iter().copied()).unwrap();
    let mut times: Vec<Duration> = xs[n..]
        .iter()
        .map(|&x| {
            let t = Instant::now();
            let cps = d.push(x).unwrap().len();
            std::hint::black_box(cps);
            t.elapsed()
        })
        .collect();
    times.sort();
    let found = d.change_points().len();
    let mut whole: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(change_points(&xs[..n], &cfg).unwrap());
            t.elapsed()
        })
        .collect();
    whole.sort();
    println!(
        "| {n} | {} | {} | {} | {} | {found} |",
        fmt(quantile(&times, 0.5)),
        fmt(quantile(&times, 0.95)),
        fmt(quantile(&times, 1.0)),
        fmt(quantile(&whole, 0.5)),
    );
}

fn false_points(cfg: &ChangePointConfig) -> f64 {
    const SEEDS: u64 = 200;
    const RUNS: usize = 500;
    let points: usize = (0..SEEDS)
        .map(|s| {
            change_points(&series::noise(s, RUNS, 100.0, 5.0), cfg)
                .unwrap()
                .len()
        })
        .sum();
    points as f64 * 1000.0 / (SEEDS as usize * RUNS) as f64
}

/// Runs after a step at run 200 (of up to 260) until the detector, fed run by run, names a
/// change point within ±2 of it; `None` for steps not named by then.
fn named_after(step: f64, seed: u64, cfg: &ChangePointConfig) -> Option<usize> {
    let xs = series::step(seed, 260, 200, 100.0, 100.0 + step, 5.0);
    let mut d = Detector::new(cfg.clone()).unwrap();
    d.extend(xs[..200].iter().copied()).unwrap();
    for (k, &x) in xs[200..].iter().enumerate() {
        let cps = d.push(x).unwrap();
        if cps.iter().any(|c| c.index.abs_diff(200) <= 2) {
            return Some(k);
        }
    }
    None
}

fn main() {
    println!("## Time per new run (window 50, p 0.001; 1,000 new runs each)\n");
    println!("| runs in the series | per new run, median | p95 | max | whole history from nothing | change points |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in [1_000, 10_000] {
        timing(n);
    }

    println!("\n## Change points on noise only (200 series of 500 runs, sd 5 %)\n");
    println!("| setting | false change points per 1,000 runs |");
    println!("| --- | --- |");
    let settings = [
        (
            "window 50, p 0.001 (Otava's defaults)",
            ChangePointConfig::default(),
        ),
        (
            "window 50, p 0.001, min magnitude 5 %",
            ChangePointConfig {
                min_magnitude: 0.05,
                ..Default::default()
            },
        ),
        (
            "window 50, p 0.0001",
            ChangePointConfig {
                max_p_value: 0.0001,
                ..Default::default()
            },
        ),
        (
            "window 50, p 0.001, Otava-compatible",
            ChangePointConfig {
                otava_compatible: true,
                ..Default::default()
            },
        ),
    ];
    for (name, cfg) in &settings {
        println!("| {name} | {:.2} |", false_points(cfg));
    }

    println!("\n## Runs after a step until the detector names it (run by run, 200 seeds)\n");
    println!("| setting | step | named within 60 runs | median runs after | 90th percentile |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, cfg) in [&settings[0], &settings[2]] {
        for step in [15.0, 10.0] {
            let mut after: Vec<usize> =
                (0..200).filter_map(|s| named_after(step, s, cfg)).collect();
            after.sort();
            let pick = |q: f64| {
                after
                    .get(((after.len().max(1) - 1) as f64 * q).round() as usize)
                    .copied()
                    .unwrap_or(0)
            };
            println!(
                "| {name} | +{step:.0} % ({:.0} sd) | {} of 200 | {} | {} |",
                step / 5.0,
                after.len(),
                pick(0.5),
                pick(0.9)
            );
        }
    }

    println!("\n## Per-run gate (5 % log-normal noise, tolerance 10 %, α 0.01, 200 histories)\n");
    println!("| method | K | false alarms (noise, 60 runs) | step +20 %: flagged | mean runs until flagged | step +12 %: flagged | mean runs |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let rule = MetricRule::latency(10.0);
    for method in [
        Method::Student,
        Method::ZScore,
        Method::Robust,
        Method::Auto,
    ] {
        for k in [5, 10, 20] {
            let cfg = GateConfig {
                method,
                window: k,
                ..GateConfig::default()
            };
            let noise = simulate(&cfg, &rule, &Scenario::noise());
            let big = simulate(&cfg, &rule, &Scenario::step(0.2));
            let small = simulate(&cfg, &rule, &Scenario::step(0.12));
            println!(
                "| {method:?} | {k} | {:.2} % | {} | {:.2} | {} | {:.2} |",
                noise.false_alarm_rate() * 100.0,
                big.flagged,
                big.mean_delay(),
                small.flagged,
                small.mean_delay(),
            );
        }
    }
}
