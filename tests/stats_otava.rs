//! Agreement with Apache Otava: the same generated series through perfsync's detector and
//! through Otava's `compute_change_points` (`scripts/otava_compare.py`), same parameters.
//! Skips, saying so, when Otava is not installed (`pip install apache-otava==0.8.0`).

#[path = "support/series.rs"]
mod series;

use perfsync::results::stats::{change_points, ChangePointConfig};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

/// The shapes compared, `SEEDS` of each, 200 values, noise sd 5 around 100.
const SEEDS: u64 = 40;

fn suite() -> Vec<(&'static str, Vec<f64>)> {
    let mut out = Vec::new();
    for seed in 0..SEEDS {
        let at = 60 + (seed as usize * 7) % 80;
        out.push(("noise", series::noise(seed, 200, 100.0, 5.0)));
        out.push(("step up", series::step(seed, 200, at, 100.0, 112.0, 5.0)));
        out.push(("step down", series::step(seed, 200, at, 100.0, 90.0, 5.0)));
        let two = series::generate(
            seed,
            200,
            |i| match i {
                0..70 => 100.0,
                70..140 => 115.0,
                _ => 105.0,
            },
            |_| 5.0,
        );
        out.push(("two steps", two));
        out.push((
            "drift",
            series::drift(seed, 200, 50, 150, 100.0, 120.0, 3.0),
        ));
        out.push((
            "variance",
            series::variance_change(seed, 200, at, 100.0, 2.0, 10.0),
        ));
        out.push(("outlier", series::outlier(seed, 200, at, 100.0, 5.0, 250.0)));
    }
    out
}

/// Otava's change points for each series, or `None` (with the reason printed) when it
/// cannot be run here.
fn otava(series: &[Vec<f64>], cfg: &ChangePointConfig) -> Option<Vec<Vec<usize>>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/otava_compare.py");
    let mut child = match Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("SKIPPED: python3 cannot be started ({e}); Otava agreement not measured");
            return None;
        }
    };
    let request = json!({
        "series": series,
        "window": cfg.window,
        "maxPValue": cfg.max_p_value,
        "minMagnitude": cfg.min_magnitude,
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        println!(
            "SKIPPED: {}; Otava agreement not measured",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "otava_compare.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("Otava {}", answer["otava"]);
    Some(serde_json::from_value(answer["changePoints"].clone()).unwrap())
}

/// Points of `a` with a point of `b` within `tol`.
fn matched(a: &[usize], b: &[usize], tol: usize) -> usize {
    a.iter()
        .filter(|&&i| b.iter().any(|&j| i.abs_diff(j) <= tol))
        .count()
}

#[derive(Default)]
struct Tally {
    series: usize,
    identical: usize,
    ours: usize,
    theirs: usize,
    theirs_exact: usize,
    theirs_near: usize,
    ours_exact: usize,
    ours_near: usize,
}

impl Tally {
    fn add(&mut self, ours: &[usize], theirs: &[usize]) {
        self.series += 1;
        self.identical += usize::from(ours == theirs);
        self.ours += ours.len();
        self.theirs += theirs.len();
        self.theirs_exact += matched(theirs, ours, 0);
        self.theirs_near += matched(theirs, ours, 1);
        self.ours_exact += matched(ours, theirs, 0);
        self.ours_near += matched(ours, theirs, 1);
    }
    fn pct(a: usize, b: usize) -> f64 {
        if b == 0 {
            100.0
        } else {
            a as f64 * 100.0 / b as f64
        }
    }
    fn line(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {:.1} % | {} / {} | {:.1} % | {:.1} % | {:.1} % | {:.1} % |",
            self.series,
            Self::pct(self.identical, self.series),
            self.ours,
            self.theirs,
            Self::pct(self.theirs_exact, self.theirs),
            Self::pct(self.theirs_near, self.theirs),
            Self::pct(self.ours_exact, self.ours),
            Self::pct(self.ours_near, self.ours),
        )
    }
}

/// Our change points against Otava's for every series; prints the table.
fn compare(suite: &[(&str, Vec<f64>)], theirs: &[Vec<usize>], cfg: &ChangePointConfig) -> Tally {
    let mut total = Tally::default();
    let mut by_shape: Vec<(&str, Tally)> = Vec::new();
    for ((shape, xs), theirs) in suite.iter().zip(theirs) {
        let ours: Vec<usize> = change_points(xs, cfg)
            .unwrap()
            .into_iter()
            .map(|c| c.index)
            .collect();
        total.add(&ours, theirs);
        match by_shape.iter_mut().find(|(s, _)| s == shape) {
            Some((_, t)) => t.add(&ours, theirs),
            None => {
                let mut t = Tally::default();
                t.add(&ours, theirs);
                by_shape.push((shape, t));
            }
        }
    }
    println!("\n{cfg:?}");
    println!("| shape | series | identical | points ours / Otava | Otava's found exactly | ±1 | ours in Otava's exactly | ±1 |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (shape, t) in &by_shape {
        println!("{}", t.line(shape));
    }
    println!("{}", total.line("all"));
    total
}

#[test]
fn change_points_agree_with_otava() {
    let suite = suite();
    let values: Vec<Vec<f64>> = suite.iter().map(|(_, v)| v.clone()).collect();
    let settings = [
        ChangePointConfig::default(),
        ChangePointConfig {
            window: 30,
            max_p_value: 0.001,
            min_magnitude: 0.05,
            ..Default::default()
        },
    ];
    for cfg in settings {
        let Some(theirs) = otava(&values, &cfg) else {
            return;
        };
        assert_eq!(theirs.len(), suite.len());
        // Same arithmetic as Otava: the same points, series for series.
        let compatible = ChangePointConfig {
            otava_compatible: true,
            ..cfg.clone()
        };
        let same = compare(&suite, &theirs, &compatible);
        assert!(
            same.identical * 100 >= same.series * 99,
            "otava-compatible mode differs from Otava on {} of {} series",
            same.series - same.identical,
            same.series
        );
        // Our corrected test and merge: close, and never far off.
        let ours = compare(&suite, &theirs, &cfg);
        let near = Tally::pct(ours.theirs_near, ours.theirs);
        let near_back = Tally::pct(ours.ours_near, ours.ours);
        assert!(
            near >= 85.0,
            "only {near:.1} % of Otava's points found within ±1"
        );
        assert!(
            near_back >= 90.0,
            "only {near_back:.1} % of ours are Otava's within ±1"
        );
    }
}
