//! Results files perfsync can prove it wrote. Anyone who can merge into the branch can write
//! `results/<test>/<run>.json`, and a commit's author name proves nothing; so every results
//! file perfsync writes carries an HMAC-SHA256 of its own bytes under a key only the daemon
//! holds, and on start only files whose MAC verifies are imported (`recorder.rs`).
//!
//! The key is 32 random bytes in `<stateDir>/results.key` (hex, mode 0600), made on first
//! start. A file is the pretty JSON of its `RunSummary` with one member in front,
//! `"mac": "hmac-sha256:<hex>"`; the MAC covers the file without that member (its canonical
//! bytes: exactly what perfsync serialised), behind a domain prefix, so a MAC made for
//! anything else never verifies here.

use super::git_results::result_json;
use crate::results::summary::RunSummary;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "results.key";
const DOMAIN: &[u8] = b"perfsync results v1\0";
const HEAD: &[u8] = b"{\n  \"mac\": \"hmac-sha256:";
const TAIL: &[u8] = b"\",\n";
const MAC_HEX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("results key {path}: {source}")]
    KeyIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("results key {path} can be read by other users (mode {mode:o}): anyone on this host may hold it; delete it so a new one is made (results files sealed with it are then no longer restored from git)")]
    KeyExposed { path: String, mode: u32 },
    #[error("results key {path} is not 64 hex digits; restore it, or delete it to make a new one (results files written under the old key are then never imported from git)")]
    KeyInvalid { path: String },
    #[error("no `mac` member at the start of the file: perfsync did not write it")]
    Unsealed,
    #[error("its MAC does not verify: perfsync did not write it (or wrote it under another key), or it was edited")]
    Mismatch,
    #[error("its MAC verifies but its content is not a RunSummary: {0}")]
    Json(#[from] serde_json::Error),
}

type HmacSha256 = Hmac<Sha256>;

/// The daemon's key for results files. Prints no value.
pub struct ResultsKey([u8; 32]);

impl std::fmt::Debug for ResultsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultsKey(<redacted>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

impl ResultsKey {
    pub fn from_bytes(bytes: [u8; 32]) -> ResultsKey {
        ResultsKey(bytes)
    }

    /// The key in `state_dir`, made (32 bytes from the OS's random source, mode 0600) when
    /// there is none. Two processes starting at once end up with the same key: the file
    /// appears whole or not at all (written aside, then hard-linked into place).
    pub fn load_or_create(state_dir: &Path) -> Result<ResultsKey, SealError> {
        let path = state_dir.join(KEY_FILE);
        match Self::load(&path) {
            Err(SealError::KeyIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |p: &Path, source| SealError::KeyIo {
            path: p.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| io(state_dir, e))?;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| io(Path::new("/dev/urandom"), e))?;
        let tmp = state_dir.join(format!(
            ".{KEY_FILE}.{}.{}.tmp",
            std::process::id(),
            hex(&key[..4])
        ));
        let written =
            write_private(&tmp, format!("{}\n", hex(&key)).as_bytes()).map_err(|e| io(&tmp, e));
        let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            // Another process made it first: its key is the key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io(&path, e)),
        });
        let _ = std::fs::remove_file(&tmp);
        linked?;
        if let Ok(dir) = std::fs::File::open(state_dir) {
            let _ = dir.sync_all();
        }
        tracing::info!(path = %path.display(), "made a new results key");
        Self::load(&path)
    }

    /// Reads a key file; refuses one any user can read or that is not 64 hex digits (one its
    /// group can read is narrowed to 0600 with a warning).
    pub fn load(path: &Path) -> Result<ResultsKey, SealError> {
        let shown = || path.display().to_string();
        let mut file = std::fs::File::open(path).map_err(|source| SealError::KeyIo {
            path: shown(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| SealError::KeyIo {
            path: shown(),
            source,
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                // Any user of the host may have read it: a new key is the only fix.
                return Err(SealError::KeyExposed {
                    path: shown(),
                    mode,
                });
            }
            if mode & 0o070 != 0 {
                // A volume's fsGroup widens files to the pod's group at mount: narrow it back.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|_| SealError::KeyExposed {
                        path: shown(),
                        mode,
                    })?;
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the results key was readable by its group; made it 0600");
            }
        }
        let mut text = Vec::with_capacity(MAC_HEX + 1);
        Read::by_ref(&mut file)
            .take(MAC_HEX as u64 + 3)
            .read_to_end(&mut text)
            .map_err(|source| SealError::KeyIo {
                path: shown(),
                source,
            })?;
        let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
        unhex(trimmed)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(ResultsKey)
            .ok_or_else(|| SealError::KeyInvalid { path: shown() })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes never fails.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac
    }

    /// The results file of `s`: its JSON with the MAC in front.
    pub fn seal(&self, s: &RunSummary) -> Vec<u8> {
        let body = result_json(s);
        let mut mac = self.mac();
        mac.update(&body);
        let tag = hex(&mac.finalize().into_bytes());
        // `body` is a JSON object printed pretty: `{\n  "apiVersion": …`.
        let rest = body.strip_prefix(b"{\n").unwrap_or(&body);
        let mut out = Vec::with_capacity(body.len() + HEAD.len() + MAC_HEX + TAIL.len());
        out.extend_from_slice(HEAD);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(TAIL);
        out.extend_from_slice(rest);
        out
    }

    /// The summary in a results file, when perfsync wrote it under this key (the MAC is
    /// compared in constant time before anything else of the file is parsed).
    pub fn open(&self, file: &[u8]) -> Result<RunSummary, SealError> {
        let after_head = file.strip_prefix(HEAD).ok_or(SealError::Unsealed)?;
        if after_head.len() < MAC_HEX + TAIL.len() || !after_head[MAC_HEX..].starts_with(TAIL) {
            return Err(SealError::Unsealed);
        }
        let tag = unhex(&after_head[..MAC_HEX]).ok_or(SealError::Unsealed)?;
        let rest = &after_head[MAC_HEX + TAIL.len()..];
        let mut body = Vec::with_capacity(rest.len() + 2);
        body.extend_from_slice(b"{\n");
        body.extend_from_slice(rest);
        let mut mac = self.mac();
        mac.update(&body);
        mac.verify_slice(&tag).map_err(|_| SealError::Mismatch)?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// Creates `path` (it must not exist) readable by its owner only, with `bytes`, synced.
fn write_private(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::summary::{EndState, RunInfo, RunTrigger};

    fn summary() -> RunSummary {
        RunSummary {
            api_version: "perfsync.dev/v1alpha1".into(),
            kind: "RunSummary".into(),
            run: RunInfo {
                id: "items-r-1".into(),
                test: "items".into(),
                revision: "r".into(),
                commit: None,
                author: Some("Ada".into()),
                trigger: RunTrigger::Change,
                executor: "local".into(),
                parallelism: 1,
                start: "2026-01-01T00:00:00.000Z".into(),
                end: "2026-01-01T00:00:01.000Z".into(),
                duration_seconds: 0.1 + 0.2,
            },
            status: EndState::Succeeded,
            reason: None,
            metrics: Default::default(),
            thresholds: vec![],
            comparison: None,
            regression: None,
            runners: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn a_sealed_file_opens_under_its_key_only_and_not_once_edited() {
        let key = ResultsKey::from_bytes([7; 32]);
        let file = key.seal(&summary());
        assert!(file.starts_with(b"{\n  \"mac\": \"hmac-sha256:"));
        let parsed: serde_json::Value = serde_json::from_slice(&file).unwrap();
        assert_eq!(parsed["run"]["id"], "items-r-1", "still plain JSON");
        assert_eq!(key.open(&file).unwrap(), summary());
        assert!(matches!(
            ResultsKey::from_bytes([8; 32]).open(&file),
            Err(SealError::Mismatch)
        ));
        let edited = String::from_utf8(file.clone())
            .unwrap()
            .replace("\"succeeded\"", "\"failed\"");
        assert!(matches!(
            key.open(edited.as_bytes()),
            Err(SealError::Mismatch)
        ));
        assert!(matches!(
            key.open(&crate::record::git_results::result_json(&summary())),
            Err(SealError::Unsealed)
        ));
        assert_eq!(key.seal(&summary()), file, "deterministic");
    }

    #[test]
    fn the_key_file_is_made_once_private_and_refused_when_exposed_or_broken() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = ResultsKey::load_or_create(&state).unwrap();
        let path = state.join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = ResultsKey::load_or_create(&state).unwrap();
        assert_eq!(a.0, b.0, "the same key on the next start");
        assert_eq!(format!("{a:?}"), "ResultsKey(<redacted>)");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let c = ResultsKey::load_or_create(&state).unwrap();
        assert_eq!(
            a.0, c.0,
            "a group bit (a volume's fsGroup) is narrowed, the key kept"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ResultsKey::load_or_create(&state),
            Err(SealError::KeyExposed { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        let err = ResultsKey::load_or_create(&state).unwrap_err();
        assert!(matches!(err, SealError::KeyInvalid { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        let leftovers: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(KEY_FILE)]);
    }
}
