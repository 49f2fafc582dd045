//! Generates large test repositories for the benchmarks.

use std::fmt::Write as _;
use std::path::Path;

/// A realistic 40-line k6 script for test `i`.
pub fn script(i: usize) -> String {
    let mut s = String::from("import http from 'k6/http';\nimport { check, sleep, group } from 'k6';\nimport { Trend } from 'k6/metrics';\n\n");
    let _ = writeln!(
        s,
        "const BASE = __ENV.BASE_URL || 'http://127.0.0.1:18080';"
    );
    let _ = writeln!(s, "const latency = new Trend('endpoint_{i}_latency');\n");
    s.push_str("export default function () {\n");
    for step in 0..7 {
        let _ = writeln!(s, "  group('step {step}', () => {{");
        let _ = writeln!(
            s,
            "    const res = http.get(`${{BASE}}/api/items/{i}?step={step}`);"
        );
        let _ = writeln!(
            s,
            "    check(res, {{ 'status is 200': (r) => r.status === 200 }});"
        );
        let _ = writeln!(s, "    latency.add(res.timings.duration);");
        let _ = writeln!(s, "  }});");
    }
    s.push_str("  sleep(0.1);\n}\n");
    s
}

pub fn spec(i: usize) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: test-{i}\n  labels: {{team: team-{}}}\nspec:\n  description: Generated load test number {i}\n  script: script.js\n  targets:\n    - http://127.0.0.1:18080\n  load:\n    stages:\n      - {{duration: 30s, target: 10}}\n      - {{duration: 1m, target: 20}}\n  thresholds:\n    http_req_duration: [\"p(95)<500\"]\n    http_req_failed: [\"rate<0.01\"]\n  env:\n    BASE_URL: http://127.0.0.1:18080\n  tags: {{service: svc-{}}}\n  timeout: 10m\n",
        i % 20,
        i % 50
    )
}

/// Writes `count` tests under `root/tests/group-NN/test-i/`.
pub fn write_repo(root: &Path, count: usize) -> std::io::Result<()> {
    for i in 0..count {
        let dir = root.join(format!("tests/group-{:02}/test-{i}", i % 100));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("perftest.yaml"), spec(i))?;
        std::fs::write(dir.join("script.js"), script(i))?;
    }
    std::fs::write(
        root.join("perfsync.yaml"),
        "policy:\n  allowedTargets: [http://127.0.0.1]\n",
    )?;
    Ok(())
}
