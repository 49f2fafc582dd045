//! Real parts for integration tests: a git remote served by `git daemon` on loopback, a
//! PostgreSQL schema of its own per test, and a raw HTTP/1.1 client.
#![allow(dead_code)]

pub mod daemon;
pub mod http_git;
pub mod kube_api;
pub mod kube_ground;
pub mod logs;
pub mod operator;
pub mod parts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository (the remote) and a work clone to commit and push from.
pub struct Remote {
    pub _dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
    daemon: Option<Child>,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Remote {
    pub fn new() -> Remote {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(
            dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Remote {
            _dir: dir,
            bare,
            work,
            daemon: None,
            port: 0,
        }
    }

    pub fn path_url(&self) -> String {
        self.bare.display().to_string()
    }

    /// Serves the bare repository over `git://127.0.0.1:<port>/remote.git`.
    pub fn serve(&mut self, port: Option<u16>) -> String {
        let port = port.unwrap_or_else(free_port);
        let base = self.bare.parent().unwrap().to_path_buf();
        // git-daemon itself, not the `git` wrapper, so that killing it closes the port.
        let exec_path = git(&base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                base.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        self.daemon = Some(child);
        self.port = port;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("git://127.0.0.1:{port}/remote.git")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes `files` (None deletes), commits and pushes; returns the new head. On `main` it
    /// works like a person: start from what the remote has (perfsync's results included) and
    /// push again if the remote moved meanwhile. On any other local branch the push rewrites
    /// main's history (a force-push).
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        let on_main = git(&self.work, &["symbolic-ref", "--short", "HEAD"]) == "main";
        for _ in 0..20 {
            if on_main && !git(&self.work, &["ls-remote", "origin", "refs/heads/main"]).is_empty() {
                git(&self.work, &["fetch", "-q", "origin", "main"]);
                git(&self.work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
            }
            for (path, content) in files {
                let p = self.work.join(path);
                match content {
                    Some(c) => {
                        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                        std::fs::write(&p, c).unwrap();
                    }
                    None => {
                        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
                    }
                }
            }
            git(&self.work, &["add", "-A"]);
            git(
                &self.work,
                &["commit", "-q", "--allow-empty", "-m", message],
            );
            let force = if on_main { "--no-force" } else { "--force" };
            let pushed = Command::new("git")
                .args(["push", "-q", force, "origin", "HEAD:main"])
                .current_dir(&self.work)
                .output()
                .expect("git push");
            if pushed.status.success() {
                return git(&self.work, &["rev-parse", "HEAD"]);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not push to the test remote");
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn spec(name: &str, script: &str) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: {script}\n  targets: [http://127.0.0.1:18080]\n"
    )
}

pub fn script(marker: &str) -> String {
    format!("import http from 'k6/http';\nexport default function () {{ http.get('http://127.0.0.1:18080/{marker}'); }}\n")
}

/// `n` tests `t0..tn` as files for [`Remote::commit`].
pub fn tests_files(n: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        m.insert(
            format!("tests/t{i}/perftest.yaml"),
            spec(&format!("t{i}"), "script.js"),
        );
        m.insert(format!("tests/t{i}/script.js"), script(&format!("t{i}")));
    }
    m
}

pub fn as_files(m: &BTreeMap<String, String>) -> Vec<(&str, Option<&str>)> {
    m.iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect()
}

/// A PostgreSQL schema of its own on the machine's server, dropped by [`TestDb::drop_schema`].
pub struct TestDb {
    pub url: String,
    pub schema: String,
}

pub const BASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

impl TestDb {
    pub async fn new() -> TestDb {
        let schema = format!("t_{}_{}", std::process::id(), fastrand::u64(..));
        let admin = sqlx::PgPool::connect(BASE_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/setup.sh starts it)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        TestDb {
            url: format!("{BASE_URL}?options=-c%20search_path%3D{schema}"),
            schema,
        }
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        let pool = perfsync::record::db::pool(&self.url).unwrap();
        perfsync::record::db::migrate(&pool).await.unwrap();
        pool
    }

    pub async fn drop_schema(self) {
        if let Ok(admin) = sqlx::PgPool::connect(BASE_URL).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.schema
            )))
            .execute(&admin)
            .await;
        }
    }
}

/// A raw HTTP/1.1 request; returns the status code and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body; a failed write is fine then.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A signed GitHub push webhook for `head` on `main`; returns the status code and body.
pub async fn github_push(addr: std::net::SocketAddr, secret: &str, head: &str) -> (u16, String) {
    let body = format!("{{\"ref\":\"refs/heads/main\",\"after\":\"{head}\",\"repository\":{{\"full_name\":\"qa/load-tests\"}}}}");
    let sig = format!(
        "sha256={}",
        perfsync::server::hooks::sign(secret, body.as_bytes())
    );
    http(
        addr,
        "POST",
        "/hooks/github",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        body.as_bytes(),
    )
    .await
}
