//! The kubernetes executor, as `perfsync serve` runs it: against the Kubernetes API test
//! server (through kube's real client and a kubeconfig) and the k6-operator stand-in, which
//! runs the real k6 for every runner. Git remote over git://, PostgreSQL for real.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::daemon::*;
use support::kube_api::{Coll, Faults};
use support::kube_ground::*;
use support::operator::UNPULLABLE;
use support::parts::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_through_the_operator() {
    if !k6_available() {
        return;
    }
    let (g, r) = with_replica("6s", Faults::default()).await;
    let daemon = &r.daemon;
    let t = g.target;
    let mut all = Vec::new();
    all.extend(files(&Spec::new("pass"), t, SCRIPT));
    all.extend(files(
        &Spec {
            threshold: "p(95)<0",
            ..Spec::new("fail")
        },
        t,
        SCRIPT,
    ));
    all.extend(files(
        &Spec::new("boom"),
        t,
        "throw new Error('boom in init');\nexport default function () {}\n",
    ));
    all.extend(files(
        &Spec {
            duration: "60s",
            timeout: "4s",
            ..Spec::new("slow")
        },
        t,
        SCRIPT,
    ));
    all.extend(files(
        &Spec {
            vus: 3,
            parallelism: 3,
            ..Spec::new("wide")
        },
        t,
        SCRIPT,
    ));
    // More runners than VUs: the operator's own `error` stage.
    all.extend(files(
        &Spec {
            vus: 2,
            parallelism: 3,
            ..Spec::new("toowide")
        },
        t,
        SCRIPT,
    ));
    // A bundle of several files: a relative import and a data file next to the script; and a
    // secret the runner gets from a Secret (perfsync reads it only to check and mask it).
    let secret_value = "s3cr3t-value-7c1f";
    g.api.store.create(
        &Coll::new("", "secrets"),
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-credentials"},
            "data": {"token": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret_value)}}),
    ).unwrap();
    all.extend(files(
        &Spec { extra: "  secretEnv:\n    - {name: API_TOKEN, secret: api-credentials, key: token}\n", ..Spec::new("multi") },
        t,
        &format!("import http from 'k6/http';\nimport {{ path }} from './lib/paths.js';\nconst users = JSON.parse(open('./data/users.json'));\nif (__ENV.API_TOKEN !== '{secret_value}') {{ throw new Error('no secret'); }}\nexport default function () {{\n  http.get(`${{__ENV.BASE_URL}}${{path}}?u=${{users[0]}}`);\n}}\n"),
    ));
    all.push((
        "tests/multi/lib/paths.js".into(),
        Some("export const path = '/api/items';\n".into()),
    ));
    all.push((
        "tests/multi/data/users.json".into(),
        Some("[\"ada\"]\n".into()),
    ));
    let head = g.push(&all, "six tests");
    let (status, _) = github_push(daemon.addr, SECRET, &head).await;
    assert_eq!(status, 202);

    let (run, verdict, reason) = g.result("pass", 120).await;
    assert_eq!(
        verdict,
        "succeeded",
        "{reason:?}\n{}",
        g.summary(&run).await
    );
    let s = g.summary(&run).await;
    assert!(
        s["metrics"]["http_reqs"]["values"]["count"]
            .as_f64()
            .unwrap_or(0.0)
            > 5.0,
        "{s}"
    );
    assert_eq!(s["run"]["executor"], "kubernetes");

    let (_, verdict, reason) = g.result("fail", 60).await;
    assert_eq!(verdict, "failed", "{reason:?}");

    // The script throws at init: the initializer fails, the operator's `error` stage says
    // nothing, the initializer pod's log says why.
    let (_, verdict, reason) = g.result("boom", 60).await;
    assert_eq!(
        verdict, "error",
        "a script exception is an error: {reason:?}"
    );
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("initializer pod") && reason.contains("boom in init"),
        "the cause is named: {reason}"
    );

    let (_, verdict, _) = g.result("slow", 60).await;
    assert_eq!(verdict, "timeout");

    let (run, verdict, reason) = g.result("wide", 60).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    let s = g.summary(&run).await;
    let runners = s["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 3, "{s}");
    assert!(
        runners
            .iter()
            .all(|r| r["exitCode"] == 0 && r["summaryFound"] == true),
        "{s}"
    );
    // Three runners, one merged summary: the VUs of all three add up.
    assert_eq!(
        s["metrics"]["vus_max"]["values"]["max"].as_f64(),
        Some(3.0),
        "{}",
        s["metrics"]["vus_max"]
    );

    let (_, verdict, reason) = g.result("multi", 60).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    let (_, verdict, reason) = g.result("toowide", 60).await;
    assert_eq!(verdict, "error");
    assert!(
        reason
            .clone()
            .unwrap_or_default()
            .contains("parallelism 3 is more than the script's 2 VUs"),
        "{reason:?}"
    );
    // The secret's value is nowhere perfsync writes: not its log, not PostgreSQL.
    assert!(!g.logs().contains(secret_value));
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM test_results WHERE summary::text LIKE '%' || $1 || '%'",
    )
    .bind(secret_value)
    .fetch_one(&g.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);

    // Each run ran once: 1 runner each, 3 for `wide`; none for `boom` and `toowide`, which
    // the initializer stopped.
    assert_eq!(*g.op.started.lock().unwrap(), 7);
    // Read, then deleted: no TestRun is left, and no runner pod (cascade).
    wait_for("the TestRuns to be deleted", 20, || async {
        g.objects("k6.io", "testruns", "").is_empty().then_some(())
    })
    .await;
    assert!(g.objects("", "pods", "app=k6").is_empty());
    // Each test's TestRun carried its labels and arguments.
    // The PerfTest mirrors show each verdict, as conditions an Argo CD health check reads.
    let mirror = |name: &str| {
        g.api
            .store
            .get(&Coll::new("perfsync.dev", "perftests"), NS, name)
            .unwrap()
    };
    let pass = wait_for("the mirror's status", 20, || async {
        let m = mirror("pass");
        (m["status"]["lastResult"] == "succeeded").then_some(m)
    })
    .await;
    assert!(
        pass["status"]["p95"].as_str().unwrap_or("").ends_with("ms"),
        "{pass}"
    );
    let cond = |m: &Value, kind: &str| {
        m["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].clone())
    };
    assert_eq!(cond(&pass, "Ready"), Some("True".into()));
    assert_eq!(cond(&pass, "Failed"), Some("False".into()));
    assert_eq!(cond(&pass, "Running"), Some("False".into()));
    assert_eq!(cond(&pass, "Passed"), Some("True".into()), "{pass}");
    let fail = mirror("fail");
    assert_eq!(cond(&fail, "Failed"), Some("True".into()), "{fail}");
    assert_eq!(cond(&fail, "Passed"), Some("False".into()), "{fail}");
    // Events about each mirror, as `kubectl describe perftest` lists them (by the mirror's uid).
    let events_of = |m: &Value| {
        let uid = m["metadata"]["uid"].as_str().unwrap_or("-").to_string();
        g.objects("", "events", "")
            .into_iter()
            .filter(|e| {
                e["involvedObject"]["kind"] == "PerfTest" && e["involvedObject"]["uid"] == uid
            })
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        events_of(&pass),
        BTreeSet::from([
            ("Normal".to_string(), "RunStarted".to_string()),
            ("Normal".to_string(), "RunSucceeded".to_string())
        ])
    );
    assert!(
        events_of(&fail).contains(&("Warning".to_string(), "RunFailed".to_string())),
        "{:?}",
        events_of(&fail)
    );
    assert_eq!(mirror("wide")["spec"]["parallelism"], 3);
    // One immutable ConfigMap per test revision, kept while the revision is current.
    let cms = g.objects("", "configmaps", "app.kubernetes.io/managed-by=perfsync");
    assert_eq!(cms.len(), 7);
    assert!(cms.iter().all(|c| c["immutable"] == true));
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_waits_and_a_deleted_test_is_stopped_and_cleaned_up() {
    if !k6_available() {
        return;
    }
    let (g, r) = with_replica("6s", Faults::default()).await;
    let daemon = &r.daemon;
    let t = g.target;
    g.start_running(daemon, &[("evolving", "6s"), ("doomed", "60s")])
        .await;
    let mut change = files(
        &Spec {
            duration: "2s",
            ..Spec::new("evolving")
        },
        t,
        SCRIPT,
    );
    change.extend(removed("doomed"));
    let head = g.push(&change, "change one, delete the other");
    github_push(daemon.addr, SECRET, &head).await;

    let (_, verdict, reason) = g.result("doomed", 60).await;
    assert_eq!(verdict, "aborted", "{reason:?}");
    let evolving = wait_for("both revisions of evolving to run", 90, || async {
        let r = g.results("evolving").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(
        evolving[0].1, "succeeded",
        "the running revision finished: {evolving:?}"
    );
    assert_eq!(evolving[1].1, "succeeded", "{evolving:?}");
    assert_ne!(evolving[0].0, evolving[1].0);
    // The deleted test: no TestRun, no mirror, no ConfigMap; the old revision's ConfigMap is pruned.
    wait_for("the cluster to be cleaned up", 30, || async {
        let mirrors = g.objects("perfsync.dev", "perftests", "");
        let cms = g.objects("", "configmaps", "app.kubernetes.io/managed-by=perfsync");
        (g.objects("k6.io", "testruns", "").is_empty()
            && mirrors.len() == 1
            && mirrors[0]["metadata"]["name"] == "evolving"
            && cms.len() == 1
            && cms[0]["metadata"]["labels"]["perfsync.dev/test"] == "evolving")
            .then_some(())
    })
    .await;
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_adopts_its_runs_on_restart_and_never_runs_them_twice() {
    if !k6_available() {
        return;
    }
    let (g, r) = with_replica("6s", Faults::default()).await;
    let Replica {
        mut daemon,
        cfg,
        port,
    } = r;
    g.start_running(&daemon, &[("kept", "8s"), ("wiped", "8s")])
        .await;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    // One run's folder is lost with the daemon (an emptyDir state directory): it is found
    // again through its TestRun's labels and annotation.
    let state = g.dir.path().join("a/state/kubernetes");
    let wiped: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wiped-"))
        .collect();
    assert_eq!(wiped.len(), 1);
    std::fs::remove_dir_all(wiped[0].path()).unwrap();
    let _daemon = g.start(&cfg, port);
    for test in ["kept", "wiped"] {
        let (_, verdict, reason) = g.result(test, 90).await;
        assert_eq!(verdict, "succeeded", "{test}: {reason:?}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(g.results("kept").await.len(), 1);
    assert_eq!(g.results("wiped").await.len(), 1);
    assert_eq!(*g.op.started.lock().unwrap(), 2, "no run started twice");
    g.db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_500s_409s_throttling_cut_watches_and_expired_versions() {
    if !k6_available() {
        return;
    }
    let faults = Faults {
        error_500: 0.15,
        throttle_429: 0.05,
        conflict_409: 0.3,
        latency: Duration::from_millis(20),
        cut_watch_after: Some(Duration::from_millis(700)),
    };
    // A lease that outlives a burst of failed renewals on this much injected failure.
    let (g, r) = with_replica("15s", faults).await;
    let daemon = &r.daemon;
    let t = g.target;
    let mut all = files(
        &Spec {
            duration: "4s",
            ..Spec::new("steady")
        },
        t,
        SCRIPT,
    );
    all.extend(files(
        &Spec {
            duration: "4s",
            threshold: "p(95)<0",
            ..Spec::new("strict")
        },
        t,
        SCRIPT,
    ));
    let head = g.push(&all, "two tests");
    github_push(daemon.addr, SECRET, &head).await;
    // Compact the event history now and then: resuming watches get 410 Gone and list again.
    let store = g.api.store.clone();
    let compactor = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(900)).await;
            store.compact();
        }
    });
    let (_, verdict, reason) = g.result("steady", 120).await;
    assert_eq!(verdict, "succeeded", "{reason:?}");
    let (_, verdict, reason) = g.result("strict", 60).await;
    assert_eq!(verdict, "failed", "{reason:?}");
    compactor.abort();
    let injected = *g.api.store.injected.lock().unwrap();
    assert!(injected >= 3, "faults were injected: {injected}");
    assert_eq!(*g.op.started.lock().unwrap(), 2, "each run started once");
    g.db.drop_schema().await;
}

/// The whole loop on the kubernetes executor, with two replicas: a webhook, a run on
/// the operator, the verdict in PostgreSQL and in git, the status page; a runner that never
/// starts; leader election; and the RBAC Role checked against every request made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_with_two_replicas_and_exactly_the_rbac_it_needs() {
    if !k6_available() {
        return;
    }
    let g = ground().await;
    let (pa, pb) = (free_port(), free_port());
    let (ca, cb) = (g.config("a", pa, ""), g.config("b", pb, ""));
    let a = g.start(&ca, pa);
    let b = g.start(&cb, pb);
    g.baseline().await;
    let t = g.target;
    // `goner` names a Secret: the Role's `get` on Secrets is exercised too.
    g.api
        .store
        .create(
            &Coll::new("", "secrets"),
            NS,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-credentials"}, "data": {"token": "dG9r"}}),
        )
        .unwrap();
    let mut all = files(&Spec::new("smoke"), t, SCRIPT);
    all.extend(files(
        &Spec {
            extra: "  secretEnv:\n    - {name: API_TOKEN, secret: api-credentials, key: token}\n",
            ..Spec::new("goner")
        },
        t,
        SCRIPT,
    ));
    let head = g.push(&all, "add tests");
    for d in [&a, &b] {
        let (status, _) = github_push(d.addr, SECRET, &head).await;
        assert_eq!(status, 202);
    }
    let (run, verdict, _) = g.result("smoke", 120).await;
    assert_eq!(verdict, "succeeded");
    g.result("goner", 60).await;
    // Two replicas, one leader: each run started once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*g.op.started.lock().unwrap(), 2);
    let lease = g
        .api
        .store
        .get(
            &Coll::new("coordination.k8s.io", "leases"),
            NS,
            "perfsync-leader",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].as_str().is_some(),
        "{lease}"
    );
    // The results commit on the remote.
    wait_for("the results commit", 60, || async {
        let out = std::process::Command::new("git")
            .args(["show", &format!("main:results/smoke/{run}.json")])
            .current_dir(&g.remote.bare)
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .await;
    // The status page of either replica shows it.
    let (status, html) = http(a.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("smoke") && html.contains("succeeded"),
        "{html}"
    );

    // A runner whose image cannot be pulled: no progress, ended as an error with the reason.
    let stuck = Spec {
        extra: &format!("  runner:\n    image: {UNPULLABLE}\n"),
        ..Spec::new("stuck")
    };
    let mut change = files(&stuck, t, SCRIPT);
    change.extend(files(
        &Spec {
            duration: "1s",
            ..Spec::new("smoke")
        },
        t,
        SCRIPT,
    ));
    change.extend(files(
        &Spec {
            duration: "60s",
            ..Spec::new("slowpoke")
        },
        t,
        SCRIPT,
    ));
    change.extend(removed("goner"));
    // Someone deletes a bundle ConfigMap as soon as perfsync made it: the pods cannot mount
    // it, their status says only `ContainerCreating`, the kubelet's event says why.
    change.extend(files(&Spec::new("unmounted"), t, SCRIPT));
    let store = g.api.store.clone();
    let mut events = store.events.subscribe();
    let deleter = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if e.kind == "ADDED"
                && e.coll == Coll::new("", "configmaps")
                && e.object["metadata"]["labels"]["perfsync.dev/test"] == "unmounted"
            {
                let name = e.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let _ = store.delete(&Coll::new("", "configmaps"), NS, &name, false);
                return;
            }
        }
    });
    let head = g.push(
        &change,
        "stuck runner, new smoke, a slow one, goner removed, one unmounted",
    );
    for d in [&a, &b] {
        github_push(d.addr, SECRET, &head).await;
    }
    let (_, verdict, reason) = g.result("stuck", 90).await;
    assert_eq!(verdict, "error");
    assert!(
        reason
            .clone()
            .unwrap_or_default()
            .contains("ImagePullBackOff"),
        "{reason:?}"
    );
    let (_, verdict, reason) = g.result("unmounted", 90).await;
    deleter.abort();
    assert_eq!(verdict, "error");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("initializer pod") && reason.contains("FailedMount"),
        "{reason}"
    );
    // An abort through the replica that does not lead reaches the run through the cluster.
    let running: String = wait_for("the slow run to run", 60, || async {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM test_runs WHERE test = 'slowpoke' AND status = 'running'",
        )
        .fetch_optional(&g.pool)
        .await
        .ok()
        .flatten();
        id.filter(|_| g.runner_pods_running("slowpoke-") == 1)
    })
    .await;
    let holder = g
        .api
        .store
        .get(
            &Coll::new("coordination.k8s.io", "leases"),
            NS,
            "perfsync-leader",
        )
        .unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let follower = if holder.ends_with(&format!("-{}", a.child.id())) {
        &b
    } else {
        &a
    };
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http(
        follower.addr,
        "POST",
        &format!("/api/v1/runs/{running}/abort"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (_, verdict, reason) = g.result("slowpoke", 60).await;
    assert_eq!(verdict, "aborted");
    assert!(reason.unwrap_or_default().contains("aborted by"));
    wait_for("the second smoke run", 60, || async {
        (g.results("smoke").await.len() == 2).then_some(())
    })
    .await;
    wait_for("goner's mirror and ConfigMaps to go", 30, || async {
        let names: Vec<String> = g
            .objects("", "configmaps", "app.kubernetes.io/managed-by=perfsync")
            .iter()
            .map(|c| {
                c["metadata"]["labels"]["perfsync.dev/test"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        (g.api
            .store
            .get(&Coll::new("perfsync.dev", "perftests"), NS, "goner")
            .is_none()
            && names.len() == 3
            && !names.contains(&"goner".to_string()))
        .then_some(())
    })
    .await;

    // Every request was allowed by the Role in manifests/base/, and the Role grants nothing unused.
    let role: Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/base/role.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for res in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    granted.insert((
                        group.as_str().unwrap().to_string(),
                        res.as_str().unwrap().to_string(),
                        verb.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    let used = g.api.store.accesses();
    let ungranted: Vec<_> = used.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "requests the Role does not allow: {ungranted:?}"
    );
    let denied = g.api.store.denied();
    assert!(denied.is_empty(), "the apiserver refused: {denied:?}");
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the Role grants what perfsync never uses: {unused:?}"
    );
    let by_resource: BTreeMap<String, usize> =
        used.iter().fold(BTreeMap::new(), |mut m, (_, r, _)| {
            *m.entry(r.clone()).or_default() += 1;
            m
        });
    // Secrets are only read by name (a run's own, before it starts), never listed or watched.
    let secret_verbs: BTreeSet<&str> = used
        .iter()
        .filter(|(_, r, _)| r == "secrets")
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert_eq!(secret_verbs, BTreeSet::from(["get"]));
    assert!(by_resource.contains_key("secrets"));
    // A leader stopped cleanly (SIGTERM) gives the lease up rather than let it expire.
    let leases = Coll::new("coordination.k8s.io", "leases");
    let holder = g.api.store.get(&leases, NS, "perfsync-leader").unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (mut leader, other) = if holder.ends_with(&format!("-{}", a.child.id())) {
        (a, b)
    } else {
        (b, a)
    };
    unsafe { libc::kill(leader.child.id() as i32, libc::SIGTERM) };
    assert_eq!(leader.child.wait().unwrap().code(), Some(0));
    let now = g.api.store.get(&leases, NS, "perfsync-leader").unwrap();
    assert_ne!(
        now["spec"]["holderIdentity"].as_str(),
        Some(holder.as_str()),
        "{now}"
    );
    drop(other);
    g.db.drop_schema().await;
}

/// The loop on the kubernetes executor with the daemon killed (SIGKILL) at random moments,
/// twenty times: every run ends recorded exactly once, and no TestRun is ever run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_twenty_times_on_the_kubernetes_executor() {
    if !k6_available() {
        return;
    }
    let (g, r) = with_replica("6s", Faults::default()).await;
    let Replica { daemon, cfg, port } = r;
    drop(daemon);
    // One process at a time here: no lease to wait out after each kill.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "leaderElection: {leaseDuration: 6s}",
        "leaderElection: {enabled: false}",
    );
    std::fs::write(&cfg, text).unwrap();
    let t = g.target;
    for round in 0..20u64 {
        let threshold = format!("p(95)<{}", 2000 + round);
        g.push(
            &files(
                &Spec {
                    duration: "1s",
                    threshold: &threshold,
                    ..Spec::new("chaos")
                },
                t,
                SCRIPT,
            ),
            &format!("round {round}"),
        );
        let d = g.start(&cfg, port);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3000))).await;
        drop(d); // SIGKILL
    }
    let _d = g.start(&cfg, port);
    wait_for("every run to end", 180, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM test_runs WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&g.pool)
        .await
        .ok()?;
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM test_runs")
            .fetch_one(&g.pool)
            .await
            .ok()?;
        (open == 0 && runs > 0 && g.objects("k6.io", "testruns", "").is_empty()).then_some(())
    })
    .await;
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM test_runs ORDER BY created_at")
            .fetch_all(&g.pool)
            .await
            .unwrap();
    let results: Vec<(String,)> = sqlx::query_as("SELECT run_id FROM test_results")
        .fetch_all(&g.pool)
        .await
        .unwrap();
    let expected: Vec<&String> = runs
        .iter()
        .filter(|(_, s)| s != "superseded")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        results.len(),
        expected.len(),
        "one result per run: {runs:?}"
    );
    for id in expected {
        assert!(
            results.iter().any(|(r,)| r == id),
            "{id} has no result: {runs:?}"
        );
    }
    let taken = g.op.testruns.lock().unwrap().clone();
    assert!(
        taken.values().all(|n| *n == 1),
        "a TestRun ran twice: {taken:?}"
    );
    assert!(!taken.is_empty());
    g.db.drop_schema().await;
}
