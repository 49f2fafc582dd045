//! A git source on libgit2: one branch of one remote, fetched into a bare clone kept in the
//! state directory (reused across restarts), read straight from the object database so a
//! sync never depends on a work tree. Blocking: call it from `spawn_blocking`.

use super::dir::MAX_FILE_BYTES;
use super::tree::{Entry, Tree};
use super::{Limits, SourceError};
use git2::{Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Folders nested deeper than this are refused instead of walked (as in a directory).
const MAX_DEPTH: usize = 64;
/// The git file mode of a symbolic link.
const SYMLINK_MODE: i32 = 0o120000;

/// Credentials, resolved from environment variables or files by the caller; never logged.
#[derive(Clone, Default)]
pub struct GitAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_key: Option<PathBuf>,
    /// OpenSSH `known_hosts` content the SSH host key must appear in. Without it, libgit2's
    /// own check (the user's `~/.ssh/known_hosts`) applies.
    pub known_hosts: Option<String>,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssh_key", &self.ssh_key)
            .field(
                "known_hosts",
                &self.known_hosts.as_ref().map(|k| k.lines().count()),
            )
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct GitSource {
    url: String,
    branch: String,
    clone_dir: PathBuf,
    auth: GitAuth,
    /// Clears lock files a killed process left in the clone, once per process.
    unlocked: std::sync::Arc<std::sync::Once>,
    limits: Limits,
    /// Shared by clones of this source, so every snapshot it hands out shares blobs.
    blobs: Arc<Mutex<BlobCache>>,
}

/// One copy per blob id: a blob read while a snapshot still holds it is shared, not copied.
/// Weak, so the cache never keeps a blob alive that no snapshot holds.
#[derive(Default)]
struct BlobCache {
    map: HashMap<Oid, Weak<[u8]>>,
    /// Entries alive at the last sweep; the next sweep waits until the map doubles.
    live: usize,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobCache({} ids)", self.map.len())
    }
}

impl BlobCache {
    fn get(&self, oid: Oid) -> Option<Arc<[u8]>> {
        self.map.get(&oid).and_then(Weak::upgrade)
    }

    fn put(&mut self, oid: Oid, bytes: &Arc<[u8]>) {
        self.map.insert(oid, Arc::downgrade(bytes));
        if self.map.len() > 2 * self.live + 1024 {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.live = self.map.len();
        }
    }
}

/// Why a walk or a read of a commit stopped; turned into a [`SourceError`] with its context.
enum Stop {
    Git(git2::Error),
    Entries,
    Bytes,
    Deep(String),
}

impl From<git2::Error> for Stop {
    fn from(e: git2::Error) -> Stop {
        Stop::Git(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    pub author_name: String,
    pub author_email: String,
    pub summary: String,
    pub time: i64,
}

/// Strips userinfo from a URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn git_err(url: &str, what: &str, e: git2::Error) -> SourceError {
    SourceError::Git {
        url: redact_url(url),
        what: what.to_string(),
        message: e.message().to_string(),
    }
}

impl GitSource {
    /// `state_dir/repos/<hash of url>` holds the bare clone.
    pub fn new(url: &str, branch: &str, state_dir: &Path, auth: GitAuth) -> GitSource {
        GitSource::for_purpose(url, branch, state_dir, auth, "")
    }

    /// A clone of its own for one purpose (the results write-back), so that it never contends
    /// with the sync's fetches for the same lock files.
    pub fn for_purpose(
        url: &str,
        branch: &str,
        state_dir: &Path,
        auth: GitAuth,
        purpose: &str,
    ) -> GitSource {
        let digest = Sha256::digest(format!("{url}\0{purpose}").as_bytes());
        let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        GitSource {
            url: url.to_string(),
            branch: branch.to_string(),
            clone_dir: state_dir.join("repos").join(key),
            auth,
            unlocked: std::sync::Arc::new(std::sync::Once::new()),
            limits: Limits::default(),
            blobs: Arc::new(Mutex::new(BlobCache::default())),
        }
    }

    /// The same source with other bounds on what a read of one commit may hold
    /// (`repository.maxTreeEntries`, `repository.maxTreeBytes`).
    pub fn with_limits(mut self, limits: Limits) -> GitSource {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn url(&self) -> String {
        redact_url(&self.url)
    }

    /// A [`Stop`] as the error it stands for, naming the commit and the limit.
    fn stopped(&self, stop: Stop, commit: &str, folders: &[&str], what: &str) -> SourceError {
        let folders = folders
            .iter()
            .map(|f| format!("`{}`", f.trim_matches('/')))
            .collect::<Vec<_>>()
            .join(" and ");
        match stop {
            Stop::Git(e) => git_err(&self.url, &format!("{what} commit {commit}"), e),
            Stop::Entries => SourceError::TooManyEntries {
                url: redact_url(&self.url),
                commit: commit.to_string(),
                folders,
                limit: self.limits.max_entries,
            },
            Stop::Bytes => SourceError::TooManyBytes {
                url: redact_url(&self.url),
                commit: commit.to_string(),
                folders,
                limit: self.limits.max_bytes,
            },
            Stop::Deep(path) => SourceError::TreeTooDeep {
                url: redact_url(&self.url),
                commit: commit.to_string(),
                path,
                limit: MAX_DEPTH,
            },
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BlobCache> {
        // A panic while holding the lock leaves a cache of weak pointers: still sound.
        self.blobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn open(&self) -> Result<Repository, SourceError> {
        // The clone belongs to this daemon alone; a `*.lock` found before its first use was
        // left by a process killed mid-fetch or mid-push and would fail every later sync.
        self.unlocked
            .call_once(|| remove_stale_locks(&self.clone_dir, 0));
        if self.clone_dir.join("HEAD").exists() {
            return Repository::open_bare(&self.clone_dir)
                .map_err(|e| git_err(&self.url, "open the local clone", e));
        }
        std::fs::create_dir_all(&self.clone_dir).map_err(|e| SourceError::Io {
            path: self.clone_dir.display().to_string(),
            source: e,
        })?;
        Repository::init_bare(&self.clone_dir)
            .map_err(|e| git_err(&self.url, "create the local clone", e))
    }

    /// Credentials and host-key checks, shared by fetch and push.
    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        let auth = self.auth.clone();
        let mut attempts = 0;
        callbacks.credentials(move |_url, username, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            let user = auth.username.as_deref().or(username).unwrap_or("git");
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(key) = &auth.ssh_key {
                    return Cred::ssh_key(user, None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(pw) = &auth.password {
                    return Cred::userpass_plaintext(user, pw);
                }
            }
            Err(git2::Error::from_str(
                "the remote asks for credentials and none are configured",
            ))
        });
        if let Some(known) = self.auth.known_hosts.clone() {
            callbacks.certificate_check(move |cert, host| {
                let Some(key) = cert.as_hostkey().and_then(|h| h.hostkey()) else {
                    // Not an SSH host key (TLS): leave it to libgit2's own verification.
                    return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
                };
                if known_hosts_lists(&known, key) {
                    Ok(git2::CertificateCheckStatus::CertificateOk)
                } else {
                    Err(git2::Error::from_str(&format!(
                        "the SSH host key of {host} is not in repository.auth.knownHostsFile"
                    )))
                }
            });
        }
        callbacks
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// Fetches the branch and returns its head. A deleted branch is [`SourceError::BranchMissing`].
    pub fn fetch(&self) -> Result<Oid, SourceError> {
        let repo = self.open()?;
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| git_err(&self.url, "set up the remote", e))?;
        let callbacks = self.callbacks();
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks);
        opts.prune(git2::FetchPrune::On);
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking_ref());
        remote
            .fetch(&[&refspec], Some(&mut opts), None)
            .map_err(|e| {
                // libgit2 reports a missing ref in a fetch refspec as a not-found error.
                if e.code() == git2::ErrorCode::NotFound
                    || e.message().contains("couldn't find remote ref")
                {
                    SourceError::BranchMissing {
                        url: redact_url(&self.url),
                        branch: self.branch.clone(),
                    }
                } else {
                    git_err(&self.url, "fetch", e)
                }
            })?;
        // A branch deleted on the remote leaves no ref behind after a pruning fetch; an empty
        // fetch of a missing branch may also succeed without updating anything.
        let head =
            repo.refname_to_id(&self.tracking_ref())
                .map_err(|_| SourceError::BranchMissing {
                    url: redact_url(&self.url),
                    branch: self.branch.clone(),
                })?;
        let advertised = remote
            .list()
            .map(|heads| {
                heads
                    .iter()
                    .any(|h| h.name() == format!("refs/heads/{}", self.branch))
            })
            .unwrap_or(true);
        if !advertised {
            let _ = repo
                .find_reference(&self.tracking_ref())
                .and_then(|mut r| r.delete());
            return Err(SourceError::BranchMissing {
                url: redact_url(&self.url),
                branch: self.branch.clone(),
            });
        }
        Ok(head)
    }

    /// The fetched head of the branch, without fetching.
    pub fn local_head(&self) -> Result<Option<String>, SourceError> {
        let repo = self.open()?;
        Ok(repo
            .refname_to_id(&self.tracking_ref())
            .ok()
            .map(|o| o.to_string()))
    }

    /// A new commit on top of `base` (none: a root commit) with `files` written; `None` when
    /// every file already has that content.
    pub fn commit_files(
        &self,
        base: Option<&str>,
        files: &[(String, Vec<u8>)],
        message: &str,
        author: (&str, &str),
    ) -> Result<Option<String>, SourceError> {
        let repo = self.open()?;
        let e = |what: &str| {
            let url = self.url.clone();
            let what = what.to_string();
            move |err: git2::Error| git_err(&url, &what, err)
        };
        let parent = match base {
            Some(b) => Some(
                repo.find_commit(Oid::from_str(b).map_err(e("parse a commit id"))?)
                    .map_err(e("read the base commit"))?,
            ),
            None => None,
        };
        let mut index = git2::Index::new().map_err(e("create an index"))?;
        if let Some(p) = &parent {
            index
                .read_tree(&p.tree().map_err(e("read the base tree"))?)
                .map_err(e("read the base tree"))?;
        }
        let mut changed = false;
        for (path, content) in files {
            let blob = repo.blob(content).map_err(e("write a blob"))?;
            if index
                .get_path(Path::new(path), 0)
                .is_some_and(|entry| entry.id == blob)
            {
                continue;
            }
            changed = true;
            let entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).map_err(e("stage a file"))?;
        }
        if !changed {
            return Ok(None);
        }
        let tree_id = index.write_tree_to(&repo).map_err(e("write a tree"))?;
        let tree = repo.find_tree(tree_id).map_err(e("read the new tree"))?;
        let sig = git2::Signature::now(author.0, author.1).map_err(e("make a signature"))?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .map_err(e("commit"))?;
        Ok(Some(oid.to_string()))
    }

    /// Pushes `commit` to the branch as a fast-forward. `Ok(false)` when the remote refused
    /// it because the branch moved (fetch, rebuild and try again).
    pub fn push_commit(&self, commit: &str) -> Result<bool, SourceError> {
        let repo = self.open()?;
        let oid = Oid::from_str(commit).map_err(|e| git_err(&self.url, "parse a commit id", e))?;
        // libgit2 does not refuse a non-fast-forward push on the client, and many servers
        // accept one: check that the branch is still where the commit was built, right before.
        let parent = repo.find_commit(oid).ok().and_then(|c| c.parent_id(0).ok());
        {
            let mut probe = repo
                .remote_anonymous(&self.url)
                .map_err(|e| git_err(&self.url, "set up the remote", e))?;
            probe
                .connect_auth(git2::Direction::Fetch, Some(self.callbacks()), None)
                .map_err(|e| git_err(&self.url, "connect", e))?;
            let wanted = format!("refs/heads/{}", self.branch);
            let current = probe
                .list()
                .map_err(|e| git_err(&self.url, "list remote refs", e))?
                .iter()
                .find(|h| h.name() == wanted)
                .map(|h| h.oid());
            if current != parent {
                return Ok(false);
            }
        }
        let local = format!("refs/perfsync/push/{}", self.branch);
        repo.reference(&local, oid, true, "perfsync results")
            .map_err(|e| git_err(&self.url, "create a push ref", e))?;
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| git_err(&self.url, "set up the remote", e))?;
        let mut callbacks = self.callbacks();
        let rejected = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = rejected.clone();
        callbacks.push_update_reference(move |_name, status| {
            if status.is_some() {
                flag.set(true);
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(callbacks);
        let refspec = format!("{local}:refs/heads/{}", self.branch);
        match remote.push(&[&refspec], Some(&mut opts)) {
            Ok(()) if !rejected.get() => {
                let _ = repo.reference(&self.tracking_ref(), oid, true, "perfsync results pushed");
                Ok(true)
            }
            Ok(()) => Ok(false),
            // Local and some smart transports report a non-fast-forward as an error.
            Err(e)
                if e.code() == git2::ErrorCode::NotFastForward
                    || e.message().contains("fast-forward")
                    || e.message().contains("fast forward") =>
            {
                Ok(false)
            }
            Err(e) => Err(git_err(&self.url, "push", e)),
        }
    }

    /// A commit id for `rev`: a full or abbreviated sha, a tag, or a branch of the remote.
    pub fn resolve(&self, rev: &str) -> Result<String, SourceError> {
        let repo = self.open()?;
        let candidates = [rev.to_string(), format!("refs/remotes/origin/{rev}")];
        for c in &candidates {
            if let Ok(obj) = repo.revparse_single(c) {
                if let Ok(commit) = obj.peel_to_commit() {
                    return Ok(commit.id().to_string());
                }
            }
        }
        Err(SourceError::UnknownRevision {
            url: redact_url(&self.url),
            rev: rev.to_string(),
        })
    }

    pub fn commit_info(&self, sha: &str) -> Result<CommitInfo, SourceError> {
        let repo = self.open()?;
        let oid = Oid::from_str(sha).map_err(|e| git_err(&self.url, "parse a commit id", e))?;
        let c = repo
            .find_commit(oid)
            .map_err(|e| git_err(&self.url, "read a commit", e))?;
        let author = c.author();
        Ok(CommitInfo {
            sha: sha.to_string(),
            author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
            author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
            summary: String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()).into_owned(),
            time: c.time().seconds(),
        })
    }

    /// Whether `old` is still in the history of `new` (false when `old` is gone: a force-push).
    pub fn is_ancestor(&self, old: &str, new: &str) -> Result<bool, SourceError> {
        let repo = self.open()?;
        let (Ok(o), Ok(n)) = (Oid::from_str(old), Oid::from_str(new)) else {
            return Ok(false);
        };
        if o == n {
            return Ok(true);
        }
        if repo.find_commit(o).is_err() {
            return Ok(false);
        }
        repo.graph_descendant_of(n, o)
            .map_err(|e| git_err(&self.url, "compare commits", e))
    }

    /// The given folders of `commit`, read from the object database. Refused, unread, past
    /// the source's [`Limits`]; a file over [`MAX_FILE_BYTES`] (a symlink's target too) is
    /// recorded by size without being read; identical blobs share one buffer.
    pub fn tree_at(&self, commit: &str, folders: &[&str]) -> Result<Tree, SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, commit)?;
        let odb = repo
            .odb()
            .map_err(|e| git_err(&self.url, "open the object database", e))?;
        let mut tree = Tree::new();
        let mut cache = self.cache();
        let mut budget = Budget::new(self.limits);
        for folder in folders {
            let folder = folder.trim_matches('/');
            let sub = match root.get_path(Path::new(folder)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => repo.find_tree(e.id()),
                _ => continue,
            }
            .map_err(|e| git_err(&self.url, "read a tree", e))?;
            walk_blobs(&repo, sub, folder, &mut budget, |path, oid, mode| {
                let allowed = self.limits.max_bytes.saturating_sub(tree.content_bytes());
                let entry = read_entry(&repo, &odb, &mut cache, oid, mode, allowed)?;
                tree.insert(path, entry);
                Ok(())
            })
            .map_err(|stop| self.stopped(stop, commit, folders, "read"))?;
        }
        Ok(tree)
    }

    /// Regular files under `folder` at `commit`, as (path, blob id), without reading them;
    /// refused past the source's entry limit.
    pub fn files_at(
        &self,
        commit: &str,
        folder: &str,
    ) -> Result<Vec<(String, String)>, SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, commit)?;
        let folder = folder.trim_matches('/');
        let sub = match root.get_path(Path::new(folder)) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => repo
                .find_tree(e.id())
                .map_err(|e| git_err(&self.url, "read a tree", e))?,
            _ => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        let mut budget = Budget::new(self.limits);
        walk_blobs(&repo, sub, folder, &mut budget, |path, oid, mode| {
            if mode != SYMLINK_MODE {
                out.push((path, oid.to_string()));
            }
            Ok(())
        })
        .map_err(|stop| self.stopped(stop, commit, &[folder], "list"))?;
        Ok(out)
    }

    /// The names of the folders directly under `folder` at `commit` (one tree level read).
    pub fn dirs_at(&self, commit: &str, folder: &str) -> Result<Vec<String>, SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, commit)?;
        let sub = match root.get_path(Path::new(folder.trim_matches('/'))) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => repo
                .find_tree(e.id())
                .map_err(|e| git_err(&self.url, "read a tree", e))?,
            _ => return Ok(Vec::new()),
        };
        Ok(sub
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .filter_map(|e| e.name().ok().map(str::to_string))
            .collect())
    }

    /// The regular file at `path` in `commit`, when there is one: its blob id, for
    /// [`GitSource::read_blob`]. A direct lookup; nothing else of the tree is walked.
    pub fn file_at(&self, commit: &str, path: &str) -> Result<Option<String>, SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, commit)?;
        Ok(match root.get_path(Path::new(path.trim_matches('/'))) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) && e.filemode() != SYMLINK_MODE => {
                Some(e.id().to_string())
            }
            _ => None,
        })
    }

    /// A blob's content when it is at most `max` bytes (`None`: larger, and not read).
    pub fn read_blob(&self, oid: &str, max: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let repo = self.open()?;
        let id = Oid::from_str(oid).map_err(|e| git_err(&self.url, "parse a blob id", e))?;
        let odb = repo
            .odb()
            .map_err(|e| git_err(&self.url, "open the object database", e))?;
        let (size, _) = odb
            .read_header(id)
            .map_err(|e| git_err(&self.url, &format!("read blob {oid}"), e))?;
        if size as u64 > max {
            return Ok(None);
        }
        let blob = repo
            .find_blob(id)
            .map_err(|e| git_err(&self.url, &format!("read blob {oid}"), e))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// The newest commit, following first parents from `head` (at most `max_commits` of
    /// them), that changed `path`: the one that brought a file onto the branch (for a merge
    /// request, its merge). `None` when not found within the bound.
    pub fn last_change(
        &self,
        head: &str,
        path: &str,
        max_commits: usize,
    ) -> Result<Option<String>, SourceError> {
        let repo = self.open()?;
        let e = |err| git_err(&self.url, &format!("walk the history of {head}"), err);
        let start = Oid::from_str(head).map_err(e)?;
        let mut walk = repo.revwalk().map_err(e)?;
        walk.push(start).map_err(e)?;
        walk.simplify_first_parent().map_err(e)?;
        let blob_at = |c: &git2::Commit| -> Option<Oid> {
            c.tree()
                .ok()?
                .get_path(Path::new(path))
                .ok()
                .map(|x| x.id())
        };
        for oid in walk.take(max_commits) {
            let commit = repo.find_commit(oid.map_err(e)?).map_err(e)?;
            let here = blob_at(&commit);
            let before = commit.parent(0).ok().and_then(|p| blob_at(&p));
            if here != before {
                return Ok(Some(commit.id().to_string()));
            }
        }
        Ok(None)
    }

    /// Paths that differ between two commits, limited to `folders`. Subtrees with the same
    /// object id are skipped without being read, so the cost follows the size of the change.
    pub fn changed_paths(
        &self,
        old: &str,
        new: &str,
        folders: &[&str],
    ) -> Result<Vec<String>, SourceError> {
        let repo = self.open()?;
        let a = commit_tree(&repo, &self.url, old)?;
        let b = commit_tree(&repo, &self.url, new)?;
        let mut paths = Vec::new();
        // Deletions and additions each stay within one tree's entries: past twice the limit,
        // the new tree is over it.
        let mut budget = Budget {
            entries: 0,
            max_entries: self.limits.max_entries.saturating_mul(2),
        };
        for folder in folders {
            let folder = folder.trim_matches('/');
            let sub = |t: &git2::Tree| -> Option<git2::Tree<'_>> {
                let e = t.get_path(Path::new(folder)).ok()?;
                repo.find_tree(e.id()).ok()
            };
            diff_trees(
                &repo,
                sub(&a).as_ref(),
                sub(&b).as_ref(),
                folder,
                0,
                &mut budget,
                &mut paths,
            )
            .map_err(|stop| self.stopped(stop, new, folders, "diff"))?;
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Brings `tree` (a snapshot of `old`) up to `new` by reading only the changed paths;
    /// refused, without reading past it, when the result would be over the source's
    /// [`Limits`] (the tree is then partly updated: start again from [`GitSource::tree_at`]).
    pub fn update_tree(
        &self,
        tree: &mut Tree,
        new: &str,
        changed: &[String],
    ) -> Result<(), SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, new)?;
        let odb = repo
            .odb()
            .map_err(|e| git_err(&self.url, "open the object database", e))?;
        let mut blobs = Vec::new();
        // Removals first, so a rename never counts twice against the limits.
        for path in changed {
            match root.get_path(Path::new(path)) {
                Ok(e) if e.kind() == Some(ObjectType::Blob) => {
                    blobs.push((path, e.id(), e.filemode()))
                }
                _ => {
                    tree.remove(path);
                }
            }
        }
        let folders: Vec<&str> = blobs
            .iter()
            .filter_map(|(p, _, _)| p.split('/').next())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut cache = self.cache();
        for (path, oid, mode) in blobs {
            let others = tree.content_bytes() - tree.get(path).map_or(0, |e| e.content_len());
            let allowed = self.limits.max_bytes.saturating_sub(others);
            let entry = read_entry(&repo, &odb, &mut cache, oid, mode, allowed)
                .map_err(|stop| self.stopped(stop, new, &folders, "read"))?;
            tree.insert(path.clone(), entry);
            if tree.len() as u64 > self.limits.max_entries {
                return Err(self.stopped(Stop::Entries, new, &folders, "read"));
            }
        }
        Ok(())
    }
}

/// Counts what a walk has seen against the limits.
struct Budget {
    entries: u64,
    max_entries: u64,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            entries: 0,
            max_entries: limits.max_entries,
        }
    }

    fn count(&mut self) -> Result<(), Stop> {
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(Stop::Entries);
        }
        Ok(())
    }
}

/// Every blob below `root` (paths `prefix/…`), depth first with an explicit stack (a deep
/// tree cannot exhaust the thread's stack), refused past `budget`'s entries (files and
/// symlinks; folders are counted apart, against the same limit) or [`MAX_DEPTH`] levels.
/// Submodules are skipped, and so are names that are not UTF-8.
fn walk_blobs<'r>(
    repo: &'r Repository,
    root: git2::Tree<'r>,
    prefix: &str,
    budget: &mut Budget,
    mut visit: impl FnMut(String, Oid, i32) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let mut folders = Budget {
        entries: 0,
        max_entries: budget.max_entries,
    };
    let mut stack = vec![(root, prefix.to_string(), 0usize)];
    while let Some((tree, dir, depth)) = stack.pop() {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let path = format!("{dir}/{name}");
            match entry.kind() {
                Some(ObjectType::Blob) => {
                    budget.count()?;
                    visit(path, entry.id(), entry.filemode())?;
                }
                Some(ObjectType::Tree) => {
                    folders.count()?;
                    if depth + 1 > MAX_DEPTH {
                        return Err(Stop::Deep(path));
                    }
                    stack.push((repo.find_tree(entry.id())?, path, depth + 1));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
fn commit_tree<'r>(
    repo: &'r Repository,
    url: &str,
    sha: &str,
) -> Result<git2::Tree<'r>, SourceError> {
    let oid = Oid::from_str(sha).map_err(|e| git_err(url, "parse a commit id", e))?;
    repo.find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| git_err(url, &format!("read commit {sha}"), e))
}

/// One blob as a tree entry, its size checked from the object header before anything is
/// read: over [`MAX_FILE_BYTES`] (a symlink's target included) it is [`Entry::Oversized`];
/// over `allowed` (what the byte limit leaves) the read stops with [`Stop::Bytes`]. A blob
/// some snapshot already holds is shared, not read again.
fn read_entry(
    repo: &Repository,
    odb: &git2::Odb,
    cache: &mut BlobCache,
    oid: Oid,
    mode: i32,
    allowed: u64,
) -> Result<Entry, Stop> {
    let (size, _) = odb.read_header(oid)?;
    let size = size as u64;
    if size > MAX_FILE_BYTES {
        return Ok(Entry::Oversized(size));
    }
    if size > allowed {
        return Err(Stop::Bytes);
    }
    if mode == SYMLINK_MODE {
        let blob = repo.find_blob(oid)?;
        return Ok(Entry::Symlink(
            String::from_utf8_lossy(blob.content()).into_owned(),
        ));
    }
    if let Some(shared) = cache.get(oid) {
        return Ok(Entry::File(shared));
    }
    let blob = repo.find_blob(oid)?;
    let bytes: Arc<[u8]> = Arc::from(blob.content());
    cache.put(oid, &bytes);
    Ok(Entry::File(bytes))
}

/// Blob paths under `prefix` that differ between two trees (either may be absent).
fn diff_trees(
    repo: &Repository,
    a: Option<&git2::Tree>,
    b: Option<&git2::Tree>,
    prefix: &str,
    depth: usize,
    budget: &mut Budget,
    out: &mut Vec<String>,
) -> Result<(), Stop> {
    if let (Some(a), Some(b)) = (a, b) {
        if a.id() == b.id() {
            return Ok(());
        }
    }
    if depth > MAX_DEPTH {
        return Err(Stop::Deep(prefix.to_string()));
    }
    let entries = |t: Option<&git2::Tree>| -> std::collections::BTreeMap<Vec<u8>, (Oid, i32, Option<ObjectType>)> {
        t.map(|t| t.iter().map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode(), e.kind()))).collect()).unwrap_or_default()
    };
    let (ea, eb) = (entries(a), entries(b));
    let names: std::collections::BTreeSet<&Vec<u8>> = ea.keys().chain(eb.keys()).collect();
    for name in names {
        let (x, y) = (ea.get(name), eb.get(name));
        if let (Some(x), Some(y)) = (x, y) {
            if x.0 == y.0 && x.1 == y.1 {
                continue;
            }
        }
        let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
        let as_tree = |e: Option<&(Oid, i32, Option<ObjectType>)>| -> Option<git2::Tree<'_>> {
            e.filter(|e| e.2 == Some(ObjectType::Tree))
                .and_then(|e| repo.find_tree(e.0).ok())
        };
        let (ta, tb) = (as_tree(x), as_tree(y));
        let blob = |e: Option<&(Oid, i32, Option<ObjectType>)>| {
            e.is_some_and(|e| e.2 == Some(ObjectType::Blob))
        };
        budget.count()?;
        if blob(x) || blob(y) {
            out.push(path.clone());
        }
        if ta.is_some() || tb.is_some() {
            diff_trees(
                repo,
                ta.as_ref(),
                tb.as_ref(),
                &path,
                depth + 1,
                budget,
                out,
            )?;
        }
    }
    Ok(())
}

/// Whether an OpenSSH `known_hosts` text lists this raw host key (any host pattern: the file
/// is perfsync's own, written for this one remote).
fn known_hosts_lists(known_hosts: &str, key: &[u8]) -> bool {
    use base64::Engine;
    known_hosts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .any(|k| k == key)
}

fn remove_stale_locks(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && depth < 8 && e.file_name() != "objects" {
            remove_stale_locks(&path, depth + 1);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "lock") {
            tracing::warn!(path = %path.display(), "removing a lock file left by an earlier process");
            let _ = std::fs::remove_file(&path);
        }
    }
}
