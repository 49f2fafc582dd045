//! The health checks the README gives for PerfTest mirrors, run by real interpreters on the
//! mirrors perfsync writes on the Kubernetes ground: Argo CD's Lua check
//! (`examples/health/argocd-health.lua`, Lua 5.4 with cjson as Argo CD's gopher-lua reads it)
//! and Flux's `healthCheckExprs` (`examples/health/flux-kustomization.yaml`, evaluated by a
//! CEL implementation, cel-python, in Flux's order: inProgress, failed, current).

mod support;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use support::daemon::*;
use support::kube_api::Coll;
use support::kube_ground::*;
use support::parts::*;
use support::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/health");

fn run_with_stdin(cmd: &mut Command, input: &str) -> Option<(bool, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr),
    ))
}

/// Argo CD's verdict on `obj`.
fn argocd(obj: &Value) -> String {
    let harness = format!(
        "local cjson = require('cjson')\nobj = cjson.decode(io.read('a'))\nlocal hs = dofile('{EXAMPLES}/argocd-health.lua')\nio.write(hs.status)\n"
    );
    let (ok, out) = run_with_stdin(
        Command::new("lua5.4").args(["-e", &harness]),
        &obj.to_string(),
    )
    .expect("lua5.4 runs");
    assert!(ok, "{out}");
    out
}

/// Flux's verdict on `obj`: the first of inProgress, failed, current that holds.
fn flux(obj: &Value) -> String {
    let k: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{EXAMPLES}/flux-kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let exprs = &k["spec"]["healthCheckExprs"][0];
    assert_eq!(exprs["kind"], "PerfTest");
    for verdict in ["inProgress", "failed", "current"] {
        let expr = exprs[verdict].as_str().unwrap();
        let (holds, out) = run_with_stdin(
            Command::new("python3").args(["-m", "celpy", "-p", "jq", "-b", expr]),
            &obj.to_string(),
        )
        .expect("python3 runs");
        assert!(
            out.starts_with("true") || out.starts_with("false"),
            "{expr}: {out}"
        );
        if holds {
            return verdict.to_string();
        }
    }
    "unknown".into()
}

fn tools() -> bool {
    let lua = Command::new("lua5.4")
        .args(["-e", "require('cjson')"])
        .output()
        .is_ok_and(|o| o.status.success());
    let cel = Command::new("python3")
        .args(["-c", "import celpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(lua && cel) {
        eprintln!(
            "SKIPPED: needs lua5.4 with lua-cjson and cel-python (scripts/setup.sh installs them)"
        );
    }
    lua && cel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn argocd_and_flux_read_a_running_a_passed_a_failed_and_an_invalid_test() {
    if !k6_available() || !tools() {
        return;
    }
    let g = ground().await;
    let port = free_port();
    let cfg = g.config("a", port, "");
    let d = g.start(&cfg, port);
    g.baseline().await;
    let t = g.target;
    let mut all = files(
        &Spec {
            duration: "4s",
            ..Spec::new("passes")
        },
        t,
        SCRIPT,
    );
    all.extend(files(
        &Spec {
            threshold: "p(95)<0",
            ..Spec::new("fails")
        },
        t,
        SCRIPT,
    ));
    let head = g.push(&all, "two tests");
    github_push(d.addr, SECRET, &head).await;
    let mirror = |name: &str| {
        g.api
            .store
            .get(&Coll::new("perfsync.dev", "perftests"), NS, name)
    };
    let running = wait_for("a mirror of a running test", 60, || async {
        mirror("passes").filter(|m| {
            m["status"]["conditions"]
                .to_string()
                .contains("RunInProgress")
        })
    })
    .await;
    assert_eq!(
        (argocd(&running).as_str(), flux(&running).as_str()),
        ("Progressing", "inProgress"),
        "{running}"
    );

    let passed = wait_for("the passed run on the mirror", 60, || async {
        mirror("passes").filter(|m| m["status"]["lastResult"] == "succeeded")
    })
    .await;
    assert_eq!(
        (argocd(&passed).as_str(), flux(&passed).as_str()),
        ("Healthy", "current"),
        "{passed}"
    );
    let failed = wait_for("the failed run on the mirror", 60, || async {
        mirror("fails").filter(|m| m["status"]["lastResult"] == "failed")
    })
    .await;
    assert_eq!(
        (argocd(&failed).as_str(), flux(&failed).as_str()),
        ("Degraded", "failed"),
        "{failed}"
    );

    // The spec broken in the repository: not ready, whatever its last run said.
    let head = g.push(
        &[(
            "tests/passes/perftest.yaml".to_string(),
            Some("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: passes\nspec:\n  script: script.js\n".to_string()),
        )],
        "break passes",
    );
    github_push(d.addr, SECRET, &head).await;
    let invalid = wait_for("the invalid spec on the mirror", 60, || async {
        mirror("passes").filter(|m| {
            m["status"]["conditions"]
                .to_string()
                .contains("\"Invalid\"")
        })
    })
    .await;
    assert_eq!(
        (argocd(&invalid).as_str(), flux(&invalid).as_str()),
        ("Degraded", "failed"),
        "{invalid}"
    );

    // The Argo CD ConfigMap example carries exactly the script tested here.
    let cm: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{EXAMPLES}/argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cm["data"]["resource.customizations.health.perfsync.dev_PerfTest"].as_str(),
        Some(
            std::fs::read_to_string(format!("{EXAMPLES}/argocd-health.lua"))
                .unwrap()
                .as_str()
        )
    );
}
