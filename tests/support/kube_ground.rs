//! The Kubernetes test ground as the kubernetes executor's tests use it: the API test server
//! (authorizing under `manifests/base/role.yaml`, validating like a real apiserver, the TestRun CRD
//! of a real k6-operator release installed), the k6-operator stand-in, a git remote, a
//! PostgreSQL schema, a demo target, and daemons started from a written config.

use super::daemon::*;
use super::kube_api::{Coll, Faults, KubeApi};
use super::operator::{Operator, OperatorOptions};
use super::parts::*;
use super::*;
use serde_json::Value;

pub const SECRET: &str = "hook-secret-k8s";
pub const TOKEN: &str = "api-token-k8s";
pub const NS: &str = "perfsync-runs";

pub struct Ground {
    pub api: KubeApi,
    pub op: Operator,
    pub remote: Remote,
    pub url: String,
    pub db: TestDb,
    pub pool: sqlx::PgPool,
    pub dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
    pub target: std::net::SocketAddr,
}

/// The published TestRun CRD of a k6-operator release (`v1.5.0`, `v1.6.0`).
pub fn testrun_crd(version: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/k6-operator/k6.io_testruns.{version}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub async fn ground() -> Ground {
    ground_with("v1.6.0", OperatorOptions::default()).await
}

/// A ground with the TestRun CRD of operator `crd` and the stand-in's `options`.
pub async fn ground_with(crd: &str, options: OperatorOptions) -> Ground {
    ground_with_crd(&testrun_crd(crd), options).await
}

pub async fn ground_with_crd(crd_yaml: &str, options: OperatorOptions) -> Ground {
    let api = KubeApi::start().await;
    api.install_crd(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/perftest.yaml"))
            .unwrap(),
    );
    api.install_crd(crd_yaml);
    api.enforce_role(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/base/role.yaml"
        ))
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::start_with(api.store.clone(), dir.path().join("operator"), options);
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    let mut remote = Remote::new();
    let url = remote.serve(None);
    remote.commit(&[("README.md", Some("load tests"))], "empty");
    let db = TestDb::new().await;
    let pool = db.pool().await;
    Ground {
        target: demo_target().await,
        api,
        op,
        remote,
        url,
        db,
        pool,
        dir,
        kubeconfig,
    }
}

impl Ground {
    /// Writes a config for one replica (its own state directory and port).
    pub fn config(&self, replica: &str, port: u16, extra: &str) -> std::path::PathBuf {
        let dir = self.dir.path().join(replica);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("perfsync.yaml");
        std::fs::write(
            &cfg,
            format!(
                "repository:\n  url: {}\nstateDir: {}\nserver:\n  listen: 127.0.0.1:{port}\n  apiToken: {{env: E2E_API_TOKEN}}\nwebhooks:\n  github: {{env: E2E_HOOK_SECRET}}\nsync:\n  pollInterval: 2s\n  watch: false\npolicy:\n  allowedTargets: [http://127.0.0.1]\n  maxConcurrentRuns: 8\n  maxBundleBytes: 1048576\n  runner:\n    allowedImages: [\"registry.invalid/*\", \"grafana/k6:*\"]\n    allowedSecrets: [api-credentials, absent, present]\n    allowedSecretLabel: perfsync.dev/runner-secret=true\n    maxCpu: \"6\"\nexecutor:\n  kind: kubernetes\n  namespace: {NS}\n  kubeconfig: {}\n  stallTimeout: 4s\n  leaderElection: {{leaseDuration: 6s}}\n{extra}results:\n  authorName: perfsync-bot\n  authorEmail: bot@example.com\n",
                self.url,
                dir.join("state").display(),
                self.kubeconfig.display()
            ),
        )
        .unwrap();
        cfg
    }

    pub fn start(&self, cfg: &std::path::Path, port: u16) -> Daemon {
        start_daemon(
            cfg,
            &self.db.url,
            port,
            &[("E2E_HOOK_SECRET", SECRET), ("E2E_API_TOKEN", TOKEN)],
        )
    }

    /// Pushes one test per `(name, duration)`, sends the webhook, and waits until each has its
    /// runner running.
    pub async fn start_running(&self, daemon: &Daemon, tests: &[(&str, &str)]) {
        let mut all = Vec::new();
        for (name, duration) in tests {
            all.extend(files(
                &Spec {
                    duration,
                    ..Spec::new(name)
                },
                self.target,
                SCRIPT,
            ));
        }
        let head = self.push(&all, "tests to run");
        github_push(daemon.addr, SECRET, &head).await;
        wait_for("every run to be running", 60, || async {
            tests
                .iter()
                .all(|(name, _)| self.runner_pods_running(&format!("{name}-")) == 1)
                .then_some(())
        })
        .await;
    }

    /// The replicas' logs, for a failing assertion to show.
    pub fn logs(&self) -> String {
        ["a", "b"]
            .iter()
            .filter_map(|r| {
                std::fs::read_to_string(self.dir.path().join(r).join("daemon.log")).ok()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn baseline(&self) {
        wait_baseline(&self.pool).await;
    }

    pub fn push(&self, files: &[(String, Option<String>)], message: &str) -> String {
        let f: Vec<(&str, Option<&str>)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_deref()))
            .collect();
        self.remote.commit(&f, message)
    }

    pub async fn results(&self, test: &str) -> Vec<(String, String, Option<String>)> {
        sqlx::query_as::<_, (String, String, Option<String>)>(
            "SELECT r.run_id, r.status, r.summary->>'reason' FROM test_results r JOIN test_runs t ON t.id = r.run_id WHERE r.test_id = $1 ORDER BY t.created_at, t.id",
        )
        .bind(test)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn result(&self, test: &str, secs: u64) -> (String, String, Option<String>) {
        wait_for(&format!("the result of {test}"), secs, || async {
            self.results(test).await.into_iter().next()
        })
        .await
    }

    pub async fn summary(&self, run: &str) -> Value {
        sqlx::query_scalar("SELECT summary FROM test_results WHERE run_id = $1")
            .bind(run)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub fn objects(&self, group: &str, resource: &str, selector: &str) -> Vec<Value> {
        self.api
            .store
            .list(&Coll::new(group, resource), Some(NS), selector)
    }

    /// Runner processes the operator stand-in started for a TestRun name prefix.
    pub fn runner_pods_running(&self, prefix: &str) -> usize {
        self.objects("", "pods", "app=k6")
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(prefix)
                    && p["status"]["phase"] == "Running"
            })
            .count()
    }
}

/// One replica's config, port and process.
pub struct Replica {
    pub daemon: Daemon,
    pub cfg: std::path::PathBuf,
    pub port: u16,
}

/// The test ground and one replica past its baseline sync; `lease` is its lease duration,
/// `faults` what the API server does wrong from the start.
pub async fn with_replica(lease: &str, faults: Faults) -> (Ground, Replica) {
    let g = ground().await;
    g.api.store.set_faults(faults);
    let port = free_port();
    let cfg = g.config("a", port, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("leaseDuration: 6s", &format!("leaseDuration: {lease}"));
    std::fs::write(&cfg, text).unwrap();
    let daemon = g.start(&cfg, port);
    g.baseline().await;
    (g, Replica { daemon, cfg, port })
}

pub struct Spec<'a> {
    pub name: &'a str,
    pub vus: u32,
    pub duration: &'a str,
    pub threshold: &'a str,
    pub parallelism: u32,
    pub timeout: &'a str,
    pub extra: &'a str,
}

impl<'a> Spec<'a> {
    pub fn new(name: &'a str) -> Spec<'a> {
        Spec {
            name,
            vus: 2,
            duration: "2s",
            threshold: "p(95)<2000",
            parallelism: 1,
            timeout: "2m",
            extra: "",
        }
    }
}

pub const SCRIPT: &str = "import http from 'k6/http';\nimport { check, sleep } from 'k6';\nexport default function () {\n  check(http.get(`${__ENV.BASE_URL}/api/items`), { 'is 200': (r) => r.status === 200 });\n  sleep(0.05);\n}\n";

pub fn files(
    s: &Spec,
    target: std::net::SocketAddr,
    script: &str,
) -> Vec<(String, Option<String>)> {
    vec![
        (
            format!("tests/{}/perftest.yaml", s.name),
            Some(format!(
                "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {}\nspec:\n  script: script.js\n  targets: [http://{target}]\n  parallelism: {}\n  load: {{vus: {}, duration: {}}}\n  thresholds:\n    http_req_duration: ['{}']\n  env:\n    BASE_URL: http://{target}\n  timeout: {}\n{}",
                s.name, s.parallelism, s.vus, s.duration, s.threshold, s.timeout, s.extra
            )),
        ),
        (format!("tests/{}/script.js", s.name), Some(script.to_string())),
    ]
}

pub fn removed(name: &str) -> Vec<(String, Option<String>)> {
    vec![
        (format!("tests/{name}/perftest.yaml"), None),
        (format!("tests/{name}/script.js"), None),
    ]
}
