//! The Kubernetes API test server itself, through kube's real client: the semantics the
//! executor tests lean on (conflicts, server-side apply ownership, status subresource,
//! cascade, watch resume and 410) behave as a real API server's do.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use support::kube_api::{Coll, KubeApi};

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
