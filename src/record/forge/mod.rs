//! Forges perfsync reports to: a commit status per test, and one comment per merge request
//! and commit. Each forge's wire format (paths, bodies, auth headers, states) is in its own
//! file, as pure request builders and answer readers; this file sends them.

pub mod gitea;
pub mod github;
pub mod gitlab;

use super::outbox::{execute, HttpFailure, RunEvent};
use crate::config::forge::{ForgeConfig, ForgeKind};
use crate::config::SecretError;
use crate::results::summary::EndState;
use reqwest::Method;
use serde_json::Value;

/// `POST /repos/{owner}/{repo}/statuses/{sha}` with `state` (the forge's own name for it),
/// `target_url` (when there is one), `description` and `context`: the commit status GitHub and
/// Gitea both document. Each forge's file names its own reference and its states.
pub(crate) fn create_repo_status(repo: &str, s: &Status<'_>, state: &str) -> Call {
    let mut body = serde_json::json!({
        "state": state,
        "description": s.description,
        "context": s.context,
    });
    if let Some(u) = s.target_url {
        body["target_url"] = serde_json::json!(u);
    }
    Call {
        method: Method::POST,
        path: format!("/repos/{repo}/statuses/{}", s.sha),
        body: Some(body),
    }
}

/// `POST /repos/{owner}/{repo}/issues/{number}/comments` with `body`: the request GitHub and
/// Gitea both document for a comment on a pull request (an issue). Each forge's file names
/// its own reference.
pub(crate) fn create_issue_comment(repo: &str, number: &str, body: &str) -> Call {
    Call {
        method: Method::POST,
        path: format!("/repos/{repo}/issues/{number}/comments"),
        body: Some(serde_json::json!({ "body": body })),
    }
}

/// `PATCH /repos/{owner}/{repo}/issues/comments/{id}` with `body`: GitHub's and Gitea's edit
/// of a comment alike.
pub(crate) fn update_issue_comment(repo: &str, id: &str, body: &str) -> Call {
    Call {
        method: Method::PATCH,
        path: format!("/repos/{repo}/issues/comments/{id}"),
        body: Some(serde_json::json!({ "body": body })),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{forge}: {source}")]
    Http {
        forge: String,
        #[source]
        source: HttpFailure,
    },
    #[error("{forge}: unexpected answer to {what}: {why}")]
    Answer {
        forge: String,
        what: String,
        why: String,
    },
    #[error("{forge}: the run has no commit to set a status on")]
    NoCommit { forge: String },
}

impl ForgeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Http { source, .. } => source.status,
            _ => None,
        }
    }

    /// What the outbox records and decides on (a retry or not).
    pub fn into_failure(self) -> HttpFailure {
        match self {
            ForgeError::Http { forge, source } => HttpFailure {
                message: format!("{forge}: {}", source.message),
                ..source
            },
            other => HttpFailure::permanent(None, other.to_string()),
        }
    }
}

/// A run's state as a commit status, before each forge names it in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Running,
    Succeeded,
    /// Succeeded, but flagged a regression against its baseline.
    Regressed,
    Failed,
    Errored,
    TimedOut,
    Aborted,
}

impl CommitState {
    pub fn of(ev: &RunEvent) -> CommitState {
        match ev.status {
            None => CommitState::Running,
            Some(EndState::Succeeded) if ev.regression => CommitState::Regressed,
            Some(EndState::Succeeded) => CommitState::Succeeded,
            Some(EndState::Failed) => CommitState::Failed,
            Some(EndState::Error) => CommitState::Errored,
            Some(EndState::Timeout) => CommitState::TimedOut,
            Some(EndState::Aborted) => CommitState::Aborted,
        }
    }
}

/// One API request, relative to the forge's API base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

/// A commit status, in the forge-neutral words the builders take.
#[derive(Debug, Clone, PartialEq)]
pub struct Status<'a> {
    pub sha: &'a str,
    pub state: CommitState,
    pub context: String,
    pub description: String,
    pub target_url: Option<&'a str>,
}

/// GitHub counts a description's characters and refuses more than 140; the others take it.
pub const MAX_DESCRIPTION: usize = 140;

/// `text` cut to `max` characters, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The status description: the verdict, p95 and the comparison (or why the run ended), at
/// most 140 characters.
pub fn description(ev: &RunEvent) -> String {
    let text = match ev.status {
        None => "running".to_string(),
        Some(st) => {
            let mut s = st.as_str().to_string();
            if let Some(p) = ev.p95_ms {
                s.push_str(&format!(
                    " · p95 {} ({})",
                    super::outbox::ms(p),
                    ev.comparison_text()
                ));
            }
            if ev.regression {
                s.push_str(" · regression");
            }
            if st != EndState::Succeeded {
                if let Some(r) = ev.reason.as_deref().filter(|r| !r.is_empty()) {
                    s.push_str(&format!(" · {}", r.replace(['\n', '\r'], " ")));
                }
            }
            s
        }
    };
    cut(&text, MAX_DESCRIPTION)
}

/// A configured forge with its token.
pub struct Forge {
    pub name: String,
    pub kind: ForgeKind,
    api: String,
    repository: String,
    token: String,
    pub statuses: bool,
    pub comment: bool,
    pub context_prefix: String,
}

impl std::fmt::Debug for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Forge({} {} {} {})",
            self.name,
            self.kind.as_str(),
            self.api,
            self.repository
        )
    }
}

/// Comments read per page, and pages read, when a comment is looked for by its marker.
const PAGE: usize = 100;
const MAX_PAGES: usize = 20;

impl Forge {
    /// The forge of `forges[i]`, its token resolved (errors name `forges[i].token`).
    pub fn from_config(c: &ForgeConfig, i: usize) -> Result<Forge, SecretError> {
        Ok(Forge {
            name: c.name(),
            kind: c.kind,
            api: c.api_url().unwrap_or_default(),
            repository: c.repository.trim_matches('/').to_string(),
            token: c.token.resolve(&format!("forges[{i}].token"))?,
            statuses: c.statuses,
            comment: c.comment,
            context_prefix: c.context_prefix.clone(),
        })
    }

    /// For tests: a forge with a token given as a value.
    pub fn new(kind: ForgeKind, api: &str, repository: &str, token: &str) -> Forge {
        Forge {
            name: kind.as_str().into(),
            kind,
            api: api.trim_end_matches('/').into(),
            repository: repository.into(),
            token: token.into(),
            statuses: true,
            comment: false,
            context_prefix: "perfsync".into(),
        }
    }

    /// The outbox's name for it.
    pub fn target(&self) -> String {
        format!("forge:{}", self.name)
    }

    /// The status context of a test.
    pub fn context(&self, test: &str) -> String {
        format!("{}/{test}", self.context_prefix)
    }

    /// The headers every request carries (authentication among them).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            ForgeKind::Github => github::headers(&self.token),
            ForgeKind::Gitlab => gitlab::headers(&self.token),
            ForgeKind::Gitea | ForgeKind::Forgejo => gitea::headers(&self.token),
        }
    }

    /// The request setting `s`.
    pub fn status_call(&self, s: &Status<'_>) -> Call {
        match self.kind {
            ForgeKind::Github => github::status(&self.repository, s),
            ForgeKind::Gitlab => gitlab::status(&self.repository, s),
            ForgeKind::Gitea | ForgeKind::Forgejo => gitea::status(&self.repository, s),
        }
    }

    async fn call(&self, client: &reqwest::Client, c: &Call) -> Result<(u16, String), ForgeError> {
        let mut req = client.request(c.method.clone(), format!("{}{}", self.api, c.path));
        for (k, v) in self.headers() {
            req = req.header(k, v);
        }
        if let Some(b) = &c.body {
            req = req.json(b);
        }
        execute(req, &[self.token.as_str()])
            .await
            .map_err(|source| ForgeError::Http {
                forge: self.name.clone(),
                source,
            })
    }

    fn json(&self, what: &str, text: &str) -> Result<Value, ForgeError> {
        serde_json::from_str(text).map_err(|e| ForgeError::Answer {
            forge: self.name.clone(),
            what: what.into(),
            why: e.to_string(),
        })
    }

    /// Sets the commit status of `ev` on its commit.
    pub async fn set_status(
        &self,
        client: &reqwest::Client,
        ev: &RunEvent,
    ) -> Result<(), ForgeError> {
        let Some(sha) = ev.commit.as_deref() else {
            return Err(ForgeError::NoCommit {
                forge: self.name.clone(),
            });
        };
        let s = Status {
            sha,
            state: CommitState::of(ev),
            context: self.context(&ev.test),
            description: description(ev),
            target_url: ev.url.as_deref(),
        };
        match self.call(client, &self.status_call(&s)).await {
            Ok(_) => Ok(()),
            // GitLab refuses to move a status to the state it is in (a repeat after a crash
            // between its answer and our mark): it is set.
            Err(ForgeError::Http { source, .. })
                if self.kind == ForgeKind::Gitlab && gitlab::already_in_state(&source) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The merge request (number or iid) that brought `sha`, if any: an open one first.
    pub async fn merge_request(
        &self,
        client: &reqwest::Client,
        sha: &str,
    ) -> Result<Option<String>, ForgeError> {
        let (call, what) = match self.kind {
            ForgeKind::Github => (
                github::pulls(&self.repository, sha),
                "the commit's pull requests",
            ),
            ForgeKind::Gitlab => (
                gitlab::merge_requests(&self.repository, sha),
                "the commit's merge requests",
            ),
            ForgeKind::Gitea | ForgeKind::Forgejo => (
                gitea::pull(&self.repository, sha),
                "the commit's pull request",
            ),
        };
        let text = match self.call(client, &call).await {
            Ok((_, t)) => t,
            // Gitea answers 404 when no pull request merged the commit.
            Err(e)
                if matches!(self.kind, ForgeKind::Gitea | ForgeKind::Forgejo)
                    && e.status() == Some(404) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let v = self.json(what, &text)?;
        Ok(match self.kind {
            ForgeKind::Github => github::pick_pull(&v),
            ForgeKind::Gitlab => gitlab::pick_merge_request(&v),
            ForgeKind::Gitea | ForgeKind::Forgejo => gitea::pull_number(&v),
        })
    }

    /// The id of the comment holding `marker` on merge request `mr`, if there is one.
    pub async fn find_comment(
        &self,
        client: &reqwest::Client,
        mr: &str,
        marker: &str,
    ) -> Result<Option<String>, ForgeError> {
        for page in 1..=MAX_PAGES {
            let call = match self.kind {
                ForgeKind::Github => github::comments(&self.repository, mr, page, PAGE),
                ForgeKind::Gitlab => gitlab::notes(&self.repository, mr, page, PAGE),
                ForgeKind::Gitea | ForgeKind::Forgejo => gitea::comments(&self.repository, mr),
            };
            let (_, text) = self.call(client, &call).await?;
            let v = self.json("the merge request's comments", &text)?;
            let list = comment_list(&v);
            if let Some((id, _)) = list.iter().find(|(_, body)| body.contains(marker)) {
                return Ok(Some(id.clone()));
            }
            // Gitea lists every comment at once; the others stop at a short page.
            if matches!(self.kind, ForgeKind::Gitea | ForgeKind::Forgejo) || list.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// Posts a comment on merge request `mr`; returns its id.
    pub async fn create_comment(
        &self,
        client: &reqwest::Client,
        mr: &str,
        body: &str,
    ) -> Result<String, ForgeError> {
        let call = match self.kind {
            ForgeKind::Github => github::create_comment(&self.repository, mr, body),
            ForgeKind::Gitlab => gitlab::create_note(&self.repository, mr, body),
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                gitea::create_comment(&self.repository, mr, body)
            }
        };
        let (_, text) = self.call(client, &call).await?;
        let v = self.json("the new comment", &text)?;
        id_of(&v).ok_or_else(|| ForgeError::Answer {
            forge: self.name.clone(),
            what: "the new comment".into(),
            why: "no `id`".into(),
        })
    }

    /// Replaces the text of comment `id` on merge request `mr`.
    pub async fn update_comment(
        &self,
        client: &reqwest::Client,
        mr: &str,
        id: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let call = match self.kind {
            ForgeKind::Github => github::update_comment(&self.repository, id, body),
            ForgeKind::Gitlab => gitlab::update_note(&self.repository, mr, id, body),
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                gitea::update_comment(&self.repository, id, body)
            }
        };
        self.call(client, &call).await.map(|_| ())
    }
}

/// A comment's or note's `id` (a number on every forge), as text.
pub fn id_of(v: &Value) -> Option<String> {
    match &v["id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `(id, body)` of each comment in a list answer (all three forges name them so).
pub fn comment_list(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| Some((id_of(c)?, c["body"].as_str().unwrap_or("").to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One test's row in a commit's comment.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentRow {
    pub test: String,
    /// `queued`, `running` or the end state.
    pub status: String,
    pub run: String,
    pub p95_ms: Option<f64>,
    pub p95_change_percent: Option<f64>,
    pub regression: bool,
    pub url: Option<String>,
}

/// The hidden line that finds perfsync's comment for `sha` among a merge request's comments.
pub fn comment_marker(sha: &str) -> String {
    format!("<!-- perfsync:comment commit={sha} -->")
}

/// Markdown cell text: no line breaks, pipes escaped, HTML-ish brackets defused.
fn cell(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The comment: a marker, a heading naming the commit, and a table of its tests (verdict,
/// p95, change against the baseline, a link to each run).
pub fn comment_body(sha: &str, rows: &[CommentRow]) -> String {
    let short = sha.get(..7).unwrap_or(sha);
    let mut s = comment_marker(sha);
    s.push_str(&format!("\n### perfsync: load tests at `{short}`\n\n"));
    if rows.is_empty() {
        s.push_str("No runs yet.\n");
        return s;
    }
    s.push_str("| test | verdict | p95 | vs baseline | run |\n| --- | --- | --- | --- | --- |\n");
    for r in rows {
        let icon = match r.status.as_str() {
            "succeeded" if r.regression => "⚠️",
            "succeeded" => "✅",
            "failed" | "error" | "timeout" => "❌",
            "aborted" => "⏹️",
            _ => "⏳",
        };
        let mut verdict = format!("{icon} {}", r.status);
        if r.regression {
            verdict.push_str(" (regression)");
        }
        let p95 = r.p95_ms.map_or("-".into(), super::outbox::ms);
        let change = r
            .p95_change_percent
            .map_or("-".into(), |c| format!("{c:+.1}%"));
        let run = match &r.url {
            Some(u) => format!("[{}]({})", cell(&r.run), u.replace(')', "%29")),
            None => format!("`{}`", cell(&r.run)),
        };
        s.push_str(&format!(
            "| {} | {verdict} | {p95} | {change} | {run} |\n",
            cell(&r.test)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Option<EndState>) -> RunEvent {
        serde_json::from_value(serde_json::json!({
            "run": "checkout-0123456789-1", "test": "checkout", "revision": "r",
            "commit": "a".repeat(40), "trigger": "change", "status": status,
            "p95Ms": 312.4, "baselineRun": "checkout-x-1", "baselineP95Ms": 278.0,
            "p95ChangePercent": 12.37, "url": "https://perfsync.example.com/runs/checkout-0123456789-1"
        }))
        .unwrap()
    }

    #[test]
    fn descriptions_hold_the_verdict_p95_and_comparison_within_140() {
        let mut e = event(Some(EndState::Failed));
        assert_eq!(description(&e), "failed · p95 312 ms (+12.4% vs 278 ms)");
        e.reason = Some("threshold http_req_duration p(95)<100 failed\n".repeat(10));
        let d = description(&e);
        assert_eq!(d.chars().count(), 140, "{d}");
        assert!(d.ends_with('…') && !d.contains('\n'), "{d}");
        assert_eq!(description(&event(None)), "running");
    }

    #[test]
    fn states_map_per_forge() {
        use CommitState::*;
        let all = [
            Running, Succeeded, Regressed, Failed, Errored, TimedOut, Aborted,
        ];
        let gh: Vec<&str> = all.iter().map(|s| github::state(*s)).collect();
        assert_eq!(
            gh,
            ["pending", "success", "success", "failure", "error", "failure", "error"]
        );
        let gl: Vec<&str> = all.iter().map(|s| gitlab::state(*s)).collect();
        assert_eq!(
            gl,
            ["running", "success", "success", "failed", "failed", "failed", "canceled"]
        );
        let ge: Vec<&str> = all.iter().map(|s| gitea::state(*s)).collect();
        assert_eq!(
            ge,
            ["pending", "success", "warning", "failure", "error", "failure", "error"]
        );
    }

    #[test]
    fn the_comment_is_a_table_with_a_marker() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let rows = vec![
            CommentRow {
                test: "checkout".into(),
                status: "succeeded".into(),
                run: "checkout-1".into(),
                p95_ms: Some(120.0),
                p95_change_percent: Some(-3.21),
                regression: false,
                url: Some("https://p.example/runs/checkout-1".into()),
            },
            CommentRow {
                test: "search|x".into(),
                status: "running".into(),
                run: "search-1".into(),
                p95_ms: None,
                p95_change_percent: None,
                regression: false,
                url: None,
            },
        ];
        let body = comment_body(sha, &rows);
        assert!(body.starts_with(&comment_marker(sha)), "{body}");
        assert!(body.contains("load tests at `0123456`"), "{body}");
        assert!(
            body.contains("| checkout | ✅ succeeded | 120 ms | -3.2% | [checkout-1](https://p.example/runs/checkout-1) |"),
            "{body}"
        );
        assert!(
            body.contains("| search\\|x | ⏳ running | - | - | `search-1` |"),
            "{body}"
        );
    }

    #[test]
    fn comment_lists_read_on_every_forge() {
        let v = serde_json::json!([{"id": 5, "body": "x"}, {"id": 6, "body": "y <!-- m -->"}]);
        assert_eq!(
            comment_list(&v),
            vec![
                ("5".into(), "x".into()),
                ("6".into(), "y <!-- m -->".into())
            ]
        );
        assert_eq!(
            id_of(&serde_json::json!({"id": 1234567890123i64})).as_deref(),
            Some("1234567890123")
        );
    }
}
