//! GitLab REST API v4: commit (pipeline) statuses and merge-request notes. API base:
//! `https://gitlab.com/api/v4`, or `https://<host>/api/v4` self-managed. A project is named by
//! its numeric id or its URL-encoded full path (`group%2Fproject`).

use super::{Call, CommitState, Status};
use crate::record::outbox::HttpFailure;
use reqwest::Method;
use serde_json::{json, Value};

/// The token in `PRIVATE-TOKEN` (personal, project or group access token).
/// https://docs.gitlab.com/api/rest/authentication/#personalprojectgroup-access-tokens
pub fn headers(token: &str) -> Vec<(&'static str, String)> {
    vec![("PRIVATE-TOKEN", token.to_string())]
}

/// `state`: `pending`, `running`, `success`, `failed` or `canceled`. A started run is
/// `running` (GitLab's word for a job that runs; `pending` is one waiting to); error and
/// timeout are `failed`, an aborted run `canceled`.
pub fn state(s: CommitState) -> &'static str {
    match s {
        CommitState::Running => "running",
        CommitState::Succeeded | CommitState::Regressed => "success",
        CommitState::Failed | CommitState::Errored | CommitState::TimedOut => "failed",
        CommitState::Aborted => "canceled",
    }
}

/// The project as a path segment: a numeric id as is, a path URL-encoded.
/// https://docs.gitlab.com/api/rest/#namespaced-paths
pub fn project(repo: &str) -> String {
    url::form_urlencoded::byte_serialize(repo.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Set the pipeline status of a commit: `POST /projects/:id/statuses/:sha` with `state`,
/// `name` (the context), `target_url` and `description`.
/// https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit
pub fn status(repo: &str, s: &Status<'_>) -> Call {
    let mut body = json!({
        "state": state(s.state),
        "name": s.context,
        "description": s.description,
    });
    if let Some(u) = s.target_url {
        body["target_url"] = json!(u);
    }
    Call {
        method: Method::POST,
        path: format!("/projects/{}/statuses/{}", project(repo), s.sha),
        body: Some(body),
    }
}

/// GitLab answers 400 `Cannot transition status via :run from :running` when a status is
/// set to the state it already has: a repeat of a request it took.
pub fn already_in_state(f: &HttpFailure) -> bool {
    f.status == Some(400) && f.message.contains("Cannot transition status via")
}

/// List merge requests associated with a commit:
/// `GET /projects/:id/repository/commits/:sha/merge_requests`.
/// https://docs.gitlab.com/api/commits/#list-merge-requests-associated-with-a-commit
pub fn merge_requests(repo: &str, sha: &str) -> Call {
    Call {
        method: Method::GET,
        path: format!(
            "/projects/{}/repository/commits/{sha}/merge_requests",
            project(repo)
        ),
        body: None,
    }
}

/// The iid of the merge request to comment on: an open one first, else the first listed.
pub fn pick_merge_request(v: &Value) -> Option<String> {
    let list = v.as_array()?;
    let open = list.iter().find(|m| m["state"] == "opened");
    open.or(list.first())
        .and_then(|m| m["iid"].as_u64())
        .map(|n| n.to_string())
}

/// List all merge request notes: `GET /projects/:id/merge_requests/:merge_request_iid/notes`.
/// https://docs.gitlab.com/api/notes/#list-all-merge-request-notes
pub fn notes(repo: &str, iid: &str, page: usize, per_page: usize) -> Call {
    Call {
        method: Method::GET,
        path: format!(
            "/projects/{}/merge_requests/{iid}/notes?per_page={per_page}&page={page}",
            project(repo)
        ),
        body: None,
    }
}

/// Create new merge request note: `POST /projects/:id/merge_requests/:merge_request_iid/notes`
/// with `body`.
/// https://docs.gitlab.com/api/notes/#create-new-merge-request-note
pub fn create_note(repo: &str, iid: &str, body: &str) -> Call {
    Call {
        method: Method::POST,
        path: format!("/projects/{}/merge_requests/{iid}/notes", project(repo)),
        body: Some(json!({ "body": body })),
    }
}

/// Modify existing merge request note:
/// `PUT /projects/:id/merge_requests/:merge_request_iid/notes/:note_id` with `body`.
/// https://docs.gitlab.com/api/notes/#modify-existing-merge-request-note
pub fn update_note(repo: &str, iid: &str, id: &str, body: &str) -> Call {
    Call {
        method: Method::PUT,
        path: format!(
            "/projects/{}/merge_requests/{iid}/notes/{id}",
            project(repo)
        ),
        body: Some(json!({ "body": body })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_request_is_gitlabs() {
        let s = Status {
            sha: "0123456789abcdef0123456789abcdef01234567",
            state: CommitState::Aborted,
            context: "perfsync/checkout".into(),
            description: "aborted".into(),
            target_url: Some("https://perfsync.example.com/runs/x"),
        };
        let c = status("qa/perf/load-tests", &s);
        assert_eq!(c.method, Method::POST);
        assert_eq!(
            c.path,
            "/projects/qa%2Fperf%2Fload-tests/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            c.body,
            Some(
                json!({"state": "canceled", "name": "perfsync/checkout", "description": "aborted",
                        "target_url": "https://perfsync.example.com/runs/x"})
            )
        );
        assert_eq!(project("42"), "42");
        assert_eq!(headers("t"), vec![("PRIVATE-TOKEN", "t".to_string())]);
    }

    #[test]
    fn notes_and_merge_requests() {
        assert_eq!(
            merge_requests("g/p", "abc").path,
            "/projects/g%2Fp/repository/commits/abc/merge_requests"
        );
        let v = json!([{"iid": 2, "state": "merged"}, {"iid": 5, "state": "opened"}]);
        assert_eq!(pick_merge_request(&v).as_deref(), Some("5"));
        let u = update_note("g/p", "5", "77", "x");
        assert_eq!(
            (u.method, u.path.as_str()),
            (Method::PUT, "/projects/g%2Fp/merge_requests/5/notes/77")
        );
        let c = create_note("g/p", "5", "x");
        assert_eq!(c.path, "/projects/g%2Fp/merge_requests/5/notes");
        let f = HttpFailure::permanent(
            Some(400),
            "HTTP 400 Bad Request: {\"message\":\"Cannot transition status via :run from :running\"}",
        );
        assert!(already_in_state(&f));
        assert!(!already_in_state(&HttpFailure::permanent(
            Some(400),
            "HTTP 400: state does not have a valid value"
        )));
    }
}
