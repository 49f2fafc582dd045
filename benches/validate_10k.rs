//! `cargo bench --bench validate_10k`: `perfsync validate` on a generated repository of 10,000
//! tests (spec + 40-line script each), wall time and peak memory, and the same spec files
//! checked by `check-jsonschema` (PyPI) against perfsync's own schema when it is installed.

mod generate;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const TESTS: usize = 10_000;

fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn run(cmd: &mut Command) -> (f64, bool) {
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    let secs = start.elapsed().as_secs_f64();
    (secs, status.is_ok_and(|s| s.success()))
}

fn main() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    generate::write_repo(root, TESTS)?;
    let bin = env!("CARGO_BIN_EXE_perfsync");
    let cfg = root.join("perfsync.yaml");

    // One warm-up so the page cache holds the files for every measured run.
    run(Command::new(bin)
        .args(["validate", "--config"])
        .arg(&cfg)
        .arg(root));
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut cmd = Command::new(bin);
        cmd.args(["validate", "--config"]).arg(&cfg).arg(root);
        let (secs, ok) = run(&mut cmd);
        assert!(ok, "perfsync validate failed on the generated repository");
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let rss = children_peak_rss_mib();
    println!("perfsync validate, {TESTS} tests: median {median:.3} s (min {:.3}, max {:.3}) over 5 runs, peak RSS {rss:.1} MiB", times[0], times[4]);

    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/perftest.schema.json");
    let specs: Vec<_> = (0..TESTS)
        .map(|i| root.join(format!("tests/group-{:02}/test-{i}/perftest.yaml", i % 100)))
        .collect();
    let mut cmd = Command::new("check-jsonschema");
    cmd.arg("--schemafile").arg(&schema).args(&specs);
    match cmd.stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Err(_) => println!(
            "check-jsonschema not installed (pip install check-jsonschema): comparison skipped"
        ),
        Ok(_) => {
            let mut cmd = Command::new("check-jsonschema");
            cmd.arg("--schemafile").arg(&schema).args(&specs);
            let (secs, ok) = run(&mut cmd);
            println!(
                "check-jsonschema, same {TESTS} spec files: {secs:.3} s (valid: {ok}); perfsync is {:.1}x faster",
                secs / median
            );
        }
    }
    Ok(())
}
