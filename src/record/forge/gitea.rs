//! Gitea and Forgejo API v1 (Forgejo keeps Gitea's API): commit statuses and pull-request
//! comments. API base: `https://<host>/api/v1`. The operations are in Gitea's API reference
//! (https://docs.gitea.com/api/ and each instance's `/api/swagger`; Forgejo's at
//! https://forgejo.org/docs/latest/user/api-usage/ and https://codeberg.org/api/swagger).

use super::{Call, CommitState, Status};
use reqwest::Method;
use serde_json::Value;

/// The token as `Authorization: token <token>`.
/// https://docs.gitea.com/development/api-usage#authentication
pub fn headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", format!("token {token}")),
        ("Accept", "application/json".into()),
    ]
}

/// `state`: `pending`, `success`, `error`, `failure` or `warning`. A run that passed but
/// regressed is a `warning`; an aborted run an `error`.
pub fn state(s: CommitState) -> &'static str {
    match s {
        CommitState::Running => "pending",
        CommitState::Succeeded => "success",
        CommitState::Regressed => "warning",
        CommitState::Failed | CommitState::TimedOut => "failure",
        CommitState::Errored | CommitState::Aborted => "error",
    }
}

/// Create a commit status (`repoCreateStatus`): `POST /repos/{owner}/{repo}/statuses/{sha}`
/// with `state`, `target_url`, `description` and `context`.
/// https://gitea.com/api/swagger#/repository/repoCreateStatus
pub fn status(repo: &str, s: &Status<'_>) -> Call {
    super::create_repo_status(repo, s, state(s.state))
}

/// Get the merged pull request of the commit (`repoGetCommitPullRequest`):
/// `GET /repos/{owner}/{repo}/commits/{sha}/pull`; 404 when no pull request merged it.
/// https://gitea.com/api/swagger#/repository/repoGetCommitPullRequest
pub fn pull(repo: &str, sha: &str) -> Call {
    Call {
        method: Method::GET,
        path: format!("/repos/{repo}/commits/{sha}/pull"),
        body: None,
    }
}

/// The pull request's index (`number`).
pub fn pull_number(v: &Value) -> Option<String> {
    v["number"].as_u64().map(|n| n.to_string())
}

/// List all comments on an issue (`issueGetComments`; a pull request is an issue):
/// `GET /repos/{owner}/{repo}/issues/{index}/comments`.
/// https://gitea.com/api/swagger#/issue/issueGetComments
pub fn comments(repo: &str, index: &str) -> Call {
    Call {
        method: Method::GET,
        path: format!("/repos/{repo}/issues/{index}/comments"),
        body: None,
    }
}

/// Add a comment to an issue (`issueCreateComment`):
/// `POST /repos/{owner}/{repo}/issues/{index}/comments` with `body`.
/// https://gitea.com/api/swagger#/issue/issueCreateComment
pub fn create_comment(repo: &str, index: &str, body: &str) -> Call {
    super::create_issue_comment(repo, index, body)
}

/// Edit a comment (`issueEditComment`): `PATCH /repos/{owner}/{repo}/issues/comments/{id}`
/// with `body`.
/// https://gitea.com/api/swagger#/issue/issueEditComment
pub fn update_comment(repo: &str, id: &str, body: &str) -> Call {
    super::update_issue_comment(repo, id, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_request_is_giteas() {
        let s = Status {
            sha: "0123456789abcdef0123456789abcdef01234567",
            state: CommitState::Regressed,
            context: "perfsync/checkout".into(),
            description: "succeeded · regression".into(),
            target_url: None,
        };
        let c = status("qa/load-tests", &s);
        assert_eq!(
            (c.method, c.path.as_str()),
            (
                Method::POST,
                "/repos/qa/load-tests/statuses/0123456789abcdef0123456789abcdef01234567"
            )
        );
        assert_eq!(
            c.body,
            Some(
                json!({"state": "warning", "description": "succeeded · regression", "context": "perfsync/checkout"})
            )
        );
        assert!(headers("t").contains(&("Authorization", "token t".into())));
    }

    #[test]
    fn pull_and_comments() {
        assert_eq!(pull("o/r", "abc").path, "/repos/o/r/commits/abc/pull");
        assert_eq!(
            pull_number(&json!({"number": 12, "state": "closed"})).as_deref(),
            Some("12")
        );
        let u = update_comment("o/r", "9", "b");
        assert_eq!(
            (u.method, u.path.as_str()),
            (Method::PATCH, "/repos/o/r/issues/comments/9")
        );
        assert_eq!(
            create_comment("o/r", "12", "b").path,
            "/repos/o/r/issues/12/comments"
        );
        assert_eq!(comments("o/r", "12").method, Method::GET);
    }
}
