//! Which queued runs start now. Pure: at most `max` runs at once, one per test, and only the
//! newest queued revision of a test waits (older ones are superseded).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub test: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub start: Vec<String>,
    pub supersede: Vec<String>,
}

/// `queued` oldest first; `running` the tests with an active run.
pub fn decide(queued: &[Queued], running: &BTreeSet<String>, max: usize) -> Decision {
    let mut newest: BTreeMap<&str, &Queued> = BTreeMap::new();
    for q in queued {
        newest.insert(&q.test, q);
    }
    let mut d = Decision::default();
    let mut slots = max.saturating_sub(running.len());
    for q in queued {
        if newest.get(q.test.as_str()).is_some_and(|n| n.id != q.id) {
            d.supersede.push(q.id.clone());
            continue;
        }
        if running.contains(&q.test) || slots == 0 {
            continue;
        }
        d.start.push(q.id.clone());
        slots -= 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, test: &str) -> Queued {
        Queued {
            id: id.into(),
            test: test.into(),
        }
    }

    #[test]
    fn one_run_per_test_and_at_most_max() {
        let queued = [q("a1", "a"), q("b1", "b"), q("c1", "c"), q("d1", "d")];
        let d = decide(&queued, &BTreeSet::from(["b".to_string()]), 3);
        assert_eq!(d.start, vec!["a1", "c1"], "b is running; two slots left");
        assert!(d.supersede.is_empty());
    }

    #[test]
    fn only_the_newest_revision_waits() {
        let queued = [
            q("a-r1", "a"),
            q("a-r2", "a"),
            q("a-r3", "a"),
            q("b-r1", "b"),
        ];
        let d = decide(&queued, &BTreeSet::from(["a".to_string()]), 5);
        assert_eq!(d.supersede, vec!["a-r1", "a-r2"]);
        assert_eq!(d.start, vec!["b-r1"], "a-r3 waits behind a's active run");
    }
}
