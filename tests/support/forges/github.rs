//! GitHub's REST API as documented (https://docs.github.com/en/rest), served under the GitHub
//! Enterprise Server prefix `/api/v3`:
//! - `POST /repos/{owner}/{repo}/statuses/{sha}` {state: error|failure|pending|success,
//!   target_url?, description? (≤140 characters), context?} → 201
//! - `GET /repos/{owner}/{repo}/commits/{sha}/pulls` → 200 [pull requests]
//! - `GET /repos/{owner}/{repo}/issues/{n}/comments?per_page&page` → 200 [comments]
//! - `POST /repos/{owner}/{repo}/issues/{n}/comments` {body} → 201
//! - `PATCH /repos/{owner}/{repo}/issues/comments/{id}` {body} → 200
//!
//! 401 without a token or with a wrong one, 403 without a User-Agent, 400 for an API version
//! it does not have, 404 for another repository or path, 422 for an invalid body.

use super::{
    bearer_or_token, comment_text, is_sha, only_keys, segments, str_field, Fake, Req, Resp, State,
};
use serde_json::json;

pub const PREFIX: &str = "/api/v3";

pub async fn start(token: &str, repo: &str) -> Fake {
    Fake::start(handle, token, repo).await
}

/// The API base URL perfsync is configured with.
pub fn api_url(f: &Fake) -> String {
    format!("{}{PREFIX}", f.base())
}

fn invalid(field: &str, message: &str) -> Resp {
    Resp::json(
        422,
        json!({"message": "Validation Failed",
               "errors": [{"resource": "Status", "field": field, "code": "invalid", "message": message}],
               "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status"}),
    )
}

fn not_found() -> Resp {
    Resp::json(
        404,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

pub fn handle(s: &mut State, r: &Req) -> Resp {
    match r.header("authorization") {
        None => {
            return Resp::json(401, json!({"message": "Requires authentication"}));
        }
        Some(a) => {
            if bearer_or_token(a) != Some(s.token.as_str()) {
                return Resp::json(401, json!({"message": "Bad credentials"}));
            }
        }
    }
    if r.header("user-agent").is_none_or(str::is_empty) {
        return Resp::json(
            403,
            json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}),
        );
    }
    match r.header("x-github-api-version") {
        Some("2022-11-28") => {}
        Some(v) => {
            return Resp::json(
                400,
                json!({"message": format!("API version {v} is not supported.")}),
            )
        }
        // The API would take it; the stand-in insists on what perfsync must send.
        None => return Resp::json(400, json!({"message": "send X-GitHub-Api-Version"})),
    }
    if r.header("accept") != Some("application/vnd.github+json") {
        return Resp::json(
            400,
            json!({"message": "send Accept: application/vnd.github+json"}),
        );
    }
    let Some(seg) = segments(&r.path, PREFIX) else {
        return not_found();
    };
    let repo = s.repo.clone();
    let (owner, name) = repo.split_once('/').unwrap_or(("", ""));
    match (r.method.as_str(), seg.as_slice()) {
        ("POST", ["repos", o, n, "statuses", sha]) if *o == owner && *n == name => {
            if !is_sha(sha) {
                return Resp::json(
                    422,
                    json!({"message": format!("No commit found for SHA: {sha}")}),
                );
            }
            let Some(b) = r.json_object() else {
                return Resp::json(400, json!({"message": "Problems parsing JSON"}));
            };
            if let Err(k) = only_keys(&b, &["state", "target_url", "description", "context"]) {
                return invalid(&k, "not a parameter of this endpoint");
            }
            let state = str_field(&b, "state").unwrap_or("");
            if !["error", "failure", "pending", "success"].contains(&state) {
                return invalid("state", "state is not included in the list");
            }
            let description = str_field(&b, "description").unwrap_or("");
            if description.chars().count() > 140 {
                return invalid(
                    "description",
                    "description is too long (maximum is 140 characters)",
                );
            }
            let context = str_field(&b, "context").unwrap_or("default");
            let target_url = str_field(&b, "target_url").map(str::to_string);
            let id = s.record_status(sha, state, context, description, target_url.clone());
            Resp::json(
                201,
                json!({"id": id, "state": state, "description": description, "target_url": target_url,
                       "context": context, "url": format!("https://api.github.com/repos/{repo}/statuses/{sha}")}),
            )
        }
        ("GET", ["repos", o, n, "commits", sha, "pulls"]) if *o == owner && *n == name => {
            let _ = sha;
            let list: Vec<_> = s
                .merge_request
                .iter()
                .map(|n| json!({"number": n, "state": "open", "title": "load tests"}))
                .collect();
            Resp::json(200, json!(list))
        }
        ("GET", ["repos", o, n, "issues", num, "comments"]) if *o == owner && *n == name => {
            let Some(num) = s.merge_request_of(num) else {
                return not_found();
            };
            let all = s.comments_on(num, |id, body| json!({"id": id, "body": body}));
            Resp::json(200, json!(r.page_of(all, 30)))
        }
        ("POST", ["repos", o, n, "issues", num, "comments"]) if *o == owner && *n == name => {
            let Some(num) = s.merge_request_of(num) else {
                return not_found();
            };
            let Some(b) = r.json_object() else {
                return Resp::json(400, json!({"message": "Problems parsing JSON"}));
            };
            let Some(body) = comment_text(&b) else {
                return invalid("body", "body is missing");
            };
            if only_keys(&b, &["body"]).is_err() {
                return invalid("body", "only body");
            }
            let id = s.create_comment(num, body);
            Resp::json(
                201,
                json!({"id": id, "body": body, "html_url": format!("https://github.example/{repo}/pull/{num}#issuecomment-{id}")}),
            )
        }
        ("PATCH", ["repos", o, n, "issues", "comments", id]) if *o == owner && *n == name => {
            let Some(b) = r.json_object() else {
                return Resp::json(400, json!({"message": "Problems parsing JSON"}));
            };
            let Some(body) = comment_text(&b) else {
                return invalid("body", "body is missing");
            };
            let Some(id) = id.parse::<u64>().ok() else {
                return not_found();
            };
            if !s.update_comment(id, body) {
                return not_found();
            }
            Resp::json(200, json!({"id": id, "body": body}))
        }
        _ => not_found(),
    }
}
