//! Commands that need the async runtime: `serve` and `migrate`.

use super::{load_config, EXIT_OK, EXIT_USAGE};
use crate::daemon;
use crate::record::db;
use std::path::Path;

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_USAGE
        })
}

/// Two malloc arenas at most: the daemon's threads mostly wait, and glibc's default of eight
/// per core keeps freed memory scattered over arenas that are never trimmed together.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any worker thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

pub fn serve(config_path: &Path) -> i32 {
    limit_malloc_arenas();
    let config = match load_config(Some(config_path)) {
        Ok(Some(c)) => c,
        Ok(None) => return EXIT_USAGE,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let stop = daemon::stop_on_signals();
        let parts = match daemon::prepare(config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        };
        match daemon::run(parts, stop).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}

pub fn migrate(config_path: Option<&Path>) -> i32 {
    let (_, url) = match super::config_and_database(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let result = async { db::migrate(&db::pool(&url)?).await }.await;
        match result {
            Ok(()) => {
                println!("migrations applied to {}", db::redact(&url));
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        }
    })
}

pub fn demo_target(listen: &str) -> i32 {
    let addr: std::net::SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --listen {listen}: {e}");
            return EXIT_USAGE;
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("error: the demo target only listens on loopback (127.0.0.1 or ::1)");
        return EXIT_USAGE;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "demo target listening");
                tokio::select! {
                    _ = crate::demo::serve(l) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                EXIT_USAGE
            }
        }
    })
}
