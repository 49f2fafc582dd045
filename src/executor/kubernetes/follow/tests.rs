use super::*;
use serde_json::json;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap_or_default()
}

fn k6(name: &str, job: &str, ts: &str, status: serde_json::Value) -> Pod {
    pod(json!({
        "metadata": {"name": name, "creationTimestamp": ts, "labels": {"job-name": job, "k6_cr": "t"}},
        "status": status
    }))
}

fn running() -> serde_json::Value {
    json!({"phase": "Running", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]})
}

fn ended(code: i32) -> serde_json::Value {
    json!({"phase": if code == 0 {"Succeeded"} else {"Failed"}, "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "finishedAt": "2026-11-23T10:00:00Z"}}}]})
}

fn waiting(reason: &str, message: &str) -> serde_json::Value {
    json!({"phase": "Pending", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}}}]})
}

const T0: &str = "2026-11-23T10:00:00Z";

#[test]
fn exit_codes_oom_and_eviction() {
    let done = k6("t-1-abc", "t-1", T0, ended(99));
    assert_eq!(runner_index(&done, "t"), Some(1));
    assert!(matches!(
        runner_state(&done),
        RunnerState::Ended {
            exit_code: Some(99),
            reason: None,
            finished_at: Some(_)
        }
    ));
    let oom = pod(json!({
        "metadata": {"name": "t-2-x", "labels": {"job-name": "t-2"}},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
    }));
    assert_eq!(
        runner_state(&oom),
        RunnerState::Ended {
            exit_code: Some(137),
            reason: Some("OOMKilled".into()),
            finished_at: None
        }
    );
    let evicted = pod(json!({
        "metadata": {"name": "t-3-x"},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}
    }));
    assert_eq!(runner_index(&evicted, "t"), Some(3));
    assert_eq!(
        runner_state(&evicted),
        RunnerState::Ended {
            exit_code: None,
            reason: Some("Evicted: low on memory".into()),
            finished_at: None
        }
    );
    // Another TestRun's pods (a name sharing the prefix) are not this run's runners.
    assert_eq!(runner_index(&done, "t-1"), None);
}

#[test]
fn roles_by_job_name() {
    let init = k6("t-initializer-x", "t-initializer", T0, running());
    let start = k6("t-starter-x", "t-starter", T0, running());
    let r = k6("t-12-x", "t-12", T0, running());
    assert_eq!(role(&init, "t"), Some(Role::Initializer));
    assert_eq!(role(&start, "t"), Some(Role::Starter));
    assert_eq!(role(&r, "t"), Some(Role::Runner(12)));
    assert_eq!(role(&k6("t-0-x", "t-0", T0, running()), "t"), None);
}

#[test]
fn paused_runners_are_not_work_until_the_starter_succeeded() {
    let all = [
        k6("t-initializer-a", "t-initializer", T0, ended(0)),
        k6("t-1-a", "t-1", T0, running()),
        k6("t-2-a", "t-2", T0, running()),
    ];
    let pods = run_pods(all.iter(), "t");
    assert!(
        !working(Some("created"), &pods),
        "paused runners do nothing"
    );
    // The operator sets `started` as it creates the starter Job: still paused.
    assert!(!working(Some("started"), &pods));
    let (why, _) = stall_cause(Some("started"), &pods, 2);
    assert!(
        why.contains("paused") && why.contains("no starter"),
        "{why}"
    );

    let mut with_starter = all.to_vec();
    with_starter.push(k6(
        "t-starter-a",
        "t-starter",
        T0,
        waiting("ImagePullBackOff", "Back-off pulling image \"ghcr.io/x\""),
    ));
    let pods = run_pods(with_starter.iter(), "t");
    assert!(!working(Some("started"), &pods));
    let (why, _) = stall_cause(Some("started"), &pods, 2);
    assert!(
        why.contains("starter pod t-starter-a: ImagePullBackOff"),
        "{why}"
    );
    // Pull errors alternate without progress.
    let k1 = progress_key(Some("started"), &pods);
    with_starter[3] = k6(
        "t-starter-a",
        "t-starter",
        T0,
        waiting("ErrImagePull", "pull failed"),
    );
    let pods = run_pods(with_starter.iter(), "t");
    assert_eq!(k1, progress_key(Some("started"), &pods));

    with_starter[3] = k6("t-starter-a", "t-starter", T0, ended(0));
    let pods = run_pods(with_starter.iter(), "t");
    assert!(working(Some("started"), &pods), "resumed runners work");
}

#[test]
fn stall_causes_name_the_pod_and_the_reason() {
    let unsched = pod(json!({
        "metadata": {"name": "t-3-q", "labels": {"job-name": "t-3"}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 Insufficient cpu."}]}
    }));
    let all = [
        k6("t-1-a", "t-1", T0, running()),
        k6("t-2-a", "t-2", T0, running()),
        unsched,
    ];
    let pods = run_pods(all.iter(), "t");
    let (why, ask) = stall_cause(Some("created"), &pods, 3);
    assert!(
        why.contains(
            "runner 3 pod t-3-q: Unschedulable: 0/2 nodes are available: 2 Insufficient cpu."
        ),
        "{why}"
    );
    assert!(ask.is_empty());
    let init = [k6(
        "t-initializer-a",
        "t-initializer",
        T0,
        waiting("ContainerCreating", ""),
    )];
    let pods = run_pods(init.iter(), "t");
    let (why, ask) = stall_cause(Some("initialization"), &pods, 1);
    assert!(why.contains("initializer pod t-initializer-a"), "{why}");
    assert_eq!(ask, vec!["t-initializer-a".to_string()], "events explain");
    let secret = [k6(
        "t-initializer-a",
        "t-initializer",
        T0,
        waiting("CreateContainerConfigError", "secret \"creds\" not found"),
    )];
    let pods = run_pods(secret.iter(), "t");
    let (why, _) = stall_cause(Some("initialization"), &pods, 1);
    assert!(
        why.contains("CreateContainerConfigError: secret \"creds\" not found"),
        "{why}"
    );
    let crashed = [
        k6("t-1-a", "t-1", T0, ended(107)),
        k6("t-2-a", "t-2", T0, running()),
    ];
    let pods = run_pods(crashed.iter(), "t");
    let (why, _) = stall_cause(Some("created"), &pods, 2);
    assert!(
        why.contains("runner 1 pod t-1-a ended (exit code 107) before"),
        "{why}"
    );
    let none = RunPods::default();
    assert!(stall_cause(None, &none, 1).0.contains("has not taken up"));
}

#[test]
fn the_error_stage_is_explained_by_the_initializer() {
    let failed = [k6("t-initializer-a", "t-initializer", T0, ended(1))];
    let pods = run_pods(failed.iter(), "t");
    let log =
        "time=\"…\" level=error msg=\"Error: boom in init\\n\\tat file:///test/script.js:1:7\"\n";
    let why = error_cause(None, &pods, Some(log), 1);
    assert!(
        why.contains("initializer pod t-initializer-a failed (exit code 1)")
            && why.contains("boom in init"),
        "{why}"
    );
    let dash = "sh: 1: Syntax error: \"(\" unexpected\n";
    assert!(error_cause(None, &pods, Some(dash), 1).contains("Syntax error"));
    let ok = [k6("t-initializer-a", "t-initializer", T0, ended(0))];
    let pods = run_pods(ok.iter(), "t");
    let inspect = "time=\"…\" level=warning msg=\"x\"\n{\n  \"maxVUs\": 2,\n  \"totalDuration\": \"32s\"\n}\n";
    let why = error_cause(None, &pods, Some(inspect), 3);
    assert!(
        why.contains("parallelism 3") && why.contains("2 VUs"),
        "{why}"
    );
}
