//! GitHub (and GitHub Enterprise Server) REST API: commit statuses and pull-request comments.
//! API base: `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise.

use super::{Call, CommitState, Status};
use reqwest::Method;
use serde_json::Value;

/// The REST API version perfsync speaks.
pub const API_VERSION: &str = "2022-11-28";

/// Every request: the token as a bearer token, GitHub's JSON media type and the API version.
/// (The User-Agent GitHub requires is the client's.)
/// https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api
/// https://docs.github.com/en/rest/about-the-rest-api/api-versions
pub fn headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", format!("Bearer {token}")),
        ("Accept", "application/vnd.github+json".into()),
        ("X-GitHub-Api-Version", API_VERSION.into()),
    ]
}

/// `state`: `error`, `failure`, `pending` or `success`. A regression that still passed is a
/// success (its description says so); an aborted run is an error.
pub fn state(s: CommitState) -> &'static str {
    match s {
        CommitState::Running => "pending",
        CommitState::Succeeded | CommitState::Regressed => "success",
        CommitState::Failed | CommitState::TimedOut => "failure",
        CommitState::Errored | CommitState::Aborted => "error",
    }
}

/// Create a commit status: `POST /repos/{owner}/{repo}/statuses/{sha}` with `state`,
/// `target_url`, `description` and `context`.
/// https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
pub fn status(repo: &str, s: &Status<'_>) -> Call {
    super::create_repo_status(repo, s, state(s.state))
}

/// List pull requests associated with a commit: `GET /repos/{owner}/{repo}/commits/{sha}/pulls`
/// (the merged pull request that brought it, or open ones holding it).
/// https://docs.github.com/en/rest/commits/commits#list-pull-requests-associated-with-a-commit
pub fn pulls(repo: &str, sha: &str) -> Call {
    Call {
        method: Method::GET,
        path: format!("/repos/{repo}/commits/{sha}/pulls"),
        body: None,
    }
}

/// The number of the pull request to comment on: an open one first, else the first listed.
pub fn pick_pull(v: &Value) -> Option<String> {
    let list = v.as_array()?;
    let open = list.iter().find(|p| p["state"] == "open");
    open.or(list.first())
        .and_then(|p| p["number"].as_u64())
        .map(|n| n.to_string())
}

/// List issue comments (a pull request is an issue): `GET /repos/{owner}/{repo}/issues/{n}/comments`.
/// https://docs.github.com/en/rest/issues/comments#list-issue-comments
pub fn comments(repo: &str, number: &str, page: usize, per_page: usize) -> Call {
    Call {
        method: Method::GET,
        path: format!("/repos/{repo}/issues/{number}/comments?per_page={per_page}&page={page}"),
        body: None,
    }
}

/// Create an issue comment: `POST /repos/{owner}/{repo}/issues/{n}/comments` with `body`.
/// https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
pub fn create_comment(repo: &str, number: &str, body: &str) -> Call {
    super::create_issue_comment(repo, number, body)
}

/// Update an issue comment: `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}` with `body`.
/// https://docs.github.com/en/rest/issues/comments#update-an-issue-comment
pub fn update_comment(repo: &str, id: &str, body: &str) -> Call {
    super::update_issue_comment(repo, id, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_request_is_githubs() {
        let s = Status {
            sha: "0123456789abcdef0123456789abcdef01234567",
            state: CommitState::Failed,
            context: "perfsync/checkout".into(),
            description: "failed · p95 312 ms".into(),
            target_url: Some("https://perfsync.example.com/runs/x"),
        };
        let c = status("qa/load-tests", &s);
        assert_eq!(c.method, Method::POST);
        assert_eq!(
            c.path,
            "/repos/qa/load-tests/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            c.body,
            Some(
                json!({"state": "failure", "target_url": "https://perfsync.example.com/runs/x",
                        "description": "failed · p95 312 ms", "context": "perfsync/checkout"})
            )
        );
        let h = headers("tok");
        assert!(h.contains(&("Authorization", "Bearer tok".into())));
        assert!(h.contains(&("Accept", "application/vnd.github+json".into())));
        assert!(h.contains(&("X-GitHub-Api-Version", "2022-11-28".into())));
        let no_url = status(
            "qa/x",
            &Status {
                target_url: None,
                ..s
            },
        );
        assert!(no_url.body.unwrap().get("target_url").is_none());
    }

    #[test]
    fn comment_requests_and_pull_choice() {
        assert_eq!(pulls("o/r", "abc").path, "/repos/o/r/commits/abc/pulls");
        let v = json!([{"number": 3, "state": "closed"}, {"number": 7, "state": "open"}]);
        assert_eq!(pick_pull(&v).as_deref(), Some("7"));
        assert_eq!(
            pick_pull(&json!([{"number": 3, "state": "closed"}])).as_deref(),
            Some("3")
        );
        assert_eq!(pick_pull(&json!([])), None);
        let c = create_comment("o/r", "7", "hi");
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::POST, "/repos/o/r/issues/7/comments")
        );
        let u = update_comment("o/r", "99", "hi");
        assert_eq!(
            (u.method, u.path.as_str()),
            (Method::PATCH, "/repos/o/r/issues/comments/99")
        );
        assert_eq!(u.body, Some(json!({"body": "hi"})));
        assert_eq!(
            comments("o/r", "7", 2, 100).path,
            "/repos/o/r/issues/7/comments?per_page=100&page=2"
        );
    }
}
