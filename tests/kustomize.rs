//! The kustomize overlays in `manifests/overlays/`, rendered by the real `kubectl kustomize`
//! (kustomize v5, what Argo CD and Flux build with): every rendered object is checked against
//! the published schema of its kind (`tests/fixtures/k8s-schemas/`: the Kubernetes 1.33 JSON
//! schemas of the `kubernetes-validate` package and the Argo CD and Flux CRDs), against the
//! rules the apiserver applies in code (names, labels, namespaces) and against the other
//! objects it names; the perfsync config each overlay carries validates with
//! `perfsync validate --config`.

#[allow(dead_code)]
#[path = "support/kube_api/names.rs"]
mod names;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const OVERLAYS: [&str; 5] = ["local", "kubernetes", "prometheus", "argocd", "flux"];
/// The Kubernetes API version the objects are checked against: the one perfsync's client is
/// built for (k8s-openapi, feature v1_33).
const KUBERNETES: &str = "1.33";
const IMAGE_REPO: &str = "ghcr.io/perfsync/perfsync";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl() -> String {
    std::env::var("PERFSYNC_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// `kubectl kustomize manifests/overlays/<overlay>`: its text and its objects.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = root().join("manifests/overlays").join(overlay);
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{} kustomize` ({e}): run scripts/setup.sh",
                kubectl()
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {stderr}",
        dir.display()
    );
    // Deprecated fields (bases, patchesStrategicMerge, commonLabels, …) warn here.
    assert!(
        stderr.trim().is_empty(),
        "kubectl kustomize {} warns: {stderr}",
        dir.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = text
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str::<Value>(d).unwrap())
        .collect();
    (text, docs)
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}
fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}
fn ns(o: &Value) -> Option<&str> {
    o["metadata"]["namespace"].as_str()
}
fn find<'a>(docs: &'a [Value], k: &str, namespace: Option<&str>, n: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|o| kind(o) == k && ns(o) == namespace && name(o) == n)
}
fn the<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|o| kind(o) == k).collect()
}

fn perfsync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_perfsync"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn kubectl_renders_with_kustomize_v5() {
    let out = Command::new(kubectl())
        .args(["version", "--client"])
        .output()
        .unwrap_or_else(|e| panic!("no kubectl ({e}): run scripts/setup.sh"));
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        text.contains("Kustomize Version: v5."),
        "the overlays use kustomize v5 (resources naming folders, patches): {text}"
    );
}

#[test]
fn every_rendered_object_matches_the_published_schema_of_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/k8s-schemas");
    let mut files = Vec::new();
    for overlay in OVERLAYS {
        let (text, docs) = render(overlay);
        assert!(!docs.is_empty(), "{overlay} renders nothing");
        let f = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let out = Command::new("python3")
        .arg(fixtures.join("validate.py"))
        .args(["--kubernetes-version", KUBERNETES, "--crds"])
        .arg(fixtures.join("crds"))
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "kubernetes-validate is not installed: run scripts/setup.sh\n{stderr}"
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("; 0 problems"), "{stdout}");

    // The checker does refuse: an unknown field, a missing required one, an unknown kind.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: y}\nspec:\n  replica: 2\n  template: {}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x, namespace: argocd}\nspec:\n  projekt: default\n  destination: {}\n---\napiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(fixtures.join("validate.py"))
        .args(["--kubernetes-version", KUBERNETES, "--crds"])
        .arg(fixtures.join("crds"))
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for expected in [
        "Deployment/x: spec: Additional properties are not allowed ('replica' was unexpected)",
        "Deployment/x: spec: 'selector' is a required property",
        "Application/x: spec: 'project' is a required property",
        "'projekt' was unexpected",
        "Gizmo/x: no schema for this kind",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}

/// Kinds with no namespace.
const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

#[test]
fn names_labels_and_namespaces_are_what_the_apiserver_accepts() {
    for overlay in OVERLAYS {
        let (_, docs) = render(overlay);
        let namespaces: BTreeSet<&str> = the(&docs, "Namespace").into_iter().map(name).collect();
        let mut seen = BTreeSet::new();
        for o in &docs {
            let (k, n) = (kind(o), name(o));
            let what = format!("{overlay}: {k}/{n}");
            assert!(o["apiVersion"].is_string() && !k.is_empty(), "{what}");
            assert!(
                seen.insert((k, ns(o), n)),
                "{what} is rendered twice in its namespace"
            );
            let errors = match k {
                "Service" => names::name_errors("services", n),
                "Namespace" => names::name_errors("namespaces", n),
                // Role and binding names are path segments.
                "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
                    if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('%') {
                        vec!["may not be '.', '..' or contain '/' or '%'".to_string()]
                    } else {
                        vec![]
                    }
                }
                "CustomResourceDefinition" => {
                    let want = format!(
                        "{}.{}",
                        o["spec"]["names"]["plural"].as_str().unwrap(),
                        o["spec"]["group"].as_str().unwrap()
                    );
                    if n == want {
                        vec![]
                    } else {
                        vec![format!(
                            "must be spec.names.plural+\".\"+spec.group: {want}"
                        )]
                    }
                }
                _ => names::name_errors("", n),
            };
            assert!(errors.is_empty(), "{what}: name: {errors:?}");
            for field in ["labels", "annotations"] {
                if let Some(m) = o["metadata"][field].as_object() {
                    for (key, value) in m {
                        let e = names::qualified_name(key);
                        assert!(e.is_empty(), "{what}: {field} key {key}: {e:?}");
                        if field == "labels" {
                            let e = names::label_value(value.as_str().unwrap());
                            assert!(e.is_empty(), "{what}: label {key}={value}: {e:?}");
                        }
                    }
                }
            }
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/name"], "perfsync",
                "{what}: every object says it is perfsync's"
            );
            if CLUSTER_SCOPED.contains(&k) {
                assert!(ns(o).is_none(), "{what} is cluster-scoped: no namespace");
                continue;
            }
            let namespace = ns(o).unwrap_or_else(|| panic!("{what} names no namespace"));
            let e = names::name_errors("namespaces", namespace);
            assert!(e.is_empty(), "{what}: namespace {namespace}: {e:?}");
            // The namespaces of the install itself, or the GitOps tool's own.
            let external = match overlay {
                "argocd" => vec!["argocd"],
                "flux" => vec!["flux-system"],
                _ => vec![],
            };
            assert!(
                namespaces.contains(namespace) || external.contains(&namespace),
                "{what}: namespace {namespace} is neither rendered nor the GitOps tool's"
            );
            // Label selectors hold labels too.
            for sel in [
                &o["spec"]["selector"]["matchLabels"],
                &o["spec"]["selector"],
            ] {
                if let Some(m) = sel.as_object() {
                    for (key, value) in m {
                        if let Some(v) = value.as_str() {
                            assert!(names::qualified_name(key).is_empty(), "{what}: {key}");
                            assert!(names::label_value(v).is_empty(), "{what}: {key}={v}");
                        }
                    }
                }
            }
        }
    }
}

/// The non-root user the image runs as (`USER` in the Containerfile).
fn image_user() -> u64 {
    let cf = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    let line = cf
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    line[5..].split(':').next().unwrap().trim().parse().unwrap()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn the_daemon_overlays_hold_together() {
    let version = env!("CARGO_PKG_VERSION");
    for overlay in ["local", "kubernetes", "prometheus"] {
        let (_, docs) = render(overlay);
        let d = the(&docs, "Deployment");
        assert_eq!(d.len(), 1, "{overlay}");
        let d = d[0];
        let dns = ns(d);
        let pod = &d["spec"]["template"];
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        // The image the build produces (scripts/image.sh tags it; tests/image.rs builds it).
        assert_eq!(c["image"], format!("{IMAGE_REPO}:{version}"), "{overlay}");
        assert_eq!(c["args"][0], "serve");
        assert!(
            labels_match(
                &d["spec"]["selector"]["matchLabels"],
                &pod["metadata"]["labels"]
            ),
            "{overlay}: the Deployment selects its own pods"
        );
        // Non-root, as the image's user; read-only root with the state dir and /tmp mounted.
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            spec["securityContext"]["runAsUser"],
            image_user(),
            "{overlay}"
        );
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        let volumes: BTreeMap<&str, &Value> = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap(),
                    m["name"].as_str().unwrap(),
                )
            })
            .collect();
        for (path, vol) in &mounts {
            assert!(volumes.contains_key(vol), "{overlay}: {path} mounts {vol}");
        }
        for path in ["/var/lib/perfsync", "/tmp", "/etc/perfsync"] {
            assert!(mounts.contains_key(path), "{overlay}: {path} is mounted");
        }
        // The config volume names a ConfigMap that is rendered and holds perfsync.yaml, the
        // file `--config` reads.
        let cm_name = volumes[mounts["/etc/perfsync"]]["configMap"]["name"]
            .as_str()
            .unwrap();
        let cm = find(&docs, "ConfigMap", dns, cm_name)
            .unwrap_or_else(|| panic!("{overlay}: ConfigMap {cm_name} is not rendered"));
        assert!(c["args"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/etc/perfsync/perfsync.yaml")));
        let text = cm["data"]["perfsync.yaml"].as_str().unwrap();
        // It is the overlay's own perfsync.yaml, hashed into the name so a change rolls out.
        let file = std::fs::read_to_string(
            root()
                .join("manifests/overlays")
                .join(overlay)
                .join("perfsync.yaml"),
        )
        .unwrap();
        assert_eq!(text, file, "{overlay}");
        assert!(cm_name.starts_with("perfsync-yaml-"), "{cm_name}");
        let cfg: Value = serde_yaml::from_str(text).unwrap();
        // The service account exists; the Service and the PodDisruptionBudget select the pods.
        let sa = spec["serviceAccountName"].as_str().unwrap();
        assert!(
            find(&docs, "ServiceAccount", dns, sa).is_some(),
            "{overlay}"
        );
        for svc in the(&docs, "Service") {
            assert!(labels_match(
                &svc["spec"]["selector"],
                &pod["metadata"]["labels"]
            ));
            let port_names: Vec<&Value> = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["name"])
                .collect();
            for p in svc["spec"]["ports"].as_array().unwrap() {
                assert!(port_names.contains(&&p["targetPort"]), "{overlay}: {p}");
            }
        }
        for pdb in the(&docs, "PodDisruptionBudget") {
            assert!(labels_match(
                &pdb["spec"]["selector"]["matchLabels"],
                &pod["metadata"]["labels"]
            ));
        }
        // RoleBindings bind rendered Roles to rendered service accounts.
        for rb in the(&docs, "RoleBinding") {
            let role = rb["roleRef"]["name"].as_str().unwrap();
            assert!(
                find(&docs, "Role", ns(rb), role).is_some(),
                "{overlay}: {role}"
            );
            for s in rb["subjects"].as_array().unwrap() {
                assert!(find(
                    &docs,
                    "ServiceAccount",
                    s["namespace"].as_str(),
                    s["name"].as_str().unwrap()
                )
                .is_some());
            }
        }
        let replicas = d["spec"]["replicas"].as_u64().unwrap();
        match overlay {
            "local" => {
                assert_eq!(cfg["executor"]["kind"], "local");
                // No leader election on the local executor: one pod, never two at once.
                assert_eq!(replicas, 1);
                assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
                assert_eq!(spec["automountServiceAccountToken"], false);
                for k in ["Role", "RoleBinding", "CustomResourceDefinition"] {
                    assert!(the(&docs, k).is_empty(), "local: no {k}");
                }
                assert_eq!(the(&docs, "Namespace").len(), 1);
            }
            _ => {
                assert_eq!(cfg["executor"]["kind"], "kubernetes");
                assert_eq!(replicas, 2);
                assert!(cfg["executor"]["leaderElection"].is_object());
                // The runs namespace is the Role's and exists; the runner service account too.
                let runs = cfg["executor"]["namespace"].as_str().unwrap();
                assert!(find(&docs, "Namespace", None, runs).is_some());
                assert!(find(&docs, "Role", Some(runs), "perfsync").is_some());
                assert!(find(&docs, "RoleBinding", Some(runs), "perfsync").is_some());
                let runner_sa = cfg["executor"]["runner"]["serviceAccountName"]
                    .as_str()
                    .unwrap();
                let sa = find(&docs, "ServiceAccount", Some(runs), runner_sa).unwrap();
                assert_eq!(sa["automountServiceAccountToken"], false);
                // The Role rendered is the one the RBAC test checks every request against.
                let role: Value = serde_yaml::from_str(
                    &std::fs::read_to_string(root().join("manifests/base/role.yaml")).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    find(&docs, "Role", Some(runs), "perfsync").unwrap()["rules"],
                    role["rules"]
                );
                let crd = the(&docs, "CustomResourceDefinition");
                assert_eq!(crd.len(), 1);
                assert_eq!(name(crd[0]), "perftests.perfsync.dev");
            }
        }
        if overlay == "prometheus" {
            assert!(cfg["prometheus"]["url"].is_string());
            let dash = find(&docs, "ConfigMap", dns, "perfsync-grafana-dashboard").unwrap();
            assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
            let json = dash["data"]["grafana-dashboard.json"].as_str().unwrap();
            let board: Value = serde_json::from_str(json).unwrap();
            assert!(board["panels"].is_array());
        } else {
            assert!(cfg["prometheus"].is_null(), "{overlay}");
        }
    }
}

#[test]
fn the_config_each_overlay_carries_validates_with_perfsync_validate() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("repo");
    std::fs::create_dir(&empty).unwrap();
    let examples = root().join("examples");
    let mut checked = 0;
    // The base's own config as well (kubectl apply -k manifests/base).
    let base = Command::new(kubectl())
        .arg("kustomize")
        .arg(root().join("manifests/base"))
        .output()
        .unwrap();
    assert!(base.status.success());
    let base_docs: Vec<Value> = String::from_utf8(base.stdout)
        .unwrap()
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let mut all: Vec<(String, Vec<Value>)> = vec![("base".into(), base_docs)];
    for overlay in OVERLAYS {
        all.push((overlay.to_string(), render(overlay).1));
    }
    for (overlay, docs) in &all {
        for cm in the(docs, "ConfigMap") {
            let Some(text) = cm["data"]["perfsync.yaml"].as_str() else {
                continue;
            };
            let file = dir.path().join(format!("{overlay}-perfsync.yaml"));
            std::fs::write(&file, text).unwrap();
            let f = file.to_str().unwrap();
            // Accepted as a config: a repository without tests is valid under it.
            let out = perfsync(&["validate", "--config", f, empty.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{overlay}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // And it judges real tests: the examples are read under its policy (refused
            // targets are exit 1, a config error would be 2).
            let out = perfsync(&["validate", "--config", f, examples.to_str().unwrap()]);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{overlay}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "base, local, kubernetes, prometheus");
}

#[test]
fn the_gitops_examples_install_an_overlay_of_this_repository() {
    let version = env!("CARGO_PKG_VERSION");
    let overlay_dir = |p: &str| -> PathBuf {
        let d = root().join(p.trim_start_matches("./"));
        assert!(
            d.join("kustomization.yaml").is_file(),
            "{p} is a kustomize folder of this repository"
        );
        d
    };
    let (_, argo) = render("argocd");
    let app = the(&argo, "Application");
    assert_eq!(app.len(), 1);
    let src = &app[0]["spec"]["source"];
    overlay_dir(src["path"].as_str().unwrap());
    assert_eq!(src["targetRevision"], format!("v{version}"));
    let image = src["kustomize"]["images"][0].as_str().unwrap();
    assert!(
        image.starts_with(&format!("{IMAGE_REPO}=")),
        "Argo CD rewrites the image the manifests name: {image}"
    );
    assert_eq!(app[0]["spec"]["syncPolicy"]["automated"]["prune"], true);

    let (_, flux) = render("flux");
    let repo = the(&flux, "GitRepository");
    let ks = the(&flux, "Kustomization");
    assert_eq!((repo.len(), ks.len()), (1, 1));
    assert_eq!(repo[0]["spec"]["ref"]["tag"], format!("v{version}"));
    let source = &ks[0]["spec"]["sourceRef"];
    assert_eq!(source["kind"], "GitRepository");
    assert_eq!(source["name"], name(repo[0]));
    assert_eq!(
        ks[0]["metadata"]["namespace"],
        repo[0]["metadata"]["namespace"]
    );
    overlay_dir(ks[0]["spec"]["path"].as_str().unwrap());
    assert_eq!(ks[0]["spec"]["images"][0]["name"], IMAGE_REPO);
    assert_eq!(ks[0]["spec"]["prune"], true);
}
