//! Loopback stand-ins for the forge and chat APIs perfsync reports to. Each accepts exactly
//! the request shapes the provider documents (path, method, auth header, JSON fields and their
//! allowed values) and answers anything else the way the real API does (401 without or with a
//! wrong token, 404 for an unknown path, 422/400 for an invalid body). Every request is
//! recorded with the status it got; a fault switch answers the next matching request 500, or
//! 429 with `Retry-After`, or every request 500 while the service is "down".
#![allow(dead_code)]

pub mod e2e;
pub mod generic;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod slack;

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A request as the stand-in saw it. Header names are lowercase.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// The body as a JSON object, when it is one and says it is JSON.
    pub fn json_object(&self) -> Option<serde_json::Map<String, Value>> {
        if !self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return None;
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    }

    /// The page of `all` that `page` (from 1) and `per_page` (`default_per_page` when not
    /// given, at most 100) ask for.
    pub fn page_of<T>(&self, all: Vec<T>, default_per_page: usize) -> Vec<T> {
        let per_page: usize = self
            .query_param("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_per_page)
            .min(100);
        let page: usize = self
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        all.into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect()
    }
}

/// An answer: status, body (JSON or text), extra headers.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            body: v.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, t: &str) -> Resp {
        Resp {
            status,
            body: t.to_string(),
            content_type: "text/plain",
            headers: Vec::new(),
        }
    }
}

/// What the fault switch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error`.
    ServerError,
    /// `429 Too Many Requests` with `Retry-After: <secs>`.
    RateLimited(u64),
}

/// One commit status as a forge keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRec {
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: String,
    pub target_url: Option<String>,
}

/// A comment event: `create` or `update`, the comment id, the merge request, the body.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentOp {
    pub op: &'static str,
    pub id: u64,
    pub mr: u64,
    pub body: String,
}

/// A stand-in's state: its data, what it saw, its faults.
#[derive(Debug, Default)]
pub struct State {
    pub token: String,
    /// `owner/repo` or the GitLab project path.
    pub repo: String,
    /// Every request and the status it got.
    pub seen: Vec<(Req, u16)>,
    /// Faults to answer, each to the first request whose path contains its pattern.
    pub faults: VecDeque<(String, Fault)>,
    /// Answer 500 to everything.
    pub down: bool,
    /// The merge request (number / iid) every commit belongs to, when any.
    pub merge_request: Option<u64>,
    pub statuses: Vec<StatusRec>,
    /// Comment id → (merge request, body).
    pub comments: BTreeMap<u64, (u64, String)>,
    pub comment_ops: Vec<CommentOp>,
    pub next_id: u64,
    /// Accepted deliveries of a sink (raw bodies, with their headers).
    pub deliveries: Vec<Req>,
    /// A generic webhook's HMAC key.
    pub secret: String,
}

impl State {
    /// Keeps a commit status; its id.
    pub fn record_status(
        &mut self,
        sha: &str,
        state: &str,
        context: &str,
        description: &str,
        target_url: Option<String>,
    ) -> u64 {
        self.statuses.push(StatusRec {
            sha: sha.to_string(),
            state: state.into(),
            context: context.into(),
            description: description.into(),
            target_url,
        });
        self.new_id()
    }

    /// The merge request a path segment names, when it is the one commits belong to.
    pub fn merge_request_of(&self, segment: &str) -> Option<u64> {
        segment
            .parse::<u64>()
            .ok()
            .filter(|n| self.merge_request == Some(*n))
    }

    /// The comments on merge request `mr`, each as `item(id, body)`, in id order.
    pub fn comments_on(&self, mr: u64, item: impl Fn(&u64, &String) -> Value) -> Vec<Value> {
        self.comments
            .iter()
            .filter(|(_, (m, _))| *m == mr)
            .map(|(id, (_, body))| item(id, body))
            .collect()
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    pub fn create_comment(&mut self, mr: u64, body: &str) -> u64 {
        let id = self.new_id();
        self.comments.insert(id, (mr, body.to_string()));
        self.comment_ops.push(CommentOp {
            op: "create",
            id,
            mr,
            body: body.to_string(),
        });
        id
    }

    /// Edits comment `id`; false when there is none.
    pub fn update_comment(&mut self, id: u64, body: &str) -> bool {
        let Some((mr, b)) = self.comments.get_mut(&id) else {
            return false;
        };
        *b = body.to_string();
        let mr = *mr;
        self.comment_ops.push(CommentOp {
            op: "update",
            id,
            mr,
            body: body.to_string(),
        });
        true
    }
}

pub type Handler = fn(&mut State, &Req) -> Resp;

/// A running stand-in.
#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<State>>,
    pub addr: SocketAddr,
}

impl Fake {
    pub async fn start(handler: Handler, token: &str, repo: &str) -> Fake {
        use warp::Filter;
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            repo: repo.to_string(),
            ..State::default()
        }));
        let st = state.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |m: warp::http::Method,
                      p: warp::path::FullPath,
                      q: String,
                      h: warp::http::HeaderMap,
                      b: bytes::Bytes| {
                    let req = Req {
                        method: m.to_string(),
                        path: p.as_str().to_string(),
                        query: q,
                        headers: h
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_ascii_lowercase(),
                                    v.to_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect(),
                        body: b.to_vec(),
                    };
                    let mut s = st.lock().unwrap();
                    let fault = s
                        .faults
                        .iter()
                        .position(|(pat, _)| req.path.contains(pat.as_str()))
                        .and_then(|i| s.faults.remove(i))
                        .map(|(_, f)| f);
                    let resp = if s.down {
                        Resp::json(500, serde_json::json!({"message": "Server Error"}))
                    } else {
                        match fault {
                            Some(Fault::ServerError) => {
                                Resp::json(500, serde_json::json!({"message": "Server Error"}))
                            }
                            Some(Fault::RateLimited(secs)) => {
                                let mut r =
                                    Resp::json(429, serde_json::json!({"message": "rate limited"}));
                                r.headers.push(("Retry-After".into(), secs.to_string()));
                                r
                            }
                            None => handler(&mut s, &req),
                        }
                    };
                    s.seen.push((req, resp.status));
                    let mut builder = warp::http::Response::builder()
                        .status(resp.status)
                        .header("content-type", resp.content_type);
                    for (k, v) in &resp.headers {
                        builder = builder.header(k.as_str(), v.as_str());
                    }
                    builder.body(resp.body).unwrap()
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Fake { state, addr }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request whose path contains `pattern` gets `fault`.
    pub fn fault(&self, pattern: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((pattern.to_string(), fault));
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn set_merge_request(&self, mr: Option<u64>) {
        self.state.lock().unwrap().merge_request = mr;
    }

    pub fn statuses(&self) -> Vec<StatusRec> {
        self.state.lock().unwrap().statuses.clone()
    }

    pub fn comment_ops(&self) -> Vec<CommentOp> {
        self.state.lock().unwrap().comment_ops.clone()
    }

    pub fn comments(&self) -> BTreeMap<u64, (u64, String)> {
        self.state.lock().unwrap().comments.clone()
    }

    pub fn deliveries(&self) -> Vec<Req> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Every request with the status it got.
    pub fn seen(&self) -> Vec<(Req, u16)> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests answered `status` whose path contains `pattern`.
    pub fn answered(&self, pattern: &str, status: u16) -> usize {
        self.seen()
            .iter()
            .filter(|(r, s)| *s == status && r.path.contains(pattern))
            .count()
    }
}

/// The body's keys must all be among `allowed`; `Err(key)` names the first that is not.
pub fn only_keys(body: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(k.clone()),
        None => Ok(()),
    }
}

pub fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `s` with `prefix` removed, split on `/` (the raw path: `%2F` stays encoded).
pub fn segments<'a>(path: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    let rest = path.strip_prefix(prefix)?;
    Some(rest.trim_start_matches('/').split('/').collect())
}

/// The body's string field `key`, when it has one.
pub fn str_field<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(|v| v.as_str())
}

/// The body's `body` field, when it is a non-empty string.
pub fn comment_text(body: &serde_json::Map<String, Value>) -> Option<&str> {
    str_field(body, "body").filter(|t| !t.is_empty())
}

/// The token of an `Authorization: Bearer <token>` or `Authorization: token <token>` header.
pub fn bearer_or_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("token "))
}
