//! GitLab's REST API v4 as documented (https://docs.gitlab.com/api/), under `/api/v4`, for a
//! project named by its URL-encoded path (`qa%2Fload-tests`) or its id:
//! - `POST /projects/:id/statuses/:sha` {state: pending|running|success|failed|canceled|skipped,
//!   ref?, name?|context?, target_url?, description?, coverage?, pipeline_id?} → 201; 400
//!   `Cannot transition status via :run from :running` when a pending or running status is set
//!   to the state it has
//! - `GET /projects/:id/repository/commits/:sha/merge_requests` → 200 [merge requests]
//! - `GET /projects/:id/merge_requests/:iid/notes?per_page&page` → 200 [notes]
//! - `POST /projects/:id/merge_requests/:iid/notes` {body} → 201
//! - `PUT /projects/:id/merge_requests/:iid/notes/:note_id` {body} → 200
//!
//! 401 without `PRIVATE-TOKEN` (or `Authorization: Bearer`) or with a wrong one; 404 for
//! another project (an unencoded path included) or note.

use super::{comment_text, is_sha, only_keys, segments, str_field, Fake, Req, Resp, State};
use serde_json::json;

pub const PREFIX: &str = "/api/v4";

pub async fn start(token: &str, project: &str) -> Fake {
    Fake::start(handle, token, project).await
}

pub fn api_url(f: &Fake) -> String {
    format!("{}{PREFIX}", f.base())
}

fn not_found(what: &str) -> Resp {
    Resp::json(404, json!({"message": format!("404 {what} Not Found")}))
}

/// A note's merge request and text: 404 for another merge request, 400 without a `body`.
fn note_request(s: &State, r: &Req, iid: &str) -> Result<(u64, String), Resp> {
    let Some(iid) = s.merge_request_of(iid) else {
        return Err(not_found("Merge Request"));
    };
    match r
        .json_object()
        .and_then(|b| comment_text(&b).map(str::to_string))
    {
        Some(body) => Ok((iid, body)),
        None => Err(Resp::json(400, json!({"error": "body is missing"}))),
    }
}

pub fn handle(s: &mut State, r: &Req) -> Resp {
    let token = r.header("private-token").or_else(|| {
        r.header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
    });
    if token != Some(s.token.as_str()) {
        return Resp::json(401, json!({"message": "401 Unauthorized"}));
    }
    let Some(seg) = segments(&r.path, PREFIX) else {
        return not_found("");
    };
    let encoded: String = url::form_urlencoded::byte_serialize(s.repo.as_bytes()).collect();
    let project_ok = |p: &str| p == encoded || p == "42";
    match (r.method.as_str(), seg.as_slice()) {
        ("POST", ["projects", p, "statuses", sha]) if project_ok(p) => {
            if !is_sha(sha) {
                return not_found("Commit");
            }
            let Some(b) = r.json_object() else {
                return Resp::json(400, json!({"error": "state is missing"}));
            };
            if let Err(k) = only_keys(
                &b,
                &[
                    "state",
                    "ref",
                    "name",
                    "context",
                    "target_url",
                    "description",
                    "coverage",
                    "pipeline_id",
                ],
            ) {
                return Resp::json(
                    400,
                    json!({"error": format!("{k} does not have a valid value")}),
                );
            }
            let state = str_field(&b, "state").unwrap_or("");
            if ![
                "pending", "running", "success", "failed", "canceled", "skipped",
            ]
            .contains(&state)
            {
                return Resp::json(400, json!({"error": "state does not have a valid value"}));
            }
            let name = b
                .get("name")
                .or_else(|| b.get("context"))
                .and_then(|v| v.as_str())
                .unwrap_or("default");
            let last = s
                .statuses
                .iter()
                .rev()
                .find(|x| x.sha == *sha && x.context == name)
                .map(|x| x.state.clone());
            // A pending or running status is moved (`enqueue`, `run`), not created again.
            if let Some(last) = last.filter(|l| l == "pending" || l == "running") {
                let event = match state {
                    "pending" => Some("enqueue"),
                    "running" => Some("run"),
                    _ => None,
                };
                if let Some(ev) =
                    event.filter(|_| state == last || (last == "running" && state == "pending"))
                {
                    return Resp::json(
                        400,
                        json!({"message": format!("Cannot transition status via :{ev} from :{last} (Reason(s): Status cannot transition via \"{ev}\")")}),
                    );
                }
            }
            let description = str_field(&b, "description").unwrap_or("");
            let target_url = str_field(&b, "target_url").map(str::to_string);
            let id = s.record_status(sha, state, name, description, target_url.clone());
            Resp::json(
                201,
                json!({"id": id, "sha": sha, "ref": "main", "status": state, "name": name,
                       "target_url": target_url, "description": description, "allow_failure": false}),
            )
        }
        ("GET", ["projects", p, "repository", "commits", sha, "merge_requests"])
            if project_ok(p) =>
        {
            let _ = sha;
            let list: Vec<_> = s
                .merge_request
                .iter()
                .map(|iid| json!({"id": 100 + iid, "iid": iid, "project_id": 42, "state": "opened", "title": "load tests"}))
                .collect();
            Resp::json(200, json!(list))
        }
        ("GET", ["projects", p, "merge_requests", iid, "notes"]) if project_ok(p) => {
            let Some(iid) = s.merge_request_of(iid) else {
                return not_found("Merge Request");
            };
            let all = s.comments_on(
                iid,
                |id, body| json!({"id": id, "body": body, "system": false, "noteable_iid": iid}),
            );
            Resp::json(200, json!(r.page_of(all, 20)))
        }
        ("POST", ["projects", p, "merge_requests", iid, "notes"]) if project_ok(p) => {
            let (iid, body) = match note_request(s, r, iid) {
                Ok(x) => x,
                Err(resp) => return resp,
            };
            let body = body.as_str();
            let id = s.create_comment(iid, body);
            Resp::json(
                201,
                json!({"id": id, "body": body, "system": false, "noteable_type": "MergeRequest"}),
            )
        }
        ("PUT", ["projects", p, "merge_requests", iid, "notes", id]) if project_ok(p) => {
            let (iid, body) = match note_request(s, r, iid) {
                Ok(x) => x,
                Err(resp) => return resp,
            };
            let body = body.as_str();
            let Some(id) = id
                .parse::<u64>()
                .ok()
                .filter(|id| s.comments.get(id).is_some_and(|(mr, _)| *mr == iid))
            else {
                return not_found("Note");
            };
            s.update_comment(id, body);
            Resp::json(200, json!({"id": id, "body": body}))
        }
        ("POST" | "GET" | "PUT", ["projects", ..]) => not_found("Project"),
        _ => not_found(""),
    }
}
