//! The Kubernetes API test server itself, through kube's real client: the semantics the
//! executor tests lean on (conflicts, server-side apply ownership, status subresource,
//! cascade, watch resume and 410) behave as a real API server's do, and so do its refusals:
//! RBAC (403), validation (422, 400), CRD pruning, field selectors, failed log reads.

#[path = "support/kube_api/mod.rs"]
mod kube_api;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube_api::{Coll, KubeApi};

async fn client(api: &KubeApi, dir: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(api.kubeconfig(dir, "ns")).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "x", "tier": value}},
        "data": {"k": value}
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_conflicts_apply_status_cascade_and_watch_like_a_real_server() {
    let server = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&server, dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "ns");

    let a = cms
        .create(&PostParams::default(), &cm("a", "one"))
        .await
        .unwrap();
    let dup = cms
        .create(&PostParams::default(), &cm("a", "one"))
        .await
        .unwrap_err();
    assert!(matches!(&dup, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));
    cms.create(&PostParams::default(), &cm("b", "two"))
        .await
        .unwrap();
    let listed = cms
        .list(&ListParams::default().labels("app=x,tier!=two"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    // An update carrying a stale resourceVersion is refused.
    let mut fresh = a.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let stale = cms
        .replace("a", &PostParams::default(), &a)
        .await
        .unwrap_err();
    assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));

    // Server-side apply: another manager's field is a conflict unless forced.
    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "mine"}});
    cms.patch("c", &PatchParams::apply("alice"), &Patch::Apply(&body))
        .await
        .unwrap();
    let theirs = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "theirs"}});
    let clash = cms
        .patch("c", &PatchParams::apply("bob"), &Patch::Apply(&theirs))
        .await
        .unwrap_err();
    assert!(matches!(&clash, kube::Error::Api(s) if s.code == 409));
    let forced = cms
        .patch(
            "c",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "theirs");

    // The status subresource: the main resource does not change status, /status changes only it.
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("k6.io", "v1alpha1", "TestRun"),
        "testruns",
    );
    let trs: Api<DynamicObject> = Api::namespaced_with(c.clone(), "ns", &ar);
    let tr = serde_json::json!({"apiVersion": "k6.io/v1alpha1", "kind": "TestRun", "metadata": {"name": "t"}, "spec": {"parallelism": 1}});
    trs.patch("t", &PatchParams::apply("perfsync"), &Patch::Apply(&tr))
        .await
        .unwrap();
    let patched = trs
        .patch_status(
            "t",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"stage": "started"}, "spec": {"parallelism": 9}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["stage"], "started");
    assert_eq!(patched.data["spec"]["parallelism"], 1);
    let ignored = trs
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"stage": "finished"}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.data["status"]["stage"], "started");

    // Deleting an owner deletes what it owns.
    let owner = trs.get("t").await.unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    server.store.create(&Coll::new("batch", "jobs"), "ns", serde_json::json!({"metadata": {"name": "t-1", "ownerReferences": [{"uid": uid, "kind": "TestRun", "name": "t", "apiVersion": "k6.io/v1alpha1"}]}})).unwrap();
    let job_uid = server
        .store
        .get(&Coll::new("batch", "jobs"), "ns", "t-1")
        .unwrap()["metadata"]["uid"]
        .clone();
    server.store.create(&Coll::new("", "pods"), "ns", serde_json::json!({"metadata": {"name": "t-1-x", "ownerReferences": [{"uid": job_uid, "kind": "Job", "name": "t-1", "apiVersion": "batch/v1"}]}})).unwrap();
    trs.delete("t", &DeleteParams::background()).await.unwrap();
    assert!(server
        .store
        .get(&Coll::new("", "pods"), "ns", "t-1-x")
        .is_none());

    // Watch: resumes from a version; a version compacted away is 410 Gone.
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let mut events = Box::pin(
        cms.watch(&WatchParams::default().timeout(2), &rv)
            .await
            .unwrap()
            .into_stream(),
    );
    let first = events.try_next().await.unwrap().unwrap();
    assert!(matches!(first, WatchEvent::Deleted(ref o) if o.metadata.name.as_deref() == Some("b")));
    server.store.compact();
    let gone: Vec<_> = cms
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(gone.first(), Some(Ok(WatchEvent::Error(s))) if s.code == 410),
        "{gone:?}"
    );
    // Without the token, nothing.
    let anon = kube::Client::try_from(kube::Config::new(
        format!("http://{}", server.addr).parse().unwrap(),
    ))
    .unwrap();
    let refused = Api::<ConfigMap>::namespaced(anon, "ns")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(matches!(&refused, kube::Error::Api(s) if s.code == 401));
}

const NS: &str = "perfsync";

fn fixture(file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/k6-operator/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn testruns(c: &kube::Client) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("k6.io", "v1alpha1", "TestRun"),
        "testruns",
    );
    Api::namespaced_with(c.clone(), NS, &ar)
}

fn testrun(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "k6.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name}, "spec": spec})
}

fn role(rules: &str) -> String {
    format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: perfsync\n  namespace: {NS}\nrules:\n{rules}")
}

/// The API error of a failed call: (code, reason, message).
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn triple(g: &str, r: &str, v: &str) -> (String, String, String) {
    (g.into(), r.into(), v.into())
}

#[tokio::test]
async fn rbac_authorizes_each_request_with_the_verb_a_real_apiserver_derives() {
    let server = KubeApi::start().await;
    server.install_crd(&fixture("k6.io_testruns.v1.6.0.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let trs = testruns(&c);
    let body = testrun(
        "t1",
        serde_json::json!({"parallelism": 1, "script": {"configMap": {"name": "cm", "file": "a.js"}}}),
    );
    let apply = PatchParams::apply("perfsync");

    // Granting `patch` alone: the first apply creates, and creating needs `create`.
    server.enforce_role(&role(
        "- apiGroups: [k6.io]\n  resources: [testruns]\n  verbs: [patch]\n",
    ));
    let (code, reason, message) = refused(trs.patch("t1", &apply, &Patch::Apply(&body)).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "testruns.k6.io \"t1\" is forbidden: User \"system:serviceaccount:perfsync:perfsync\" cannot create resource \"testruns\" in API group \"k6.io\" in the namespace \"perfsync\""
    );
    assert!(server
        .store
        .get(&Coll::new("k6.io", "testruns"), NS, "t1")
        .is_none());
    assert!(server
        .store
        .denied()
        .contains(&triple("k6.io", "testruns", "create")));

    // `create` alone is not enough either: the request itself is a `patch`.
    server.enforce_role(&role(
        "- apiGroups: [k6.io]\n  resources: [testruns]\n  verbs: [create]\n",
    ));
    let (code, _, message) = refused(trs.patch("t1", &apply, &Patch::Apply(&body)).await);
    assert_eq!(code, 403);
    assert!(
        message.contains("cannot patch resource \"testruns\""),
        "{message}"
    );

    server.enforce_role(&role(
        "- apiGroups: [k6.io]\n  resources: [testruns]\n  verbs: [patch, create]\n",
    ));
    trs.patch("t1", &apply, &Patch::Apply(&body)).await.unwrap();

    // Applying to an existing object is a `patch`, and `create` is not asked again.
    server.enforce_role(&role(
        "- apiGroups: [k6.io]\n  resources: [testruns]\n  verbs: [patch]\n",
    ));
    let before = server.store.accesses().len();
    trs.patch("t1", &apply, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(server.store.accesses().len(), before);
    // Nor may it read, list, watch or delete what it may patch.
    let (code, _, message) = refused(trs.get("t1").await);
    assert_eq!(code, 403);
    assert!(
        message.starts_with("testruns.k6.io \"t1\" is forbidden"),
        "{message}"
    );
    let (_, _, message) = refused(trs.list(&ListParams::default()).await);
    assert!(message.starts_with("testruns.k6.io is forbidden: User \"system:serviceaccount:perfsync:perfsync\" cannot list resource \"testruns\""), "{message}");
    refused(
        trs.watch(&WatchParams::default().timeout(1), "0")
            .await
            .map(|_| ()),
    );
    refused(
        trs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
    );
    for verb in ["get", "list", "watch", "deletecollection"] {
        assert!(
            server
                .store
                .denied()
                .contains(&triple("k6.io", "testruns", verb)),
            "{verb}: {:?}",
            server.store.denied()
        );
    }

    // A pod's log is `get` on the subresource `pods/log`, not on `pods`.
    server.store.create(&Coll::new("", "pods"), NS, serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "k6", "image": "k6"}]}})).unwrap();
    let log = dir.path().join("p.log");
    std::fs::write(&log, "hello\n").unwrap();
    server.store.set_log(NS, "p", &log);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), NS);
    server.enforce_role(&role(
        "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list]\n",
    ));
    let (code, _, message) = refused(pods.logs("p", &Default::default()).await);
    assert_eq!(code, 403);
    assert!(
        message.contains("cannot get resource \"pods/log\" in API group \"\""),
        "{message}"
    );
    server.enforce_role(&role(
        "- apiGroups: [\"\"]\n  resources: [pods/log]\n  verbs: [get]\n",
    ));
    assert_eq!(
        pods.logs("p", &Default::default()).await.unwrap(),
        "hello\n"
    );
    let (code, ..) = refused(pods.get("p").await);
    assert_eq!(code, 403, "pods/log grants nothing on pods");

    // A Role grants in its own namespace only.
    let other = client_in(&server, dir.path(), "elsewhere").await;
    let (code, _, message) = refused(
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(other, "elsewhere")
            .logs("p", &Default::default())
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.ends_with("in the namespace \"elsewhere\""),
        "{message}"
    );

    // Every request was recorded with the verb RBAC saw, granted or not.
    let asked = server.store.accesses();
    for t in [
        triple("k6.io", "testruns", "patch"),
        triple("k6.io", "testruns", "create"),
        triple("", "pods/log", "get"),
        triple("", "pods", "get"),
    ] {
        assert!(asked.contains(&t), "{t:?} not in {asked:?}");
    }
    assert!(
        server
            .store
            .denied()
            .contains(&triple("k6.io", "testruns", "patch")),
        "the create-only Role refused the patch"
    );
}

async fn client_in(api: &KubeApi, dir: &std::path::Path, ns: &str) -> kube::Client {
    let sub = dir.join(ns);
    std::fs::create_dir_all(&sub).unwrap();
    let kc = kube::config::Kubeconfig::read_from(api.kubeconfig(&sub, ns)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn invalid_objects_are_refused_with_the_real_apiservers_messages() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Pod, Service};
    let server = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let pp = PostParams::default();

    // Label values: at most 63 characters, no spaces.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
    let bad =
        typed(serde_json::json!({"metadata": {"name": "team", "labels": {"team": "QA Team"}}}));
    let (code, reason, message) = refused(cms.create(&pp, &bad).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.starts_with("ConfigMap \"team\" is invalid: metadata.labels: Invalid value: \"QA Team\": a valid label must be an empty string or consist of alphanumeric characters"), "{message}");
    let long = "x".repeat(64);
    let bad = typed(serde_json::json!({"metadata": {"name": "long", "labels": {"run": long}}}));
    let (_, _, message) = refused(cms.create(&pp, &bad).await);
    assert!(
        message.contains("must be no more than 63 characters"),
        "{message}"
    );
    let bad = typed(
        serde_json::json!({"metadata": {"name": "key", "labels": {"perfsync.dev/a b": "x"}}}),
    );
    let (code, _, message) = refused(cms.create(&pp, &bad).await);
    assert_eq!(code, 422);
    assert!(message.contains("name part must consist of"), "{message}");
    let ok = typed(
        serde_json::json!({"metadata": {"name": "fine", "labels": {"perfsync.dev/test": "qa_team-1.2", "empty": ""}}}),
    );
    cms.create(&pp, &ok).await.unwrap();

    // Jobs: the name becomes the pods' `job-name` label, so 63 characters at most.
    let jobs: Api<Job> = Api::namespaced(c.clone(), NS);
    let job = |name: &str, cpu: &str| -> Job {
        typed(
            serde_json::json!({"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"app": "k6"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "k6", "image": "grafana/k6",
                "resources": {"requests": {"cpu": cpu}}}]}}}}),
        )
    };
    let name64 = format!("run-{}", "a".repeat(60));
    let (code, _, message) = refused(jobs.create(&pp, &job(&name64, "1")).await);
    assert_eq!(code, 422);
    assert!(
        message.starts_with(&format!("Job.batch \"{name64}\" is invalid: ")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "spec.template.labels: Invalid value: \"{name64}\": must be no more than 63 characters"
        )),
        "{message}"
    );
    let name63 = &name64[..63];
    let made = jobs.create(&pp, &job(name63, "500m")).await.unwrap();
    let labels = made
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(labels["job-name"], name63);
    assert_eq!(labels["app"], "k6");

    // Quantities: a Pod whose quantity does not parse cannot even be decoded (400); a
    // negative one, or requests above limits, is invalid (422).
    let (code, reason, message) = refused(jobs.create(&pp, &job("cores", "2 cores")).await);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(message.starts_with("Job in version \"v1\" cannot be handled as a Job: quantities must match the regular expression"), "{message}");
    let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
    let pod = |name: &str, resources: serde_json::Value| -> Pod {
        typed(
            serde_json::json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "k6", "image": "grafana/k6", "resources": resources}]}}),
        )
    };
    let (code, ..) = refused(
        pods.create(
            &pp,
            &pod("lots", serde_json::json!({"limits": {"memory": "lots"}})),
        )
        .await,
    );
    assert_eq!(code, 400);
    let (code, _, message) = refused(
        pods.create(
            &pp,
            &pod("neg", serde_json::json!({"requests": {"cpu": "-1"}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains("spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"), "{message}");
    let (code, _, message) = refused(
        pods.create(
            &pp,
            &pod(
                "over",
                serde_json::json!({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
            ),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("must be less than or equal to memory limit of 1Gi"),
        "{message}"
    );
    for (i, q) in ["100m", "1.5", "2Gi", "1e3", "512Mi", "1"]
        .iter()
        .enumerate()
    {
        let p = pod(
            &format!("ok-{i}"),
            serde_json::json!({"requests": {"cpu": q}, "limits": {"cpu": "3Gi"}}),
        );
        pods.create(&pp, &p)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    // Services: DNS-1035 labels, starting with a letter.
    let services: Api<Service> = Api::namespaced(c.clone(), NS);
    let svc = |name: &str| -> Service {
        typed(serde_json::json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 6565}]}}))
    };
    let (code, _, message) = refused(services.create(&pp, &svc("1run-service-1")).await);
    assert_eq!(code, 422);
    assert!(message.starts_with("Service \"1run-service-1\" is invalid: metadata.name: Invalid value: \"1run-service-1\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"), "{message}");
    services.create(&pp, &svc("run-service-1")).await.unwrap();
    // Object names of other kinds are DNS-1123 subdomains.
    let (code, _, message) = refused(
        cms.create(
            &pp,
            &typed(serde_json::json!({"metadata": {"name": "Upper"}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("a lowercase RFC 1123 subdomain must consist of"),
        "{message}"
    );

    // ConfigMaps: data plus binaryData at most 1 MiB, keys and values counted.
    let at_limit = |name: &str, extra: usize| -> ConfigMap {
        typed(
            serde_json::json!({"metadata": {"name": name}, "data": {"k": "v".repeat(1024 * 1024 - 1 + extra)}}),
        )
    };
    let (code, _, message) = refused(cms.create(&pp, &at_limit("big", 1)).await);
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes"
    );
    cms.create(&pp, &at_limit("full", 0)).await.unwrap();
    use base64::Engine;
    let half = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 512 * 1024]);
    let mixed: ConfigMap = typed(serde_json::json!({"metadata": {"name": "mixed"},
        "data": {"a": "v".repeat(512 * 1024)}, "binaryData": {"b": half}}));
    let (code, ..) = refused(cms.create(&pp, &mixed).await);
    assert_eq!(
        code, 422,
        "binaryData counts its decoded bytes and both keys"
    );

    // Immutable ConfigMaps keep their data.
    let frozen: ConfigMap = typed(
        serde_json::json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"k": "v"}}),
    );
    cms.create(&pp, &frozen).await.unwrap();
    let (code, _, message) = refused(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"k": "w"}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{message}"
    );

    // Writes made in-process (the operator stand-in's) are checked the same way.
    let refused_in_process = server.store.create(
        &Coll::new("batch", "jobs"),
        NS,
        serde_json::json!({"metadata": {"name": name64}, "spec": {}}),
    );
    assert!(
        matches!(refused_in_process, Err((422, _))),
        "{refused_in_process:?}"
    );
}

#[tokio::test]
async fn custom_resources_are_pruned_and_validated_against_their_crd() {
    let server = KubeApi::start().await;
    server.install_crd(&fixture("k6.io_testruns.v1.5.0.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let trs = testruns(&c);
    let apply = PatchParams::apply("perfsync");
    let spec = serde_json::json!({
        "parallelism": 2,
        "script": {"configMap": {"name": "cm", "file": "entry.js"}},
        "arguments": "--tag a=b",
        "args": ["--tag", "a=b"],
        "ports": [{"containerPort": 6565}],
        "runner": {"image": "grafana/k6", "metadata": {"labels": {"team": "qa"}},
                   "resources": {"requests": {"cpu": "500m", "memory": 1024}}},
    });
    // v1.5.0 has no `args`: pruned silently, as a real cluster does; the rest is kept.
    let got = trs
        .patch("old", &apply, &Patch::Apply(&testrun("old", spec.clone())))
        .await
        .unwrap();
    assert!(got.data["spec"].get("args").is_none(), "{}", got.data);
    assert_eq!(got.data["spec"]["arguments"], "--tag a=b");
    assert_eq!(
        got.data["spec"]["runner"]["metadata"]["labels"]["team"],
        "qa"
    );
    assert_eq!(
        got.data["spec"]["runner"]["resources"]["requests"]["memory"],
        1024
    );
    // Defaults are filled in.
    assert_eq!(got.data["spec"]["ports"][0]["protocol"], "TCP");
    let stored = server
        .store
        .get(&Coll::new("k6.io", "testruns"), NS, "old")
        .unwrap();
    assert!(stored["spec"].get("args").is_none());

    // v1.6.0 knows `args`.
    server.install_crd(&fixture("k6.io_testruns.v1.6.0.yaml"));
    let got = trs
        .patch("new", &apply, &Patch::Apply(&testrun("new", spec.clone())))
        .await
        .unwrap();
    assert_eq!(
        got.data["spec"]["args"],
        serde_json::json!(["--tag", "a=b"])
    );
    // Unknown fields go under either, and unknown metadata fields too.
    let mut odd = testrun("odd", spec.clone());
    odd["spec"]["runner"]["imageTag"] = serde_json::json!("latest");
    odd["spec"]["bogus"] = serde_json::json!({"x": 1});
    let got = trs
        .create(&PostParams::default(), &typed(odd))
        .await
        .unwrap();
    assert!(
        got.data["spec"].get("bogus").is_none()
            && got.data["spec"]["runner"].get("imageTag").is_none()
    );

    // Invalid ones: 422 naming the field.
    let mut bad = spec.clone();
    bad["parallelism"] = serde_json::json!("x");
    let (code, reason, message) = refused(
        trs.patch("bad", &apply, &Patch::Apply(&testrun("bad", bad)))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(message, "TestRun.k6.io \"bad\" is invalid: spec.parallelism: Invalid value: \"string\": spec.parallelism in body must be of type integer: \"string\"");
    let mut bad = spec.clone();
    bad.as_object_mut().unwrap().remove("script");
    bad["cleanup"] = serde_json::json!("pre");
    bad["runner"]["resources"]["limits"] = serde_json::json!({"cpu": "2 cores"});
    let (code, _, message) = refused(
        trs.patch("bad", &apply, &Patch::Apply(&testrun("bad", bad)))
            .await,
    );
    assert_eq!(code, 422);
    for part in [
        "spec.script: Required value",
        "spec.cleanup: Unsupported value: \"pre\": supported values: \"post\"",
        "spec.runner.resources.limits.cpu: Invalid value: \"2 cores\": spec.runner.resources.limits.cpu in body should match '^(\\+|-)?",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    assert!(trs.get_opt("bad").await.unwrap().is_none());
    // Status is validated too.
    let (code, _, message) = refused(
        trs.patch_status(
            "new",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"stage": "exploded"}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("status.stage: Unsupported value: \"exploded\""),
        "{message}"
    );
}

#[tokio::test]
async fn events_are_listed_and_watched_by_field_selector() {
    use k8s_openapi::api::core::v1::Event;
    let server = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let pods = Coll::new("", "pods");
    for p in ["run-1-abc", "run-2-def"] {
        server.store.create(&pods, NS, serde_json::json!({"metadata": {"name": p}, "spec": {"containers": [{"name": "k6"}]}})).unwrap();
    }
    let events: Api<Event> = Api::namespaced(c.clone(), NS);
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let s = &server.store;
    s.record_event(
        NS,
        "Pod",
        "run-1-abc",
        "Failed",
        "Failed to pull image \"k6:nope\": not found",
        "Warning",
    );
    s.record_event(
        NS,
        "Pod",
        "run-1-abc",
        "BackOff",
        "Back-off pulling image \"k6:nope\"",
        "Normal",
    );
    s.record_event(
        NS,
        "Pod",
        "run-1-abc",
        "BackOff",
        "Back-off pulling image \"k6:nope\"",
        "Normal",
    );
    s.record_event(
        NS,
        "Pod",
        "run-2-def",
        "FailedScheduling",
        "0/3 nodes are available: 3 Insufficient cpu.",
        "Warning",
    );
    s.record_event(
        NS,
        "Job",
        "run-1",
        "SuccessfulCreate",
        "Created pod: run-1-abc",
        "Normal",
    );

    let about = |sel: &str| {
        let events = events.clone();
        let sel = sel.to_string();
        async move {
            events
                .list(&ListParams::default().fields(&sel))
                .await
                .unwrap()
                .items
        }
    };
    let one = about("involvedObject.name=run-1-abc").await;
    assert_eq!(one.len(), 2, "{one:?}");
    let backoff = one
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackOff"))
        .unwrap();
    assert_eq!(backoff.count, Some(2), "the same event again is counted");
    assert_eq!(backoff.involved_object.kind.as_deref(), Some("Pod"));
    assert!(backoff
        .involved_object
        .uid
        .as_deref()
        .is_some_and(|u| u.starts_with("uid-")));
    assert_eq!(
        backoff.source.as_ref().unwrap().component.as_deref(),
        Some("kubelet")
    );
    assert!(backoff.first_timestamp.is_some() && backoff.last_timestamp.is_some());
    let sched = about("involvedObject.kind=Pod,involvedObject.name=run-2-def").await;
    assert_eq!(sched.len(), 1);
    assert_eq!(sched[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        sched[0].source.as_ref().unwrap().component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(about("involvedObject.kind=Job").await.len(), 1);
    assert_eq!(about("involvedObject.kind!=Job").await.len(), 3);
    let name = &one[0].metadata.name.clone().unwrap();
    assert_eq!(about(&format!("metadata.name={name}")).await.len(), 1);
    let (code, _, message) = refused(
        events
            .list(&ListParams::default().fields("spec.nodeName=x"))
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        (400, "field label not supported: spec.nodeName")
    );

    // A watch from before the events sees only the selected ones.
    let seen: Vec<_> = events
        .watch(
            &WatchParams::default()
                .fields("involvedObject.name=run-2-def")
                .timeout(1),
            &rv,
        )
        .await
        .unwrap()
        .try_filter(|e| futures::future::ready(!matches!(e, WatchEvent::Bookmark(_))))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        matches!(&seen[0], WatchEvent::Added(e) if e.reason.as_deref() == Some("FailedScheduling"))
    );
}

#[tokio::test]
async fn pod_logs_answer_as_the_kubelet_lets_them() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::LogParams;
    let server = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
    server.store.create(&Coll::new("", "pods"), NS, serde_json::json!({"metadata": {"name": "run-1-x"}, "spec": {"containers": [{"name": "k6", "image": "grafana/k6"}]}})).unwrap();
    let (code, _, message) = refused(pods.logs("run-1-x", &LogParams::default()).await);
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "container \"k6\" in pod \"run-1-x\" is waiting to start: ContainerCreating"
    );
    let log = dir.path().join("log");
    std::fs::write(&log, "one\ntwo\nthree\nPERFSYNC_SUMMARY {}\n").unwrap();
    server.store.set_log(NS, "run-1-x", &log);
    let read = |lp: LogParams| {
        let pods = pods.clone();
        async move { pods.logs("run-1-x", &lp).await }
    };
    assert_eq!(
        read(LogParams::default()).await.unwrap(),
        "one\ntwo\nthree\nPERFSYNC_SUMMARY {}\n"
    );
    let tail = LogParams {
        tail_lines: Some(2),
        ..LogParams::default()
    };
    assert_eq!(read(tail).await.unwrap(), "three\nPERFSYNC_SUMMARY {}\n");
    let limited = LogParams {
        limit_bytes: Some(6),
        ..LogParams::default()
    };
    assert_eq!(read(limited).await.unwrap(), "one\ntw");
    let both = LogParams {
        tail_lines: Some(1),
        limit_bytes: Some(8),
        ..LogParams::default()
    };
    assert_eq!(read(both).await.unwrap(), "PERFSYNC");
    let named = LogParams {
        container: Some("k6".into()),
        ..LogParams::default()
    };
    assert!(read(named).await.is_ok());
    let wrong = LogParams {
        container: Some("runner".into()),
        ..LogParams::default()
    };
    let (code, _, message) = refused(read(wrong).await);
    assert_eq!(
        (code, message.as_str()),
        (400, "container runner is not valid for pod run-1-x")
    );
    let (code, ..) = refused(pods.logs("gone", &LogParams::default()).await);
    assert_eq!(code, 404);

    // The node went away: the apiserver cannot reach its kubelet.
    server.store.fail_log(NS, "run-1-x", "");
    let (code, reason, message) = refused(read(LogParams::default()).await);
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert_eq!(message, "Get \"https://10.0.0.7:10250/containerLogs/perfsync/run-1-x/k6\": dial tcp 10.0.0.7:10250: connect: no route to host");
    server.store.heal_log(NS, "run-1-x");
    assert!(read(LogParams::default()).await.is_ok());
}

#[tokio::test]
async fn requests_and_open_watches_are_counted() {
    let server = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_in(&server, dir.path(), NS).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
    for i in 0..3 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), "v"))
            .await
            .unwrap();
    }
    cms.list(&ListParams::default()).await.unwrap();
    cms.get("c0").await.unwrap();
    let a = Box::pin(
        cms.watch(&WatchParams::default().timeout(30), "0")
            .await
            .unwrap(),
    );
    let b = Box::pin(
        cms.watch(&WatchParams::default().timeout(30), "0")
            .await
            .unwrap(),
    );
    assert_eq!(server.store.open_watches(), 2);
    drop((a, b));
    let mut open = 2;
    for _ in 0..100 {
        open = server.store.open_watches();
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0, "closed streams stop counting");
    assert_eq!(server.store.max_open_watches(), 2);
    let by_verb = server.store.requests_by_verb();
    let n = |v: &str, r: &str| by_verb.get(&(v.to_string(), r.to_string())).copied();
    assert_eq!(n("create", "configmaps"), Some(3));
    assert_eq!(n("list", "configmaps"), Some(1));
    assert_eq!(n("get", "configmaps"), Some(1));
    assert_eq!(n("watch", "configmaps"), Some(2));
    assert_eq!(
        by_verb.values().sum::<u64>(),
        *server.store.requests.lock().unwrap()
    );
}

#[test]
fn crd_patterns_and_quantities_parse_as_kubernetes_does() {
    use kube_api::{parse_quantity, Regex};
    let q = Regex::new(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$").unwrap();
    for ok in [
        "1", "100m", "1.5", "2Gi", "1e3", "512Mi", ".5", "-1", "+3k", "5.",
    ] {
        assert!(q.is_match(ok), "{ok}");
        assert!(parse_quantity(ok).is_some(), "{ok}");
    }
    for bad in ["2 cores", "lots", "", "1Gb", "1.2.3", "e3", "1 "] {
        assert!(!q.is_match(bad), "{bad}");
        assert!(parse_quantity(bad).is_none(), "{bad}");
    }
    assert_eq!(parse_quantity("100m"), Some(0.1));
    assert_eq!(parse_quantity("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
    assert_eq!(parse_quantity("1e3"), Some(1000.0));
    let r = Regex::new("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$").unwrap();
    assert!(r.is_match("Ready") && r.is_match("a_b:c") && !r.is_match("9x") && !r.is_match("a-"));
    let unanchored = Regex::new("b+c{2,3}").unwrap();
    assert!(unanchored.is_match("abbccc") && !unanchored.is_match("abc"));
    assert!(Regex::new("(a*)*$").unwrap().is_match("aaab"));
    assert!(
        Regex::new("^[^-a]+$").unwrap().is_match("bcd")
            && !Regex::new("^[^-a]+$").unwrap().is_match("b-d")
    );
}
