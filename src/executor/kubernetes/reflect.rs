//! List-then-watch of the objects matching a label selector, namespace-wide, handed to a
//! sink as changes: resumes a cut watch from the last resourceVersion it saw (bookmarks
//! included) and lists again when the server answers `410 Gone` or fails. One reflector per
//! kind serves every run, as a controller's informer does, so the load on the apiserver does
//! not grow with the number of runs.

use super::api::is_transient;
use futures::TryStreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;
use tracing::debug;

/// What a reflector hands its sink.
pub enum Change<K> {
    /// A fresh list: every object that matches now (the sink forgets the others).
    Listed(Vec<K>),
    Applied(K),
    Deleted(K),
}

/// Reflects until the future is dropped; never returns on its own (errors are retried).
pub async fn reflect<K, F>(api: Api<K>, selector: String, mut sink: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Change<K>) + Send,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            Err(e) => {
                debug!(error = %e, transient = is_transient(&e), "list failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut rv = list.metadata.resource_version.clone().unwrap_or_default();
        sink(Change::Listed(list.items));
        watch_from(&api, &selector, &mut rv, &mut sink).await;
        tokio::time::sleep(backoff).await;
    }
}

/// Watches from `rv` until the server says the version is gone or fails (then the caller
/// lists again); a stream that merely ends (server timeout, connection cut) is resumed from
/// the last version seen.
async fn watch_from<K, F>(api: &Api<K>, selector: &str, rv: &mut String, sink: &mut F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Change<K>) + Send,
{
    loop {
        let mut wp = WatchParams::default().labels(selector).timeout(290);
        wp.bookmarks = true;
        let stream = match api.watch(&wp, rv).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "watch failed; listing again");
                return;
            }
        };
        let mut stream = std::pin::pin!(stream.into_stream());
        loop {
            match stream.try_next().await {
                Ok(Some(ev)) => match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        if let Some(v) = o.resource_version() {
                            *rv = v;
                        }
                        sink(Change::Applied(o));
                    }
                    WatchEvent::Deleted(o) => {
                        if let Some(v) = o.resource_version() {
                            *rv = v;
                        }
                        sink(Change::Deleted(o));
                    }
                    WatchEvent::Bookmark(b) => *rv = b.metadata.resource_version,
                    WatchEvent::Error(s) => {
                        debug!(code = s.code, reason = %s.reason, "watch error; listing again");
                        return;
                    }
                },
                Ok(None) => break, // ended: resume from rv
                Err(e) => {
                    debug!(error = %e, "watch stream broke; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The name an object is kept under.
pub fn key<K: Resource>(o: &K) -> String {
    o.name_any()
}
