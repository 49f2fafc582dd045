use super::{load_config, output, Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::{Config, Policy};
use crate::source::dir::load_dir;
use crate::spec::js::options::{from_inspect, Extent, InspectError};
use crate::spec::{self, Catalog, Options, ResolvedTest};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Loads and validates the repository at `path`; errors reading it are environment errors.
pub fn catalog(config: Option<&Config>, path: &Path) -> Result<Catalog, i32> {
    let repo = config.map(|c| c.repository.clone()).unwrap_or_default();
    let layout = repo.layout();
    let tree = load_dir(path, &[&layout.tests_dir, &layout.templates_dir]).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    Ok(spec::build(
        &tree,
        &Options {
            layout: &layout,
            policy: config.map(|c| &c.policy),
        },
    ))
}

pub fn run(config_path: Option<&Path>, format: Format, path: &Path) -> i32 {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.is_none() {
        eprintln!(
            "warning: no --config given, so there is no policy: targets and limits are not checked"
        );
    }
    let mut cat = match catalog(config.as_ref(), path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(c) = &config {
        inspect_unchecked(&mut cat, &c.policy);
    }
    let rendered = match format {
        Format::Text => output::text(&cat),
        Format::Json => output::json(&cat) + "\n",
        Format::Github => output::github(&cat),
        Format::Gitlab => {
            // stdout is the report (redirected to the artifact); the job log gets the findings.
            eprint!("{}", output::text(&cat));
            output::gitlab(&cat)
        }
    };
    print!("{rendered}");
    if cat.is_valid() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

/// Why `k6 inspect` could not say what a script runs.
#[derive(Debug, thiserror::Error)]
pub enum InspectFailure {
    #[error("k6 is not installed here (no `k6` on PATH)")]
    NotInstalled,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("k6 inspect exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("k6 inspect did not finish within {0} s")]
    Timeout(u64),
    #[error(transparent)]
    Output(#[from] InspectError),
}

const INSPECT_TIMEOUT: Duration = Duration::from_secs(60);

/// For every valid test whose VUs and duration the spec stage could not work out from the
/// spec and the script's literal options, asks k6 itself (`k6 inspect
/// --execution-requirements`, with the spec's `env` and `load` as the runner gets them) and
/// hands the answer back to the catalog. Where k6 cannot answer, the warning stays and says why.
pub fn inspect_unchecked(cat: &mut Catalog, policy: &Policy) {
    let answers: Vec<(String, Result<Extent, String>)> = cat
        .unchecked_load()
        .into_iter()
        .map(|rt| {
            let answer = inspect(rt).map_err(|e| e.to_string());
            (rt.test.metadata.name.clone(), answer)
        })
        .collect();
    for (name, answer) in answers {
        cat.apply_inspection(&name, answer, policy);
    }
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> Result<Scratch, InspectFailure> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "perfsync-inspect-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&path).map_err(|source| InspectFailure::Io {
        what: "cannot create",
        path: path.clone(),
        source,
    })?;
    Ok(Scratch(path))
}

/// `k6 inspect --execution-requirements` on the test's bundle, written to a scratch folder.
pub fn inspect(rt: &ResolvedTest) -> Result<Extent, InspectFailure> {
    let dir = scratch()?;
    for (key, bytes) in &rt.bundle.files {
        let path = dir.0.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InspectFailure::Io {
                what: "cannot create",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, bytes).map_err(|source| InspectFailure::Io {
            what: "cannot write",
            path: path.clone(),
            source,
        })?;
    }
    let out_path = dir.0.join(".perfsync-inspect.out");
    let err_path = dir.0.join(".perfsync-inspect.err");
    let create = |p: &Path| {
        std::fs::File::create(p).map_err(|source| InspectFailure::Io {
            what: "cannot create",
            path: p.to_path_buf(),
            source,
        })
    };
    let spec = &rt.test.spec;
    let mut cmd = Command::new("k6");
    cmd.arg("inspect").arg("--execution-requirements");
    // `__ENV` as the runner has it; the spec's env reaches k6 as its environment too.
    for (k, v) in &spec.env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(&rt.bundle.entry)
        .current_dir(&dir.0)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir.0)
        .env("K6_NO_USAGE_REPORT", "true")
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(create(&out_path)?)
        .stderr(create(&err_path)?);
    // The spec's load reaches k6 as command-line flags, which `inspect` does not take; the
    // same options as environment variables sit at the same place in k6's order.
    if let Some(load) = &spec.load {
        if let Some(v) = load.vus {
            cmd.env("K6_VUS", v.to_string());
        }
        if let Some(d) = &load.duration {
            cmd.env("K6_DURATION", d.to_string());
        }
        if !load.stages.is_empty() {
            let stages: Vec<String> = load
                .stages
                .iter()
                .map(|s| format!("{}:{}", s.duration, s.target))
                .collect();
            cmd.env("K6_STAGES", stages.join(","));
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InspectFailure::NotInstalled)
        }
        Err(source) => {
            return Err(InspectFailure::Io {
                what: "cannot run k6 in",
                path: dir.0.clone(),
                source,
            })
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > INSPECT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(InspectFailure::Timeout(INSPECT_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => {
                return Err(InspectFailure::Io {
                    what: "cannot wait for k6 in",
                    path: dir.0.clone(),
                    source,
                })
            }
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    if !status.success() {
        let stderr = read(&err_path);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(InspectFailure::Failed {
            status: status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    Ok(from_inspect(&read(&out_path))?)
}
