//! Source stage: where the repository's content comes from (a directory, git).

pub mod dir;
pub mod git;
pub mod tree;

pub use tree::{Entry, Tree};

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
}
