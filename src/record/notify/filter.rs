//! Which run endings a sink hears about: its `on:` list and its `tests:` label selector.

use crate::config::notifications::{LabelSelector, NotifyOn};
use crate::record::outbox::RunEvent;
use crate::results::summary::EndState;

/// The entries of `on` that `ev` matches (empty: the sink gets nothing). A start event
/// matches nothing; a test the selector does not select matches nothing.
pub fn matched(on: &[NotifyOn], tests: Option<&LabelSelector>, ev: &RunEvent) -> Vec<NotifyOn> {
    let Some(status) = ev.status else {
        return Vec::new();
    };
    if tests.is_some_and(|s| !s.matches(&ev.labels)) {
        return Vec::new();
    }
    let mut out: Vec<NotifyOn> = on
        .iter()
        .copied()
        .filter(|o| match o {
            NotifyOn::Failed => status == EndState::Failed,
            NotifyOn::Error => status == EndState::Error,
            NotifyOn::Timeout => status == EndState::Timeout,
            NotifyOn::Aborted => status == EndState::Aborted,
            NotifyOn::Succeeded => status == EndState::Succeeded,
            NotifyOn::Regression => ev.regression,
            NotifyOn::Recovered => ev.recovered,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ev(status: Option<EndState>, team: &str) -> RunEvent {
        serde_json::from_value(serde_json::json!({
            "run": "r", "test": "t", "revision": "v", "trigger": "change", "status": status,
            "labels": {"team": team}
        }))
        .unwrap()
    }

    #[test]
    fn on_lists_and_selectors_hold() {
        let failed = [NotifyOn::Failed];
        assert_eq!(
            matched(&failed, None, &ev(Some(EndState::Failed), "a")),
            vec![NotifyOn::Failed]
        );
        assert!(matched(&failed, None, &ev(Some(EndState::Succeeded), "a")).is_empty());
        assert!(
            matched(&failed, None, &ev(None, "a")).is_empty(),
            "a start is never notified"
        );
        let shop = LabelSelector {
            match_labels: BTreeMap::from([("team".to_string(), "shop".to_string())]),
            match_expressions: vec![],
        };
        assert!(matched(&failed, Some(&shop), &ev(Some(EndState::Failed), "billing")).is_empty());
        assert_eq!(
            matched(&failed, Some(&shop), &ev(Some(EndState::Failed), "shop")).len(),
            1
        );
        let mut r = ev(Some(EndState::Succeeded), "a");
        r.recovered = true;
        r.regression = true;
        assert_eq!(
            matched(
                &[NotifyOn::Recovered, NotifyOn::Regression, NotifyOn::Failed],
                None,
                &r
            ),
            vec![NotifyOn::Regression, NotifyOn::Recovered]
        );
        for (s, o) in [
            (EndState::Error, NotifyOn::Error),
            (EndState::Timeout, NotifyOn::Timeout),
            (EndState::Aborted, NotifyOn::Aborted),
            (EndState::Succeeded, NotifyOn::Succeeded),
        ] {
            assert_eq!(matched(&[o], None, &ev(Some(s), "a")), vec![o]);
        }
    }
}
