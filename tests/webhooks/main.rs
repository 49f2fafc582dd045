//! Webhooks end to end: provider payloads over HTTP into the sync loop, against a real git
//! remote and the real PostgreSQL. The forges' own published example payloads are in
//! `tests/fixtures/webhooks/` (its README says where each came from).

#[path = "../support/mod.rs"]
mod support;

mod basics;
mod deletion;
mod encodings;
mod published;

use perfsync::config::{Config, Layout};
use perfsync::metrics::Metrics;
use perfsync::server::hooks::sign;
use perfsync::server::{routes, AppState, Health};
use perfsync::source::git::{GitAuth, GitSource};
use perfsync::sync::run::sync_loop;
use perfsync::sync::triggers::Triggers;
use perfsync::sync::Syncer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::{mpsc, watch};

pub struct Harness {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub outcomes: mpsc::Receiver<perfsync::sync::SyncOutcome>,
    _stop: watch::Sender<bool>,
    pub remote: Remote,
    /// The branch perfsync tracks; the remote's `main` is copied to it after each commit.
    pub branch: String,
    pub db: TestDb,
    _state: tempfile::TempDir,
}

pub const SECRET: &str = "It's a Secret to Everybody";

/// A request's headers, in order.
pub type HeaderList = Vec<(String, String)>;

/// A daemon's sync loop and HTTP edge tracking `main`.
pub async fn harness() -> Harness {
    harness_on("main").await
}

/// A daemon's sync loop and HTTP edge tracking `branch` (so a fixture's own branch can be
/// tracked as it is, `master` or `develop`), with every provider's secret set to [`SECRET`].
pub async fn harness_on(branch: &str) -> Harness {
    let remote = Remote::new();
    remote.commit(&as_files(&tests_files(2)), "initial");
    publish(&remote, branch);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let state = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let src = GitSource::new(&remote.path_url(), branch, state.path(), GitAuth::default());
    let mut syncer = Syncer::new(
        src,
        Layout::default(),
        policy,
        pool.clone(),
        metrics.clone(),
    );
    syncer.sync("start").await.unwrap();
    let triggers = Arc::new(Triggers::new());
    let health = Arc::new(Health::default());
    let hook_secrets: BTreeMap<&'static str, String> = ["github", "gitlab", "gitea", "generic"]
        .into_iter()
        .map(|p| (p, SECRET.to_string()))
        .collect();
    let app = Arc::new(AppState {
        triggers: triggers.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        branch: branch.into(),
        hook_secrets,
        api_token: Some("api-token-1".into()),
        pool: Some(pool),
        scheduler: None,
        repository_url: None,
        page: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, outcomes) = mpsc::channel(16);
    tokio::spawn(sync_loop(
        syncer,
        triggers,
        health,
        Some(tx),
        stop_rx.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes(app)).incoming(listener).run());
    Harness {
        addr,
        metrics,
        outcomes,
        _stop: stop_tx,
        remote,
        branch: branch.into(),
        db,
        _state: state,
    }
}

/// Copies the remote's `main` to `branch` (a force-push), when they differ.
fn publish(remote: &Remote, branch: &str) {
    if branch != "main" {
        git(
            &remote.work,
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
    }
}

impl Harness {
    /// A new commit changing test `t0` on the tracked branch; its id.
    pub fn change(&self, marker: &str) -> String {
        let head = self
            .remote
            .commit(&[("tests/t0/script.js", Some(&script(marker)))], marker);
        publish(&self.remote, &self.branch);
        head
    }

    /// Sends a webhook; the status and the answer as JSON (`null` when it is not JSON).
    pub async fn send(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, text) =
            http(self.addr, "POST", &format!("/hooks/{provider}"), &hs, body).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

pub async fn next_outcome(h: &mut Harness) -> perfsync::sync::SyncOutcome {
    tokio::time::timeout(Duration::from_secs(20), h.outcomes.recv())
        .await
        .expect("a sync within 20 s")
        .expect("sync loop alive")
}

/// Asserts that no sync runs within `ms` milliseconds.
pub async fn no_sync(h: &mut Harness, ms: u64, why: &str) {
    if let Ok(o) = tokio::time::timeout(Duration::from_millis(ms), h.outcomes.recv()).await {
        panic!("{why}: a sync ran: {o:?}");
    }
}

/// A published example payload, byte for byte.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhooks")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture with some fields replaced: parsed, changed, serialised again.
pub fn fixture_with(name: &str, changes: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    for (k, new) in changes {
        v[*k] = new.clone();
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

/// `payload=<json>`, form-encoded as GitHub, Gitea and Forgejo send it.
pub fn form(json: &[u8]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(json).unwrap())
        .finish()
        .into_bytes()
}

/// The senders whose request shapes the tests copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitlab,
    Gitea,
    /// Forgejo as it sends today: its own headers and Gitea's.
    Forgejo,
    /// Forgejo sending only its own headers.
    ForgejoOnly,
}

impl Forge {
    /// The path segment perfsync serves it on.
    pub fn provider(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea | Forge::Forgejo | Forge::ForgejoOnly => "gitea",
        }
    }
}

/// The JSON or form content types.
pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A push request's headers as `forge` sends them for `json` sent as `content_type`, signed
/// with `secret` the way that forge signs: GitHub over the body as sent, Gitea and Forgejo
/// over the JSON (also when it goes in a form), GitLab with the token itself.
pub fn push_headers(forge: Forge, content_type: &str, json: &[u8], secret: &str) -> HeaderList {
    let id = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
    let mut h: HeaderList = vec![("Content-Type".into(), content_type.into())];
    let mut add = |k: &str, v: &str| h.push((k.to_string(), v.to_string()));
    match forge {
        Forge::Github => {
            let sig = sign(secret, &push_body(content_type, json));
            add("User-Agent", "GitHub-Hookshot/044aadd");
            add("X-GitHub-Delivery", id);
            add("X-GitHub-Event", "push");
            add("X-GitHub-Hook-ID", "292430182");
            add("X-Hub-Signature-256", &format!("sha256={sig}"));
        }
        Forge::Gitlab => {
            add("User-Agent", "GitLab/17.0.0");
            add("X-Gitlab-Event", "Push Hook");
            add("X-Gitlab-Event-UUID", id);
            add("X-Gitlab-Token", secret);
        }
        Forge::Gitea | Forge::Forgejo | Forge::ForgejoOnly => {
            let sig = sign(secret, json);
            let mut names = vec![];
            if forge != Forge::Gitea {
                names.push("Forgejo");
            }
            if forge != Forge::ForgejoOnly {
                names.extend(["Gitea", "Gogs"]);
            }
            for n in names {
                add(&format!("X-{n}-Delivery"), id);
                add(&format!("X-{n}-Event"), "push");
                add(&format!("X-{n}-Event-Type"), "push");
                add(&format!("X-{n}-Signature"), &sig);
            }
            if forge != Forge::ForgejoOnly {
                add("X-GitHub-Delivery", id);
                add("X-GitHub-Event", "push");
                add("X-GitHub-Event-Type", "push");
                add("X-Hub-Signature-256", &format!("sha256={sig}"));
            }
        }
    }
    h
}

/// What is sent for `json` as `content_type`: the JSON, or a form holding it.
pub fn push_body(content_type: &str, json: &[u8]) -> Vec<u8> {
    if content_type == FORM {
        form(json)
    } else {
        json.to_vec()
    }
}

/// Replaces (or adds) one header.
pub fn with_header(mut h: HeaderList, name: &str, value: &str) -> HeaderList {
    h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    h.push((name.to_string(), value.to_string()));
    h
}
