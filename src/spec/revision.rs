//! A test's revision: a content hash of the rendered test. It depends on what would run
//! (the spec after template expansion and every bundle file), never on file order,
//! timestamps, the commit or the machine.

use super::bundle::Bundle;
use super::model::{PerfTemplate, PerfTest};
use sha2::{Digest, Sha256};

/// Bumped whenever what goes into the hash changes, so old and new revisions never collide.
const FORMAT: &[u8] = b"perfsync-revision-v1\0";

pub fn revision(test: &PerfTest, bundle: &Bundle) -> String {
    hash(test, bundle)
}

/// A template's own content hash, to tell a template change from a test change.
pub fn template_revision(template: &PerfTemplate, files: &Bundle) -> String {
    hash(template, files)
}

fn hash<T: serde::Serialize>(doc: &T, bundle: &Bundle) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT);
    // serde_json over structs and BTreeMaps is deterministic: field order is declaration
    // order, map keys are sorted. Serialising plain data cannot fail.
    let spec = serde_json::to_vec(doc).unwrap_or_default();
    h.update((spec.len() as u64).to_le_bytes());
    h.update(&spec);
    h.update((bundle.entry.len() as u64).to_le_bytes());
    h.update(bundle.entry.as_bytes());
    for (path, content) in &bundle.files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 10 hex digits: what object names carry.
pub fn short(revision: &str) -> &str {
    &revision[..revision.len().min(10)]
}
