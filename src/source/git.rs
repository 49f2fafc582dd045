//! A git source on libgit2: one branch of one remote, fetched into a bare clone kept in the
//! state directory (reused across restarts), read straight from the object database so a
//! sync never depends on a work tree. Blocking: call it from `spawn_blocking`.

use super::dir::MAX_FILE_BYTES;
use super::tree::{Entry, Tree};
use super::SourceError;
use git2::{Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
        }
    }

    pub fn url(&self) -> String {
        redact_url(&self.url)
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

    /// The given folders of `commit`, read from the object database.
    pub fn tree_at(&self, commit: &str, folders: &[&str]) -> Result<Tree, SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, commit)?;
        let mut tree = Tree::new();
        for folder in folders {
            let folder = folder.trim_matches('/');
            let sub = match root.get_path(Path::new(folder)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => {
                    e.to_object(&repo).and_then(|o| o.peel_to_tree())
                }
                _ => continue,
            }
            .map_err(|e| git_err(&self.url, "read a tree", e))?;
            let mut failure = None;
            sub.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                if entry.kind() != Some(ObjectType::Blob) {
                    return git2::TreeWalkResult::Ok;
                }
                let Ok(name) = entry.name() else {
                    return git2::TreeWalkResult::Ok;
                };
                let path = format!("{folder}/{dir}{name}");
                match read_entry(&repo, entry.id(), entry.filemode()) {
                    Ok(e) => tree.insert(path, e),
                    Err(e) => {
                        failure = Some(git_err(&self.url, "read a file", e));
                        return git2::TreeWalkResult::Abort;
                    }
                }
                git2::TreeWalkResult::Ok
            })
            .ok();
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(tree)
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
                &mut paths,
            )
            .map_err(|e| git_err(&self.url, "diff commits", e))?;
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Brings `tree` (a snapshot of `old`) up to `new` by reading only the changed paths.
    pub fn update_tree(
        &self,
        tree: &mut Tree,
        new: &str,
        changed: &[String],
    ) -> Result<(), SourceError> {
        let repo = self.open()?;
        let root = commit_tree(&repo, &self.url, new)?;
        for path in changed {
            match root.get_path(Path::new(path)) {
                Ok(e) if e.kind() == Some(ObjectType::Blob) => {
                    let entry = read_entry(&repo, e.id(), e.filemode())
                        .map_err(|e| git_err(&self.url, "read a file", e))?;
                    tree.insert(path.clone(), entry);
                }
                _ => {
                    tree.remove(path);
                }
            }
        }
        Ok(())
    }
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

fn read_entry(repo: &Repository, oid: Oid, mode: i32) -> Result<Entry, git2::Error> {
    let odb = repo.odb()?;
    let (size, _) = odb.read_header(oid)?;
    if mode == 0o120000 {
        let blob = repo.find_blob(oid)?;
        return Ok(Entry::Symlink(
            String::from_utf8_lossy(blob.content()).into_owned(),
        ));
    }
    if size as u64 > MAX_FILE_BYTES {
        return Ok(Entry::Oversized(size as u64));
    }
    let blob = repo.find_blob(oid)?;
    Ok(Entry::File(std::sync::Arc::from(blob.content())))
}

/// Blob paths under `prefix` that differ between two trees (either may be absent).
fn diff_trees(
    repo: &Repository,
    a: Option<&git2::Tree>,
    b: Option<&git2::Tree>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<(), git2::Error> {
    if let (Some(a), Some(b)) = (a, b) {
        if a.id() == b.id() {
            return Ok(());
        }
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
        if blob(x) || blob(y) {
            out.push(path.clone());
        }
        if ta.is_some() || tb.is_some() {
            diff_trees(repo, ta.as_ref(), tb.as_ref(), &path, out)?;
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
