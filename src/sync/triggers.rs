//! Triggers feed one sync loop. Whatever arrives while a sync runs coalesces into exactly one
//! more sync; a trigger naming a commit that is already synced causes none.

use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Trigger {
    /// `webhook:github`, `poll`, `watch`, `api`, `start`.
    pub kind: String,
    /// The commit the trigger announces, when it names one.
    pub commit: Option<String>,
}

#[derive(Default)]
pub struct Triggers {
    notify: Notify,
    pending: Mutex<BTreeSet<Trigger>>,
}

impl Triggers {
    pub fn new() -> Triggers {
        Triggers::default()
    }

    pub fn fire(&self, kind: &str, commit: Option<String>) {
        if let Ok(mut p) = self.pending.lock() {
            // Bounded: a flood of distinct commits still keeps one entry per kind and commit,
            // and only the set's size matters to the loop.
            if p.len() < 1024 {
                p.insert(Trigger {
                    kind: kind.to_string(),
                    commit,
                });
            }
        }
        self.notify.notify_one();
    }

    /// Waits for at least one trigger and takes everything pending.
    pub async fn next(&self) -> Vec<Trigger> {
        loop {
            self.notify.notified().await;
            let taken: Vec<Trigger> = match self.pending.lock() {
                Ok(mut p) => std::mem::take(&mut *p).into_iter().collect(),
                Err(_) => Vec::new(),
            };
            if !taken.is_empty() {
                return taken;
            }
        }
    }
}

/// Whether a batch of triggers needs a sync, given the commit last synced: not when every one
/// of them names exactly that commit (a webhook repeated, or one for a push already fetched).
pub fn needs_sync(batch: &[Trigger], synced: Option<&str>) -> bool {
    batch
        .iter()
        .any(|t| t.commit.is_none() || t.commit.as_deref() != synced)
}

/// `webhook:github,poll` for logs and the runs' trigger column.
pub fn describe(batch: &[Trigger]) -> String {
    let kinds: BTreeSet<&str> = batch.iter().map(|t| t.kind.as_str()).collect();
    kinds.into_iter().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_for_the_synced_commit_need_no_sync() {
        let t = |kind: &str, c: Option<&str>| Trigger {
            kind: kind.into(),
            commit: c.map(str::to_string),
        };
        assert!(!needs_sync(
            &[t("webhook:github", Some("abc"))],
            Some("abc")
        ));
        assert!(needs_sync(
            &[t("webhook:github", Some("abc")), t("poll", None)],
            Some("abc")
        ));
        assert!(needs_sync(&[t("webhook:github", Some("def"))], Some("abc")));
        assert!(needs_sync(&[t("api", None)], None));
    }

    #[tokio::test]
    async fn many_fires_coalesce_into_one_wakeup() {
        let tr = Triggers::new();
        for _ in 0..1000 {
            tr.fire("webhook:github", Some("abc".into()));
        }
        let batch = tr.next().await;
        assert_eq!(batch.len(), 1);
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), tr.next()).await;
        assert!(again.is_err(), "no second wakeup without a new trigger");
    }
}
