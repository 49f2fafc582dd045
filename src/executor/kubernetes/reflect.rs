//! List-then-watch of the objects matching a label selector, kept as a current snapshot:
//! resumes a cut watch from the last resourceVersion it saw (bookmarks included) and lists
//! again when the server answers `410 Gone` or fails.

use super::api::is_transient;
use futures::TryStreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, Instrument};

/// The objects as last seen; `listed` is false until the first list succeeded.
#[derive(Debug, Clone)]
pub struct Snapshot<K> {
    pub objects: BTreeMap<String, K>,
    pub listed: bool,
}

impl<K> Default for Snapshot<K> {
    fn default() -> Self {
        Snapshot {
            objects: BTreeMap::new(),
            listed: false,
        }
    }
}

/// Starts reflecting; the task ends when the receiver is dropped.
pub fn reflect<K>(api: Api<K>, what: &'static str, selector: String) -> watch::Receiver<Snapshot<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(Snapshot::default());
    let span = tracing::debug_span!("reflect", what, selector = %selector);
    tokio::spawn(
        async move {
            tokio::select! {
                _ = run(&api, &selector, &tx) => {}
                _ = tx.closed() => {}
            }
        }
        .instrument(span),
    );
    rx
}

enum Restart {
    Relist,
}

async fn run<K>(api: &Api<K>, selector: &str, tx: &watch::Sender<Snapshot<K>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let list = match api.list(&ListParams::default().labels(selector)).await {
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
        let mut objects: BTreeMap<String, K> =
            list.items.into_iter().map(|o| (o.name_any(), o)).collect();
        tx.send_replace(Snapshot {
            objects: objects.clone(),
            listed: true,
        });
        let Restart::Relist = watch_from(api, selector, &mut rv, &mut objects, tx).await;
        tokio::time::sleep(backoff).await;
    }
}

/// Watches from `rv` until the server says the version is gone or fails; a stream that
/// merely ends (server timeout, connection cut) is resumed from the last version seen.
async fn watch_from<K>(
    api: &Api<K>,
    selector: &str,
    rv: &mut String,
    objects: &mut BTreeMap<String, K>,
    tx: &watch::Sender<Snapshot<K>>,
) -> Restart
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    loop {
        let mut wp = WatchParams::default().labels(selector).timeout(290);
        wp.bookmarks = true;
        let stream = match api.watch(&wp, rv).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "watch failed; listing again");
                return Restart::Relist;
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
                        objects.insert(o.name_any(), o);
                        tx.send_replace(Snapshot {
                            objects: objects.clone(),
                            listed: true,
                        });
                    }
                    WatchEvent::Deleted(o) => {
                        if let Some(v) = o.resource_version() {
                            *rv = v;
                        }
                        objects.remove(&o.name_any());
                        tx.send_replace(Snapshot {
                            objects: objects.clone(),
                            listed: true,
                        });
                    }
                    WatchEvent::Bookmark(b) => *rv = b.metadata.resource_version,
                    WatchEvent::Error(s) => {
                        debug!(code = s.code, reason = %s.reason, "watch error; listing again");
                        return Restart::Relist;
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
