//! A small HTTP service on loopback for the examples and the demo to load-test: it answers
//! like a shop's API, with a little latency, so runs have something real to measure. Its
//! latency can be stepped up while it runs (`PUT /admin/delay` with a number of
//! milliseconds), so a regression can be shown and tested end to end.

use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warp::Filter;

/// Extra milliseconds added to every `/api` answer.
#[derive(Clone, Default)]
pub struct Delay(Arc<AtomicU64>);

impl Delay {
    pub fn set(&self, ms: u64) {
        self.0.store(ms.min(10_000), Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn jitter(base_ms: u64) -> Duration {
    Duration::from_millis(base_ms + fastrand::u64(0..=base_ms))
}

pub fn routes() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    routes_with(Delay::default())
}

pub fn routes_with(
    delay: Delay,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let d = delay.clone();
    let extra = warp::path::full()
        .then(move |p: warp::path::FullPath| {
            let ms = if p.as_str().starts_with("/api/") {
                d.get()
            } else {
                0
            };
            async move {
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        })
        .untuple_one();
    let d = delay.clone();
    let set_delay = warp::put()
        .and(warp::path!("admin" / "delay"))
        .and(warp::body::content_length_limit(32))
        .and(warp::body::bytes())
        .map(move |b: bytes::Bytes| {
            match std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                Some(ms) => {
                    d.set(ms);
                    warp::reply::with_status(
                        warp::reply::json(&json!({"delayMs": d.get()})),
                        warp::http::StatusCode::OK,
                    )
                }
                None => warp::reply::with_status(
                    warp::reply::json(&json!({"error": "the body is a number of milliseconds"})),
                    warp::http::StatusCode::BAD_REQUEST,
                ),
            }
        });
    let health = warp::path!("health").map(|| warp::reply::json(&json!({"status": "ok"})));
    let items = warp::get().and(warp::path!("api" / "items")).and(warp::query::<std::collections::HashMap<String, String>>()).then(|q: std::collections::HashMap<String, String>| async move {
        tokio::time::sleep(jitter(2)).await;
        let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        warp::reply::json(&json!({"page": page, "items": (1..=10).map(|i| json!({"id": (page - 1) * 10 + i, "name": format!("item {i}")})).collect::<Vec<_>>()}))
    });
    let item = warp::get()
        .and(warp::path!("api" / "items" / u32))
        .then(|id: u32| async move {
            tokio::time::sleep(jitter(1)).await;
            warp::reply::json(
                &json!({"id": id, "name": format!("item {id}"), "price": 10 + id % 90}),
            )
        });
    let search = warp::get()
        .and(warp::path!("api" / "search"))
        .then(|| async {
            tokio::time::sleep(jitter(3)).await;
            warp::reply::json(&json!({"count": 1 + fastrand::u32(0..20)}))
        });
    let orders = warp::get()
        .and(warp::path!("api" / "orders"))
        .then(|| async {
            tokio::time::sleep(jitter(2)).await;
            warp::reply::json(&json!({"orders": []}))
        });
    let login = warp::post()
        .and(warp::path!("api" / "login"))
        .then(|| async {
            tokio::time::sleep(jitter(4)).await;
            warp::reply::json(&json!({"token": "demo"}))
        });
    let checkout = warp::post()
        .and(warp::path!("api" / "checkout"))
        .then(|| async {
            tokio::time::sleep(jitter(5)).await;
            warp::reply::with_status(
                warp::reply::json(&json!({"order": fastrand::u32(..)})),
                warp::http::StatusCode::CREATED,
            )
        });
    let slow = warp::path!("slow" / u64).then(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
        "slow"
    });
    let api = extra.and(items.or(item).or(search).or(orders).or(login).or(checkout));
    health.or(set_delay).or(api).or(slow)
}

/// Serves until the listener's task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    warp::serve(routes()).incoming(listener).run().await;
}
