//! Plan stage: from what was last synced and what the repository holds now, the runs to start,
//! the tests removed and the tests invalid. Pure: plain data in, plain data out.

use crate::source::tree::is_within;
use crate::spec::{Catalog, Diagnostic};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the last sync recorded of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Last valid revision (kept while the test is invalid, so a fix back to the same content
    /// does not run it again).
    pub revision: Option<String>,
    pub template_revision: Option<String>,
    pub file: String,
    pub valid: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prior {
    /// `None`: this repository was never synced; the sync records a baseline and runs nothing.
    pub commit: Option<String>,
    pub tests: BTreeMap<String, Known>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    New,
    Changed,
    TemplateChanged,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Changed => "changed",
            Reason::TemplateChanged => "template-changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedRun {
    pub test: String,
    pub revision: String,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub test: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    pub test: String,
    pub file: String,
    pub errors: Vec<Diagnostic>,
}

/// A test whose revision moved without running (suspended, `onChange: false`, the baseline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub test: String,
    pub revision: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub from: Option<String>,
    pub to: String,
    pub runs: Vec<PlannedRun>,
    pub removed: Vec<Removed>,
    pub invalid: Vec<Invalid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl Plan {
    pub fn is_baseline(&self) -> bool {
        self.from.is_none()
    }
}

/// Plans a sync to commit `to`. `changed` lists the paths the diff touched, or `None` after a
/// force-push or on a first sync, when only content revisions can be compared; it only
/// refines the reason, never whether a test runs: that depends on revisions alone.
pub fn plan(prior: &Prior, catalog: &Catalog, to: &str, changed: Option<&[String]>) -> Plan {
    let mut out = Plan {
        from: prior.commit.clone(),
        to: to.to_string(),
        runs: Vec::new(),
        removed: Vec::new(),
        invalid: Vec::new(),
        skipped: Vec::new(),
    };
    let baseline = prior.commit.is_none();
    for entry in &catalog.tests {
        let Some(rt) = &entry.resolved else {
            let dir = crate::source::tree::parent(&entry.file);
            out.invalid.push(Invalid {
                test: entry.name.clone().unwrap_or_else(|| entry.file.clone()),
                file: entry.file.clone(),
                errors: catalog
                    .diagnostics
                    .iter()
                    .filter(|d| d.file == entry.file || is_within(&d.file, dir))
                    .cloned()
                    .collect(),
            });
            continue;
        };
        let name = &rt.test.metadata.name;
        let known = prior.tests.get(name);
        let reason = match known {
            None => Reason::New,
            Some(k) if k.revision.as_deref() == Some(rt.revision.as_str()) => continue,
            Some(k) => {
                let template_moved =
                    k.template_revision != rt.template_revision && rt.template_revision.is_some();
                let own_files_touched =
                    changed.is_none_or(|paths| paths.iter().any(|p| is_within(p, &rt.dir)));
                if template_moved && !(own_files_touched && changed.is_some()) {
                    Reason::TemplateChanged
                } else {
                    Reason::Changed
                }
            }
        };
        let why = if baseline {
            Some("baseline")
        } else if rt.test.spec.suspend {
            Some("suspended")
        } else if !rt.test.spec.trigger.on_change {
            Some("onChange is false")
        } else {
            None
        };
        match why {
            Some(why) => out.skipped.push(Skipped {
                test: name.clone(),
                revision: rt.revision.clone(),
                why,
            }),
            None => out.runs.push(PlannedRun {
                test: name.clone(),
                revision: rt.revision.clone(),
                reason,
            }),
        }
    }
    // A test is removed only when nothing at its file claims the name any more: a spec that no
    // longer parses keeps its test (invalid, not deleted), so a typo never tears down a test.
    let names: std::collections::HashSet<&str> = catalog
        .tests
        .iter()
        .filter_map(|e| e.name.as_deref())
        .collect();
    let unnamed_files: std::collections::HashSet<&str> = catalog
        .tests
        .iter()
        .filter(|e| e.name.is_none())
        .map(|e| e.file.as_str())
        .collect();
    for (name, known) in &prior.tests {
        if !names.contains(name.as_str()) && !unnamed_files.contains(known.file.as_str()) {
            out.removed.push(Removed { test: name.clone() });
        }
    }
    out.runs.sort_by(|a, b| a.test.cmp(&b.test));
    out
}
