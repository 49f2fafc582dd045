//! Repository bounds on the git source: a symlink's target is size-checked before it is
//! read, a commit over the entry, byte or depth limits is refused naming the commit and the
//! limit, and identical blobs are held once.

use perfsync::source::git::{GitAuth, GitSource};
use perfsync::source::{Entry, Limits, SourceError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args, None)
}

fn git_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository to commit to (perfsync reads it by its path, as a remote).
struct Repo {
    _dir: tempfile::TempDir,
    work: PathBuf,
    state: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        let state = dir.path().join("state");
        Repo {
            _dir: dir,
            work,
            state,
        }
    }

    /// Writes the files (bytes) and commits; returns the commit.
    fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn source(&self, limits: Limits) -> GitSource {
        let src = GitSource::new(
            self.work.to_str().unwrap(),
            "main",
            &self.state,
            GitAuth::default(),
        )
        .with_limits(limits);
        src.fetch().unwrap();
        src
    }

    /// perfsync's own bare clone of this repository.
    fn clone_dir(&self) -> PathBuf {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.state.join("repos"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs.len(), 1);
        dirs.remove(0)
    }
}

const FOLDERS: [&str; 2] = ["tests", "templates"];

/// A zlib stream of `data` in stored (uncompressed) blocks: how git keeps a loose object.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[test]
fn a_symlink_to_a_gigabyte_blob_is_recorded_by_size_and_never_read() {
    let repo = Repo::new();
    repo.commit(&[("tests/a/perftest.yaml", b"kind: PerfTest\n")], "initial");
    let src = repo.source(Limits::default());
    let clone = repo.clone_dir();
    // A loose object whose header says 1 GiB, holding a few bytes: its header reads fine,
    // reading the object itself fails. Only a reader that checks the size first gets by.
    const GIB: u64 = 1 << 30;
    let oid = "5ee0ba5ee0ba5ee0ba5ee0ba5ee0ba5ee0ba5ee0";
    let mut raw = format!("blob {GIB}\0").into_bytes();
    raw.extend_from_slice(b"../../../../etc/passwd");
    let objects = clone.join("objects").join(&oid[..2]);
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(objects.join(&oid[2..]), zlib_stored(&raw)).unwrap();
    let clone_s = clone.to_str().unwrap();
    let perftest = git(
        &clone,
        &[
            "--git-dir",
            clone_s,
            "rev-parse",
            "refs/remotes/origin/main:tests/a/perftest.yaml",
        ],
    );
    let a = git_in(
        &clone,
        &["--git-dir", clone_s, "mktree"],
        Some(&format!(
            "100644 blob {perftest}\tperftest.yaml\n120000 blob {oid}\tdata.json\n"
        )),
    );
    let tests = git_in(
        &clone,
        &["--git-dir", clone_s, "mktree"],
        Some(&format!("040000 tree {a}\ta\n")),
    );
    let root = git_in(
        &clone,
        &["--git-dir", clone_s, "mktree"],
        Some(&format!("040000 tree {tests}\ttests\n")),
    );
    let commit = git(
        &clone,
        &["--git-dir", clone_s, "commit-tree", &root, "-m", "symlink"],
    );

    let tree = src.tree_at(&commit, &FOLDERS).unwrap();
    assert_eq!(tree.get("tests/a/data.json"), Some(&Entry::Oversized(GIB)));
    assert!(matches!(
        tree.get("tests/a/perftest.yaml"),
        Some(Entry::File(_))
    ));
    // The same through the incremental path a sync takes.
    let base = git(
        &clone,
        &[
            "--git-dir",
            clone_s,
            "rev-parse",
            "refs/remotes/origin/main",
        ],
    );
    let mut snapshot = src.tree_at(&base, &FOLDERS).unwrap();
    let changed = src.changed_paths(&base, &commit, &FOLDERS).unwrap();
    assert_eq!(changed, vec!["tests/a/data.json".to_string()]);
    src.update_tree(&mut snapshot, &commit, &changed).unwrap();
    assert_eq!(snapshot, tree);
}

#[test]
fn a_symlink_just_over_the_file_cap_is_recorded_by_size() {
    let repo = Repo::new();
    let first = repo.commit(&[("tests/a/perftest.yaml", b"kind: PerfTest\n")], "initial");
    // A real symlink whose target text is 4 MiB + 1 bytes.
    let target = "x".repeat(perfsync::source::dir::MAX_FILE_BYTES as usize + 1);
    let blob = git_in(&repo.work, &["hash-object", "-w", "--stdin"], Some(&target));
    git(
        &repo.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("120000,{blob},tests/a/link"),
        ],
    );
    git(&repo.work, &["commit", "-q", "-m", "link"]);
    let commit = git(&repo.work, &["rev-parse", "HEAD"]);
    assert_ne!(first, commit);
    let src = repo.source(Limits::default());
    let tree = src.tree_at(&commit, &FOLDERS).unwrap();
    // (Matched, not compared: a failure must not print 4 MiB.)
    match tree.get("tests/a/link") {
        Some(Entry::Oversized(n)) => assert_eq!(*n, target.len() as u64),
        Some(Entry::Symlink(t)) => panic!("the {}-byte target was read", t.len()),
        other => panic!("{:?}", other.map(|e| e.content_len())),
    }
}

fn as_slices(v: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    v.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect()
}

#[test]
fn a_commit_over_the_entry_limit_is_refused_naming_the_commit_and_the_limit() {
    let repo = Repo::new();
    let small: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("tests/t/f{i}.js"), format!("// {i}\n").into_bytes()))
        .collect();
    let first = repo.commit(&as_slices(&small), "ten files");
    let more: Vec<(String, Vec<u8>)> = (10..30)
        .map(|i| {
            (
                format!("templates/x/f{i}.js"),
                format!("// {i}\n").into_bytes(),
            )
        })
        .collect();
    let second = repo.commit(&as_slices(&more), "twenty more");
    let limits = Limits {
        max_entries: 25,
        ..Limits::default()
    };
    let src = repo.source(limits);

    let mut tree = src.tree_at(&first, &FOLDERS).unwrap();
    assert_eq!(tree.len(), 10);
    let refused = |e: SourceError| match e {
        SourceError::TooManyEntries {
            ref commit, limit, ..
        } => {
            assert_eq!((commit.as_str(), limit), (second.as_str(), 25));
            let text = e.to_string();
            assert!(
                text.contains(&second)
                    && text.contains("25")
                    && text.contains("repository.maxTreeEntries"),
                "{text}"
            );
        }
        other => panic!("expected the entry limit, got {other}"),
    };
    refused(src.tree_at(&second, &FOLDERS).unwrap_err());
    let changed = src.changed_paths(&first, &second, &FOLDERS).unwrap();
    refused(src.update_tree(&mut tree, &second, &changed).unwrap_err());

    // Folders count too: a chain of 30 of them holding one file, against a limit of 29.
    let chain = format!("tests/{}f.js", "d/".repeat(30));
    let chained = Repo::new();
    let third = chained.commit(&[(chain.as_str(), b"//\n")], "thirty folders");
    let src = chained.source(Limits {
        max_entries: 29,
        ..Limits::default()
    });
    assert!(matches!(
        src.tree_at(&third, &FOLDERS).unwrap_err(),
        SourceError::TooManyEntries { limit: 29, .. }
    ));
}

#[test]
fn a_commit_over_the_byte_limit_is_refused_before_it_is_read() {
    let repo = Repo::new();
    let kib = vec![b'a'; 1024];
    let first = repo.commit(
        &[("tests/a/one.bin", &kib), ("tests/a/two.bin", &kib[..512])],
        "1.5 KiB",
    );
    let other = vec![b'b'; 1024];
    let second = repo.commit(&[("tests/b/three.bin", &other)], "another KiB");
    let src = repo.source(Limits {
        max_bytes: 2048,
        ..Limits::default()
    });
    let mut tree = src.tree_at(&first, &FOLDERS).unwrap();
    assert_eq!(tree.content_bytes(), 1536);
    for err in [
        src.tree_at(&second, &FOLDERS).unwrap_err(),
        src.update_tree(
            &mut tree,
            &second,
            &src.changed_paths(&first, &second, &FOLDERS).unwrap(),
        )
        .unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            matches!(&err, SourceError::TooManyBytes { commit, limit: 2048, .. } if commit == &second),
            "{text}"
        );
        assert!(text.contains("repository.maxTreeBytes"), "{text}");
    }
    // A rename (to a path that sorts first) stays within the limit: removals count first.
    std::fs::rename(
        repo.work.join("tests/a/one.bin"),
        repo.work.join("tests/a/0.bin"),
    )
    .unwrap();
    std::fs::remove_file(repo.work.join("tests/b/three.bin")).unwrap();
    let third = repo.commit(&[], "rename");
    src.fetch().unwrap();
    let mut tree = src.tree_at(&first, &FOLDERS).unwrap();
    src.update_tree(
        &mut tree,
        &third,
        &src.changed_paths(&first, &third, &FOLDERS).unwrap(),
    )
    .unwrap();
    assert_eq!(tree, src.tree_at(&third, &FOLDERS).unwrap());
}

#[test]
fn folders_nested_past_the_depth_limit_are_refused() {
    let repo = Repo::new();
    let path = format!("tests/{}f.js", "d/".repeat(70));
    let commit = repo.commit(&[(path.as_str(), b"//\n")], "deep");
    let src = repo.source(Limits::default());
    let err = src.tree_at(&commit, &FOLDERS).unwrap_err();
    assert!(
        matches!(&err, SourceError::TreeTooDeep { commit: c, limit: 64, .. } if c == &commit),
        "{err}"
    );
}

#[test]
fn identical_blobs_are_held_once_across_paths_and_syncs() {
    let repo = Repo::new();
    let data = vec![7u8; 256 * 1024];
    let first = repo.commit(
        &[
            ("tests/a/data.bin", &data),
            ("tests/b/data.bin", &data),
            ("templates/t/data.bin", &data),
            ("tests/a/other.bin", b"different"),
        ],
        "three copies",
    );
    let second = repo.commit(&[("tests/c/data.bin", &data)], "a fourth copy");
    let src = repo.source(Limits::default());
    let bytes = |tree: &perfsync::source::Tree, path: &str| -> Arc<[u8]> {
        match tree.get(path) {
            Some(Entry::File(b)) => b.clone(),
            other => panic!("{path}: {other:?}"),
        }
    };
    let mut tree = src.tree_at(&first, &FOLDERS).unwrap();
    let a = bytes(&tree, "tests/a/data.bin");
    for p in ["tests/b/data.bin", "templates/t/data.bin"] {
        assert!(Arc::ptr_eq(&a, &bytes(&tree, p)), "{p} shares one buffer");
    }
    assert!(!Arc::ptr_eq(&a, &bytes(&tree, "tests/a/other.bin")));
    let changed = src.changed_paths(&first, &second, &FOLDERS).unwrap();
    src.update_tree(&mut tree, &second, &changed).unwrap();
    assert!(
        Arc::ptr_eq(&a, &bytes(&tree, "tests/c/data.bin")),
        "a copy added later shares it too"
    );
    // Every path counts against the byte limit, shared or not.
    assert_eq!(tree.content_bytes(), 4 * data.len() as u64 + 9);
    // Held by the snapshot (`a`, and the tree's four paths), not by the source's cache.
    assert_eq!(Arc::strong_count(&a), 5);
    drop(tree);
    assert_eq!(Arc::strong_count(&a), 1);
}
