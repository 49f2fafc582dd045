//! The REST front: bearer token, path → collection, the verb RBAC sees, authorization, injected
//! faults, then the Store. A server-side apply that would create is authorized as `create`
//! as well, as the apiserver does.

use super::kubelet::LogQuery;
use super::select::FieldSelector;
use super::watch::watch_stream;
use super::{lock, status, Access, Body, Coll, Store, Target};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Target {
        coll: Coll::new(group, resource),
        ns,
        name,
        sub,
    })
}

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn full(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_default()
}

fn answer(r: Result<Value, (u16, Value)>, ok: u16) -> Response<Body> {
    match r {
        Ok(v) => full(ok, &v),
        Err((code, s)) => full(code, &s),
    }
}

/// The verb as the apiserver's RequestInfo derives it.
fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn bad_request(msg: &str) -> Response<Body> {
    full(400, &status(400, "BadRequest", msg))
}

pub(super) async fn handle(
    store: Arc<Store>,
    token: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let expected = format!("Bearer {token}");
    let authed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authed {
        return full(401, &status(401, "Unauthorized", "Unauthorized"));
    }
    let (parts, body) = req.into_parts();
    let q = query(&parts.uri);
    let Some(t) = parse_path(parts.uri.path()) else {
        let msg = "the server could not find the requested resource";
        return full(404, &status(404, "NotFound", msg));
    };
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let access = Access {
        verb: verb(&parts.method, t.name.is_some(), watch).into(),
        group: t.coll.group.clone(),
        resource: match &t.sub {
            Some(s) => format!("{}/{s}", t.coll.resource),
            None => t.coll.resource.clone(),
        },
    };
    store.count_request(&access);
    if let Err((code, s)) = store.authorize(&access, &t.ns, t.name.as_deref()) {
        return full(code, &s);
    }
    let faults = lock(&store.faults).clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let roll = fastrand::f64();
    if roll < faults.error_500 {
        *lock(&store.injected) += 1;
        let msg = "injected: etcdserver: request timed out";
        return full(500, &status(500, "InternalError", msg));
    }
    if roll < faults.error_500 + faults.throttle_429 {
        *lock(&store.injected) += 1;
        let msg = "injected: too many requests";
        let mut r = full(429, &status(429, "TooManyRequests", msg));
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
        return r;
    }
    let is_write = matches!(parts.method, Method::PUT | Method::PATCH);
    if is_write && fastrand::f64() < faults.conflict_409 {
        *lock(&store.injected) += 1;
        return full(409, &status(409, "Conflict", "injected: the object has been modified; please apply your changes to the latest version and try again"));
    }
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes)
            .ok()
            .or_else(|| serde_yaml::from_slice(&bytes).ok())
    };
    let ns = t.ns.clone();
    let coll = t.coll.clone();
    let status_only = t.sub.as_deref() == Some("status");
    let labels = q.get("labelSelector").cloned().unwrap_or_default();
    let fields = match FieldSelector::parse(&coll, q.get("fieldSelector").map_or("", |s| s)) {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    match (parts.method.clone(), &t.name, t.sub.as_deref()) {
        (Method::GET, None, _) if watch => {
            watch_stream(store, &t, &q, fields, faults.cut_watch_after)
        }
        (Method::GET, None, _) => {
            let items =
                store.list_fields(&coll, (!ns.is_empty()).then_some(&*ns), &labels, &fields);
            full(
                200,
                &json!({
                    "kind": format!("{}List", store.kind(&coll)),
                    "apiVersion": store.api_version(&coll),
                    "metadata": {"resourceVersion": store.current_rv().to_string()},
                    "items": items,
                }),
            )
        }
        (Method::GET, Some(name), Some("log")) => {
            let lq = LogQuery {
                container: q.get("container").cloned(),
                tail_lines: q.get("tailLines").cloned(),
                limit_bytes: q.get("limitBytes").cloned(),
            };
            match store.read_log(&ns, name, &lq) {
                Ok(text) => Response::builder()
                    .status(200)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(text)).boxed())
                    .unwrap_or_default(),
                Err((code, s)) => full(code, &s),
            }
        }
        (Method::GET, Some(name), _) => match store.get(&coll, &ns, name) {
            Some(v) => full(200, &v),
            None => answer(Err(super::not_found(&coll, name)), 200),
        },
        (Method::POST, None, _) => match parsed {
            Some(obj) => {
                if coll.resource == "customresourcedefinitions" {
                    store.register_crd(&obj);
                }
                answer(store.create(&coll, &ns, obj), 201)
            }
            None => bad_request("empty body"),
        },
        (Method::PUT, Some(name), _) => match parsed {
            Some(obj) => answer(store.update(&coll, &ns, name, obj, status_only), 200),
            None => bad_request("empty body"),
        },
        (Method::PATCH, Some(name), _) => {
            let ct = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let Some(patch) = parsed else {
                return bad_request("empty patch");
            };
            if ct.starts_with("application/apply-patch") {
                let Some(manager) = q.get("fieldManager") else {
                    return bad_request("PATCH with apply requires fieldManager");
                };
                // An apply that creates must also be allowed to create.
                if !status_only && store.get(&coll, &ns, name).is_none() {
                    let create = Access {
                        verb: "create".into(),
                        ..access.clone()
                    };
                    if let Err((code, s)) = store.authorize(&create, &ns, Some(name)) {
                        return full(code, &s);
                    }
                }
                let force = q.get("force").is_some_and(|f| f == "true");
                answer(
                    store.apply(&coll, &ns, name, &patch, manager, force, status_only),
                    200,
                )
            } else if ct.starts_with("application/merge-patch")
                || ct.starts_with("application/strategic-merge-patch")
            {
                answer(store.merge(&coll, &ns, name, &patch, status_only), 200)
            } else {
                full(415, &status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml; got {ct}")))
            }
        }
        (Method::DELETE, Some(name), _) => {
            let orphan = q.get("propagationPolicy").is_some_and(|p| p == "Orphan")
                || parsed
                    .as_ref()
                    .and_then(|b| b.get("propagationPolicy"))
                    .is_some_and(|p| p == "Orphan");
            answer(store.delete(&coll, &ns, name, orphan), 200)
        }
        (Method::DELETE, None, _) => {
            let items = store.list_fields(&coll, Some(&ns), &labels, &fields);
            for o in &items {
                if let Some(n) = o.pointer("/metadata/name").and_then(|v| v.as_str()) {
                    let _ = store.delete(&coll, &ns, n, false);
                }
            }
            full(
                200,
                &json!({"kind": format!("{}List", store.kind(&coll)), "apiVersion": store.api_version(&coll), "metadata": {}, "items": items}),
            )
        }
        _ => full(405, &status(405, "MethodNotAllowed", "method not allowed")),
    }
}
