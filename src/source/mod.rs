//! Source stage: where the repository's content comes from (a directory, git).

pub mod dir;
pub mod git;
pub mod tree;

pub use tree::{Entry, Tree};

/// Bounds on what one read of a commit may hold: a sync refuses a commit past them (naming
/// it and the limit) instead of reading it. Entries are files and symlinks; bytes are the
/// content perfsync reads (files up to [`dir::MAX_FILE_BYTES`] and symlink targets, each
/// path counted, identical files included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

pub const DEFAULT_MAX_ENTRIES: u64 = 200_000;
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a directory: pass the root of a test repository")]
    NotADirectory(String),
    #[error("{0}: folders nest too deeply; perfsync reads at most 64 levels")]
    TooDeep(String),
    #[error("{0}: the path is not valid UTF-8; rename it")]
    NonUtf8Path(String),
    #[error("git {url}: cannot {what}: {message}")]
    Git {
        url: String,
        what: String,
        message: String,
    },
    #[error("git {url}: branch `{branch}` does not exist on the remote; push it or fix repository.branch")]
    BranchMissing { url: String, branch: String },
    #[error("git {url}: no commit `{rev}` in the fetched history")]
    UnknownRevision { url: String, rev: String },
    #[error("git {url}: commit {commit}: {folders} hold more than {limit} files, symlinks or folders (repository.maxTreeEntries); nothing of this commit was synced")]
    TooManyEntries {
        url: String,
        commit: String,
        folders: String,
        limit: u64,
    },
    #[error("git {url}: commit {commit}: {folders} hold more than {limit} bytes of files and symlinks to read (repository.maxTreeBytes); nothing of this commit was synced")]
    TooManyBytes {
        url: String,
        commit: String,
        folders: String,
        limit: u64,
    },
    #[error("git {url}: commit {commit}: `{path}` nests folders more than {limit} deep; perfsync reads no deeper")]
    TreeTooDeep {
        url: String,
        commit: String,
        path: String,
        limit: usize,
    },
}
