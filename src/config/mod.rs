//! The daemon's configuration file (`perfsync.yaml`): repository layout, policy, executor.
//! The policy is the operator's; nothing in a test repository can widen it.

pub mod forge;
pub mod notifications;
mod policy;
mod runner_policy;
mod secret;

pub use policy::{Policy, RegressionAction, RegressionPolicy, RegressionTolerance};
pub use runner_policy::{glob_matches, RunnerPolicy};
pub use secret::{SecretError, SecretRef};

use crate::spec::diagnostic::Diagnostic;
use crate::spec::duration::KDuration;
use crate::spec::parse;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "perfsync configuration")]
pub struct Config {
    #[serde(default)]
    pub repository: RepositoryConfig,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub executor: ExecutorConfig,
    /// Where clones and other local state live.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub results: ResultsConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<GrafanaConfig>,
    /// Commit statuses and merge-request comments (GitHub, GitLab, Gitea/Forgejo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forges: Vec<forge::ForgeConfig>,
    /// Chat and webhook sinks told about verdicts (Slack, Teams, signed JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<notifications::SinkConfig>,
    /// How deliveries to forges and sinks are retried.
    #[serde(
        default,
        skip_serializing_if = "notifications::DeliveryConfig::is_default"
    )]
    pub delivery: notifications::DeliveryConfig,
}

/// The git write-back of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResultsConfig {
    /// Write results back to the repository (default true).
    #[serde(default = "yes")]
    pub write_back: bool,
    /// Branch for results commits; default: the tests' branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default = "default_author_name")]
    pub author_name: String,
    #[serde(default = "default_author_email")]
    pub author_email: String,
    /// Fetch-and-retry attempts when a push is refused because the branch moved.
    #[serde(default = "default_push_retries")]
    pub push_retries: u32,
}

fn default_author_name() -> String {
    "perfsync".into()
}
fn default_author_email() -> String {
    "perfsync@localhost".into()
}
fn default_push_retries() -> u32 {
    5
}

impl Default for ResultsConfig {
    fn default() -> Self {
        ResultsConfig {
            write_back: true,
            branch: None,
            author_name: default_author_name(),
            author_email: default_author_email(),
            push_retries: default_push_retries(),
        }
    }
}

/// Prometheus: runners remote-write to it; perfsync queries percentiles from it by `testid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusConfig {
    /// Base URL for queries, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Remote-write URL the runners push to; default `<url>/api/v1/write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write_url: Option<String>,
}

/// Grafana annotations at each run's start and end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaConfig {
    pub url: String,
    /// A service-account token with annotation rights.
    pub token: SecretRef,
}

fn default_state_dir() -> String {
    "/var/lib/perfsync".into()
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseConfig {
    /// PostgreSQL URL; `PERFSYNC_DATABASE_URL` overrides it. Put no password here: use
    /// the environment variable or `urlFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for every `/api/v1/*` endpoint, and the key to the status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<SecretRef>,
    /// Who may read the status page: `public` (verdicts and figures for anyone, runner logs
    /// only after signing in with the API token) or `token` (every page needs the API token).
    #[serde(default)]
    pub page: PageAccess,
    /// Mark the status page's session cookie `Secure` even when a request does not say it
    /// came over TLS (`X-Forwarded-Proto: https`); for TLS proxies that do not say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_cookie: bool,
    /// The address people reach this server at (`https://perfsync.example.com`): commit
    /// statuses, comments and notifications link to `<publicUrl>/runs/<run>`. No links when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Who may read the status page (`server.page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PageAccess {
    /// Anyone sees verdicts and figures; runner logs need the API token.
    #[default]
    Public,
    /// Every page needs the API token (a login form sets a session cookie).
    Token,
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            api_token: None,
            page: PageAccess::default(),
            secure_cookie: false,
            public_url: None,
        }
    }
}

/// Webhook secrets per provider; a provider without one is not served.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhooksConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncConfig {
    /// Poll the remote this often (0s turns polling off).
    #[serde(default = "default_poll")]
    pub poll_interval: KDuration,
    /// Up to this much is added to each poll interval, so replicas and daemons spread out.
    #[serde(default = "default_jitter")]
    pub poll_jitter: KDuration,
    /// Watch a local-path repository for new commits.
    #[serde(default = "yes")]
    pub watch: bool,
}

fn default_poll() -> KDuration {
    KDuration::from_secs(60)
}
fn default_jitter() -> KDuration {
    KDuration::from_secs(10)
}
fn yes() -> bool {
    true
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            poll_interval: default_poll(),
            poll_jitter: default_jitter(),
            watch: true,
        }
    }
}

/// Git credentials: a token or password from the environment or a file, or an SSH key file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitAuthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_file: Option<String>,
    /// OpenSSH known_hosts file holding the SSH remote's host key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<String>,
}

/// Where the tests live and where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositoryConfig {
    /// A local path, `file://`, `git://`, `http(s)://` or `ssh://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default = "default_tests_dir")]
    pub tests_dir: String,
    #[serde(default = "default_templates_dir")]
    pub templates_dir: String,
    #[serde(default = "default_results_dir")]
    pub results_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GitAuthConfig>,
    /// A sync refuses (naming the commit) a commit whose tests and templates folders hold
    /// more files and symlinks than this (or more folders); the results folder likewise.
    #[serde(default = "default_max_tree_entries")]
    pub max_tree_entries: u64,
    /// A sync refuses (naming the commit) a commit whose tests and templates folders hold
    /// more bytes than this to read: files up to 4 MiB and symlink targets, every path
    /// counted (larger files are never read and do not count).
    #[serde(default = "default_max_tree_bytes")]
    pub max_tree_bytes: u64,
}

fn default_max_tree_entries() -> u64 {
    crate::source::DEFAULT_MAX_ENTRIES
}
fn default_max_tree_bytes() -> u64 {
    crate::source::DEFAULT_MAX_BYTES
}

impl RepositoryConfig {
    /// The bounds on one read of a commit (`maxTreeEntries`, `maxTreeBytes`).
    pub fn limits(&self) -> crate::source::Limits {
        crate::source::Limits {
            max_entries: self.max_tree_entries,
            max_bytes: self.max_tree_bytes,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout {
            tests_dir: self.tests_dir.trim_matches('/').to_string(),
            templates_dir: self.templates_dir.trim_matches('/').to_string(),
            results_dir: self.results_dir.trim_matches('/').to_string(),
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            url: None,
            branch: default_branch(),
            tests_dir: default_tests_dir(),
            templates_dir: default_templates_dir(),
            results_dir: default_results_dir(),
            auth: None,
            max_tree_entries: default_max_tree_entries(),
            max_tree_bytes: default_max_tree_bytes(),
        }
    }
}

fn default_branch() -> String {
    "main".to_string()
}

/// The folders of a test repository (DESIGN.md section 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub tests_dir: String,
    pub templates_dir: String,
    pub results_dir: String,
}

fn default_tests_dir() -> String {
    "tests".into()
}
fn default_templates_dir() -> String {
    "templates".into()
}
fn default_results_dir() -> String {
    "results".into()
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            tests_dir: default_tests_dir(),
            templates_dir: default_templates_dir(),
            results_dir: default_results_dir(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecutorConfig {
    #[serde(default)]
    pub kind: ExecutorKind,
    /// Namespace for ConfigMaps, TestRuns and PerfTest mirrors (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Runner image when a test names none (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_image: Option<String>,
    /// The k6-operator starter's image (the pod that resumes the paused runners), for
    /// clusters that pull from a mirror; the operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter_image: Option<String>,
    /// Path of the k6 binary (local executor); `k6` on PATH when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k6_binary: Option<String>,
    /// A kubeconfig file (kubernetes executor); the in-cluster service account, or
    /// `$KUBECONFIG`, when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// Runner settings every TestRun gets unless its test sets its own (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<crate::spec::model::RunnerSettings>,
    /// A run whose TestRun stage and runner pods make no progress for this long, with no
    /// runner running, ends as `error` (an image that cannot be pulled, a pod that cannot be
    /// scheduled, an operator that is down).
    #[serde(default = "default_stall", skip_serializing_if = "is_default_stall")]
    pub stall_timeout: KDuration,
    /// How each run's egress is confined at run time (kubernetes executor): `networkpolicy`
    /// (a NetworkPolicy per run: DNS, the policy's CIDRs and the addresses its exact host
    /// names resolve to at start), `cilium` (a CiliumNetworkPolicy with `toFQDNs`, following
    /// host globs), or `none`. Enforced only by a CNI that implements the kind.
    #[serde(default, skip_serializing_if = "is_default_egress")]
    pub egress: EgressMode,
    /// Leader election through a `coordination.k8s.io` Lease, so two replicas never run the
    /// same test twice (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<LeaderElection>,
    /// What the local executor's runners may have: secrets, output size, the sandbox.
    #[serde(default, skip_serializing_if = "LocalExecutorConfig::is_default")]
    pub local: LocalExecutorConfig,
}

/// The local executor's runners (`executor.local`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalExecutorConfig {
    /// Variables of the daemon's environment a test's `secretEnv` may name (by its `name`);
    /// a test naming any other is refused at validation and never started. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// The most bytes a runner's output (`runner-<i>.out`) or log (`runner-<i>.log`) may
    /// hold; what comes after is dropped and a line says so.
    #[serde(default = "default_max_output_bytes")]
    #[schemars(range(min = 4096))]
    pub max_output_bytes: u64,
    /// Refuse to start runs when no sandbox (bubblewrap) works on this host, instead of
    /// running them unsandboxed with a warning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_sandbox: bool,
    /// The user and group id the runners have when the daemon runs as root (a sandboxed
    /// runner is started as root by bubblewrap, then drops to these before k6 starts). Give
    /// them an id no other process uses; default 65534 (`nobody`).
    #[serde(default = "default_runner_id")]
    pub runner_uid: u32,
    #[serde(default = "default_runner_id")]
    pub runner_gid: u32,
}

fn default_max_output_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_runner_id() -> u32 {
    65534
}

impl Default for LocalExecutorConfig {
    fn default() -> Self {
        LocalExecutorConfig {
            secret_env: Vec::new(),
            max_output_bytes: default_max_output_bytes(),
            require_sandbox: false,
            runner_uid: default_runner_id(),
            runner_gid: default_runner_id(),
        }
    }
}

impl LocalExecutorConfig {
    fn is_default(&self) -> bool {
        *self == LocalExecutorConfig::default()
    }

    /// Each listed secret must be a name a test may set at all (`LD_PRELOAD`, `PATH`,
    /// `PERFSYNC_*`, … are refused here too), and the sizes must make sense.
    fn check(&self) -> Result<(), String> {
        for name in &self.secret_env {
            crate::spec::checks::check_env_name(name)
                .map_err(|e| format!("executor.local.secretEnv: {e}"))?;
            crate::spec::env_rules::check_name(name)
                .map_err(|e| format!("executor.local.secretEnv: {e}"))?;
        }
        if self.max_output_bytes < 4096 {
            return Err(format!(
                "executor.local.maxOutputBytes: {} is too small to hold a run's summary; use at least 4096 (default 16 MiB)",
                self.max_output_bytes
            ));
        }
        if self.runner_uid == 0 || self.runner_gid == 0 {
            return Err("executor.local.runnerUid/runnerGid: a runner never runs as root; use an unprivileged id such as 65534".into());
        }
        Ok(())
    }
}

fn default_stall() -> KDuration {
    KDuration::from_secs(300)
}
fn is_default_stall(d: &KDuration) -> bool {
    *d == default_stall()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// How long a leader that stops renewing keeps the lease.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: KDuration,
}

fn default_true() -> bool {
    true
}
fn default_lease_name() -> String {
    "perfsync-leader".into()
}
fn default_lease_duration() -> KDuration {
    KDuration::from_secs(15)
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: true,
            lease_name: default_lease_name(),
            lease_duration: default_lease_duration(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostic),
    #[error("{file}: {message}")]
    Policy { file: String, message: String },
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("no database configured: set database.url, database.urlFrom or PERFSYNC_DATABASE_URL")]
    NoDatabase,
    #[error("no repository configured: set repository.url")]
    NoRepository,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            repository: RepositoryConfig::default(),
            policy: Policy::default(),
            executor: ExecutorConfig::default(),
            state_dir: default_state_dir(),
            database: DatabaseConfig::default(),
            server: ServerConfig::default(),
            webhooks: WebhooksConfig::default(),
            sync: SyncConfig::default(),
            results: ResultsConfig::default(),
            prometheus: None,
            grafana: None,
            forges: Vec::new(),
            notifications: Vec::new(),
            delivery: notifications::DeliveryConfig::default(),
        }
    }
}

impl Config {
    /// The database URL: `PERFSYNC_DATABASE_URL` first, then `database.urlFrom`, then `database.url`.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = std::env::var("PERFSYNC_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok(url);
        }
        if let Some(r) = &self.database.url_from {
            return Ok(r.resolve("database.urlFrom")?);
        }
        self.database.url.clone().ok_or(ConfigError::NoDatabase)
    }

    /// The repository URL: `PERFSYNC_REPOSITORY_URL` overrides `repository.url`.
    pub fn repository_url(&self) -> Result<String, ConfigError> {
        std::env::var("PERFSYNC_REPOSITORY_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| self.repository.url.clone())
            .ok_or(ConfigError::NoRepository)
    }

    pub fn git_auth(&self) -> Result<crate::source::git::GitAuth, ConfigError> {
        let Some(a) = &self.repository.auth else {
            return Ok(Default::default());
        };
        Ok(crate::source::git::GitAuth {
            username: a.username.clone(),
            password: a
                .password
                .as_ref()
                .map(|p| p.resolve("repository.auth.password"))
                .transpose()?,
            ssh_key: a.ssh_key_file.as_ref().map(std::path::PathBuf::from),
            known_hosts: a
                .known_hosts_file
                .as_ref()
                .map(|f| {
                    std::fs::read_to_string(f).map_err(|e| SecretError::File {
                        key: "repository.auth.knownHostsFile".into(),
                        path: f.clone(),
                        reason: e.kind().to_string(),
                    })
                })
                .transpose()?,
        })
    }
}

impl Config {
    /// Parses a config file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let docs = parse::split_documents(text);
        let mut config: Config = match docs.as_slice() {
            [] => Config::default(),
            [doc] => {
                parse::read_kind(file, *doc).map_err(ConfigError::Invalid)?;
                parse::typed(file, *doc).map_err(ConfigError::Invalid)?
            }
            [_, second, ..] => {
                return Err(ConfigError::Invalid(Diagnostic::new(
                    file,
                    crate::spec::diagnostic::Pos::new(second.first_line, 1),
                    crate::spec::diagnostic::Code::Schema,
                    "a config file holds one YAML document; remove the others",
                )))
            }
        };
        config
            .policy
            .check()
            .map_err(|message| ConfigError::Policy {
                file: file.to_string(),
                message,
            })?;
        if let Some(r) = &config.executor.runner {
            let found = crate::spec::k8s::check_runner("executor.runner", r);
            if !found.is_empty() {
                return Err(ConfigError::Policy {
                    file: file.to_string(),
                    message: found
                        .iter()
                        .map(|f| f.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
        }
        config
            .executor
            .local
            .check()
            .map_err(|message| ConfigError::Policy {
                file: file.to_string(),
                message,
            })?;
        config
            .check_deliveries()
            .map_err(|message| ConfigError::Policy {
                file: file.to_string(),
                message,
            })?;
        // Validation under this config refuses a test whose secretEnv the local executor
        // would not resolve.
        if config.executor.kind == ExecutorKind::Local {
            config.policy.local_secret_env = Some(config.executor.local.secret_env.clone());
        }
        Ok(config)
    }

    /// `forges`, `notifications`, `delivery` and `server.publicUrl`.
    fn check_deliveries(&self) -> Result<(), String> {
        forge::check_all(&self.forges)?;
        notifications::check_all(&self.notifications)?;
        self.delivery.check()?;
        if let Some(u) = &self.server.public_url {
            let ok = url::Url::parse(u).is_ok_and(|p| {
                matches!(p.scheme(), "http" | "https")
                    && p.host().is_some()
                    && p.username().is_empty()
                    && p.password().is_none()
                    && p.query().is_none()
            });
            if !ok {
                return Err(format!(
                    "server.publicUrl: `{u}` is not an http(s) URL without credentials or query, e.g. `https://perfsync.example.com`"
                ));
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            source: e,
        })?;
        let text = parse::utf8(&shown, &bytes).map_err(ConfigError::Invalid)?;
        Config::parse(&shown, text)
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            kind: ExecutorKind::Local,
            namespace: None,
            runner_image: None,
            starter_image: None,
            egress: EgressMode::default(),
            k6_binary: None,
            kubeconfig: None,
            runner: None,
            stall_timeout: default_stall(),
            leader_election: None,
            local: LocalExecutorConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    #[default]
    Networkpolicy,
    Cilium,
    None,
}

fn is_default_egress(m: &EgressMode) -> bool {
    *m == EgressMode::default()
}
