//! Gitea's (and Forgejo's) API v1 as its swagger documents it, under `/api/v1`:
//! - `POST /repos/{owner}/{repo}/statuses/{sha}` {state: pending|success|error|failure|warning,
//!   target_url?, description?, context?} → 201 (repoCreateStatus)
//! - `GET /repos/{owner}/{repo}/commits/{sha}/pull` → 200 the pull request that merged it, or
//!   404 (repoGetCommitPullRequest)
//! - `GET /repos/{owner}/{repo}/issues/{index}/comments` → 200 [comments] (issueGetComments)
//! - `POST /repos/{owner}/{repo}/issues/{index}/comments` {body} → 201 (issueCreateComment)
//! - `PATCH /repos/{owner}/{repo}/issues/comments/{id}` {body} → 200 (issueEditComment)
//!
//! `Authorization: token <token>`; 401 without or with a wrong one; 404 for another
//! repository; 422 for an invalid body.

use super::{
    bearer_or_token, comment_text, is_sha, only_keys, segments, str_field, Fake, Req, Resp, State,
};
use serde_json::json;

pub const PREFIX: &str = "/api/v1";

pub async fn start(token: &str, repo: &str) -> Fake {
    Fake::start(handle, token, repo).await
}

pub fn api_url(f: &Fake) -> String {
    format!("{}{PREFIX}", f.base())
}

fn not_found() -> Resp {
    Resp::json(
        404,
        json!({"errors": null, "message": "not found", "url": "https://gitea.example/api/swagger"}),
    )
}

fn unprocessable(message: &str) -> Resp {
    Resp::json(
        422,
        json!({"message": message, "url": "https://gitea.example/api/swagger"}),
    )
}

pub fn handle(s: &mut State, r: &Req) -> Resp {
    match r.header("authorization") {
        None => return Resp::json(401, json!({"message": "token is required", "url": ""})),
        Some(a) => {
            if bearer_or_token(a) != Some(s.token.as_str()) {
                return Resp::json(
                    401,
                    json!({"message": "user does not exist [uid: 0, name: ]", "url": ""}),
                );
            }
        }
    }
    let Some(seg) = segments(&r.path, PREFIX) else {
        return not_found();
    };
    let repo = s.repo.clone();
    let (owner, name) = repo.split_once('/').unwrap_or(("", ""));
    match (r.method.as_str(), seg.as_slice()) {
        ("POST", ["repos", o, n, "statuses", sha]) if *o == owner && *n == name => {
            if !is_sha(sha) {
                return not_found();
            }
            let Some(b) = r.json_object() else {
                return unprocessable("[]: Invalid JSON");
            };
            if let Err(k) = only_keys(&b, &["state", "target_url", "description", "context"]) {
                return unprocessable(&format!("[{k}]: unknown field"));
            }
            let state = str_field(&b, "state").unwrap_or("");
            if !["pending", "success", "error", "failure", "warning"].contains(&state) {
                return unprocessable("[State]: invalid commit status state");
            }
            let description = str_field(&b, "description").unwrap_or("");
            let context = str_field(&b, "context").unwrap_or("default");
            let target_url = str_field(&b, "target_url").map(str::to_string);
            let id = s.record_status(sha, state, context, description, target_url.clone());
            Resp::json(
                201,
                json!({"id": id, "status": state, "context": context, "description": description, "target_url": target_url}),
            )
        }
        ("GET", ["repos", o, n, "commits", sha, "pull"]) if *o == owner && *n == name => {
            let _ = sha;
            match s.merge_request {
                Some(n) => Resp::json(
                    200,
                    json!({"id": 500 + n, "number": n, "state": "closed", "merged": true, "title": "load tests"}),
                ),
                None => Resp::json(
                    404,
                    json!({"message": "pull request does not exist", "url": ""}),
                ),
            }
        }
        ("GET", ["repos", o, n, "issues", index, "comments"]) if *o == owner && *n == name => {
            let Some(index) = s.merge_request_of(index) else {
                return not_found();
            };
            let list = s.comments_on(index, |id, body| json!({"id": id, "body": body}));
            Resp::json(200, json!(list))
        }
        ("POST", ["repos", o, n, "issues", index, "comments"]) if *o == owner && *n == name => {
            let Some(index) = s.merge_request_of(index) else {
                return not_found();
            };
            let Some(body) = r
                .json_object()
                .and_then(|b| comment_text(&b).map(str::to_string))
            else {
                return unprocessable("[Body]: Required");
            };
            let id = s.create_comment(index, &body);
            Resp::json(201, json!({"id": id, "body": body}))
        }
        ("PATCH", ["repos", o, n, "issues", "comments", id]) if *o == owner && *n == name => {
            let Some(body) = r
                .json_object()
                .and_then(|b| comment_text(&b).map(str::to_string))
            else {
                return unprocessable("[Body]: Required");
            };
            let Some(id) = id.parse::<u64>().ok() else {
                return not_found();
            };
            if !s.update_comment(id, &body) {
                return not_found();
            }
            Resp::json(200, json!({"id": id, "body": body}))
        }
        _ => not_found(),
    }
}
