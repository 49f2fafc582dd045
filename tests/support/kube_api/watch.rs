//! Watch streams: the events after a version (every current object as ADDED when none is
//! given), then live ones, filtered by label and field selectors; bookmarks every second when
//! asked for; `410 Expired` as an ERROR event for a version older than what is kept; cut
//! after `timeoutSeconds` or an injected cut. Streams are counted while open.

use super::select::{selector_matches, FieldSelector};
use super::{lock, status, Body, Event, Store, Target};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn event_line(kind: &str, object: &serde_json::Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// Counts a stream as open from its creation until it is dropped.
struct Open(Arc<Store>);

impl Open {
    fn new(store: Arc<Store>) -> Open {
        let now = store.watches_open.fetch_add(1, Ordering::SeqCst) + 1;
        store.watches_max.fetch_max(now, Ordering::SeqCst);
        Open(store)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.watches_open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn watch_stream(
    store: Arc<Store>,
    t: &Target,
    q: &BTreeMap<String, String>,
    fields: FieldSelector,
    cut: Option<Duration>,
) -> Response<Body> {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let end_after = cut.map_or(timeout, |c| c.min(timeout));
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .filter(|v| *v > 0);
    let (coll, ns) = (t.coll.clone(), t.ns.clone());
    let mut live = store.events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let matches = {
        let (coll, ns, selector) = (coll.clone(), ns.clone(), selector.clone());
        move |e: &Event| {
            e.coll == coll
                && (ns.is_empty() || e.ns == ns)
                && selector_matches(&selector, &e.object)
                && fields.matches(&e.object)
        }
    };
    let mut backlog: Vec<Bytes> = Vec::new();
    let mut last: u64;
    {
        let inner = lock(&store.inner);
        match from {
            Some(v) if v + 1 < inner.oldest => {
                let msg = format!("too old resource version: {v} ({})", inner.oldest);
                backlog.push(event_line("ERROR", &status(410, "Expired", &msg)));
                last = u64::MAX;
            }
            Some(v) => {
                for e in inner.events.iter().filter(|e| e.rv > v && matches(e)) {
                    backlog.push(event_line(e.kind, &e.object));
                }
                last = inner.rv;
            }
            None => {
                let ns_only = (!ns.is_empty()).then_some(ns.as_str());
                for (k, o) in super::store::in_coll(&inner, &coll, ns_only) {
                    let e = Event {
                        rv: 0,
                        kind: "ADDED",
                        coll: k.coll.clone(),
                        ns: k.ns.clone(),
                        object: o.clone(),
                    };
                    if matches(&e) {
                        backlog.push(event_line("ADDED", o));
                    }
                }
                last = inner.rv;
            }
        }
    }
    let kind = store.kind(&coll);
    let api_version = store.api_version(&coll);
    let open = Open::new(store.clone());
    tokio::spawn(async move {
        let _open = open;
        for b in backlog {
            if tx.send(Ok(Frame::data(b))).await.is_err() {
                return;
            }
        }
        if last == u64::MAX {
            return;
        }
        let deadline = tokio::time::Instant::now() + end_after;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) if e.rv > last && matches(&e) => {
                        last = e.rv;
                        if tx.send(Ok(Frame::data(event_line(e.kind, &e.object)))).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    // Fell behind: end the stream; the client resumes or lists again.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let rv = store.current_rv();
                    let b = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(Ok(Frame::data(event_line("BOOKMARK", &b)))).await.is_err() { return; }
                }
                // The client went away.
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}
