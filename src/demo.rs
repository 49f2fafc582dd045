//! A small HTTP service on loopback for the examples and the demo to load-test: it answers
//! like a shop's API, with a little latency, so runs have something real to measure.

use serde_json::json;
use std::time::Duration;
use warp::Filter;

fn jitter(base_ms: u64) -> Duration {
    Duration::from_millis(base_ms + fastrand::u64(0..=base_ms))
}

pub fn routes() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
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
    health
        .or(items)
        .or(item)
        .or(search)
        .or(orders)
        .or(login)
        .or(checkout)
        .or(slow)
}

/// Serves until the listener's task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    warp::serve(routes()).incoming(listener).run().await;
}
