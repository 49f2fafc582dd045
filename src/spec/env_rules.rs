//! Which environment variables a test may set (`env`, `secretEnv`), and which secrets the
//! local executor may resolve for it.
//!
//! A runner's environment reaches the shell that wraps k6, the sandbox's tools and k6 itself,
//! so a name that steers any of them is refused: the dynamic loader (`LD_*`, `GCONV_PATH`, …),
//! the shell (`PATH`, `HOME`, `ENV`, `BASH_ENV`, …), perfsync's own values (`PERFSYNC_*`),
//! proxies (`*_PROXY`, any case: traffic that leaves through a proxy escapes the allowlist),
//! and k6's own configuration (`K6_*`: outputs that write files or send data elsewhere, load
//! settings that pass the policy's limits, the REST API address) except the few in
//! [`K6_ALLOWED`], which only shape the test's own requests. The same rules hold at
//! `perfsync validate`, at every sync and again when the local executor starts a run.

use super::checks::{check_env_name, PolicyCheck, SpecSource};
use super::diagnostic::Code;
use super::locate::Seg;
use super::model::PerfTest;
use crate::spec::Diagnostic;

/// The `K6_*` variables a test may set, and why each is harmless: it shapes only the test's
/// own requests, never what k6 writes, where it sends data, or how much load it makes.
pub const K6_ALLOWED: [(&str, &str); 10] = [
    (
        "K6_INSECURE_SKIP_TLS_VERIFY",
        "staging targets with self-signed certificates; only the test's own TLS connections",
    ),
    (
        "K6_USER_AGENT",
        "the User-Agent header of the test's own requests",
    ),
    (
        "K6_NO_CONNECTION_REUSE",
        "how the test's own connections are reused",
    ),
    (
        "K6_NO_VU_CONNECTION_REUSE",
        "how the test's own connections are reused across iterations",
    ),
    (
        "K6_BATCH",
        "how many of a `http.batch` call's requests go at once (still within the VUs)",
    ),
    ("K6_BATCH_PER_HOST", "the same, per host"),
    ("K6_DISCARD_RESPONSE_BODIES", "memory of the test's own VUs"),
    ("K6_THROW", "whether the test's failed requests throw"),
    (
        "K6_MIN_ITERATION_DURATION",
        "pacing; it can only slow the test down",
    ),
    (
        "K6_DNS",
        "resolver caching, selection and IP family (host overrides, K6_HOSTS, are refused)",
    ),
];

/// Names refused exactly, with the reason.
const REFUSED: [(&str, &str); 27] = [
    (
        "PATH",
        "it decides which programs the runner's shell starts",
    ),
    (
        "HOME",
        "perfsync gives each runner a home in its own run folder",
    ),
    (
        "TMPDIR",
        "perfsync gives each runner its own temporary folder",
    ),
    ("SHELL", "it names the shell programs start"),
    ("ENV", "the shell runs the file it names"),
    ("BASH_ENV", "bash runs the file it names"),
    ("BASHOPTS", "it changes how bash runs the wrapper"),
    ("SHELLOPTS", "it changes how the shell runs the wrapper"),
    ("IFS", "it changes how the shell splits words"),
    ("CDPATH", "it changes where the shell's `cd` goes"),
    ("PS4", "the shell expands it when tracing"),
    ("GCONV_PATH", "the C library loads native code from it"),
    (
        "GLIBC_TUNABLES",
        "it reconfigures the C library of the wrapper and sandbox tools",
    ),
    ("LOCPATH", "the C library reads locale files from it"),
    ("NLSPATH", "the C library reads message catalogs from it"),
    (
        "HOSTALIASES",
        "it rewrites host names for the C library's resolver",
    ),
    ("RES_OPTIONS", "it changes the C library's resolver"),
    ("LOCALDOMAIN", "it changes the C library's resolver"),
    (
        "TZDIR",
        "it names a folder the C library reads time zone files from",
    ),
    (
        "SSLKEYLOGFILE",
        "k6 writes the TLS session keys to the file it names",
    ),
    (
        "SSL_CERT_FILE",
        "it replaces the trusted certificate authorities of the runner",
    ),
    (
        "SSL_CERT_DIR",
        "it replaces the trusted certificate authorities of the runner",
    ),
    (
        "GODEBUG",
        "it changes k6's Go runtime (and can log request details)",
    ),
    ("GOGC", "it changes k6's Go runtime"),
    ("GOMAXPROCS", "it changes k6's Go runtime"),
    ("GOMEMLIMIT", "it changes k6's Go runtime"),
    ("GOTRACEBACK", "it changes k6's Go runtime"),
];

/// Prefixes refused (case as written), with the reason.
const REFUSED_PREFIXES: [(&str, &str); 5] = [
    (
        "LD_",
        "the dynamic loader reads it (`LD_PRELOAD` runs native code from any file)",
    ),
    (
        "PERFSYNC_",
        "perfsync's own control values are not the test's to set",
    ),
    ("MALLOC_", "it reconfigures the C library's allocator"),
    (
        "XDG_",
        "k6 reads its configuration (outputs, addresses) from the folders it names",
    ),
    ("BASH_FUNC_", "bash imports functions from it"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("`{name}` may not be set by a test: {why}")]
    Refused { name: String, why: String },
    #[error("`{name}` configures k6 itself; a test may set only {allowed} (see the README, \"What a test may and may not do\")")]
    K6Option { name: String, allowed: String },
    #[error("secretEnv `{name}` is not a variable the local executor may resolve; the operator lists those in executor.local.secretEnv ({listed})")]
    SecretNotListed { name: String, listed: String },
}

/// Why a test may not set the environment variable `name`, or `Ok` when it may. Names that
/// are not shell identifiers are refused elsewhere ([`check_env_name`]).
pub fn check_name(name: &str) -> Result<(), EnvError> {
    let refused = |why: &str| {
        Err(EnvError::Refused {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return refused(why);
    }
    if let Some((_, why)) = REFUSED_PREFIXES.iter().find(|(p, _)| name.starts_with(p)) {
        return refused(why);
    }
    if name.to_ascii_uppercase().ends_with("_PROXY") {
        return refused(
            "a proxy would carry the test's traffic past the policy's allowedTargets (any spelling of *_PROXY)",
        );
    }
    if name.starts_with("K6_") && !K6_ALLOWED.iter().any(|(n, _)| *n == name) {
        return Err(EnvError::K6Option {
            name: name.to_string(),
            allowed: K6_ALLOWED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

/// Whether the local executor may resolve secret `name` for a test: the operator lists it in
/// `executor.local.secretEnv`, and it is a name a test may set at all.
pub fn check_local_secret(name: &str, listed: &[String]) -> Result<(), EnvError> {
    check_name(name)?;
    if listed.iter().any(|l| l == name) {
        return Ok(());
    }
    Err(EnvError::SecretNotListed {
        name: name.to_string(),
        listed: if listed.is_empty() {
            "it lists none".to_string()
        } else {
            listed.join(", ")
        },
    })
}

/// Spec-level findings about the test's environment: refused names in `env` and `secretEnv`,
/// and, under a policy that knows the local executor's list, secrets it may not resolve.
pub fn check(
    src: &SpecSource,
    test: &PerfTest,
    policy: Option<&PolicyCheck>,
    out: &mut Vec<Diagnostic>,
) {
    use Seg::{Index, Key};
    for name in test.spec.env.keys() {
        // Names that are not identifiers, or reserved by perfsync, are reported by checks.rs.
        if check_env_name(name).is_err() {
            continue;
        }
        if let Err(e) = check_name(name) {
            out.push(src.diag(
                &[Key("spec"), Key("env"), Key(name)],
                Code::Schema,
                format!("env {e}"),
            ));
        }
    }
    let listed = policy.and_then(|p| p.policy.local_secret_env.as_deref());
    for (i, se) in test.spec.secret_env.iter().enumerate() {
        if check_env_name(&se.name).is_err() {
            continue;
        }
        let found = match listed {
            Some(listed) => check_local_secret(&se.name, listed),
            None => check_name(&se.name),
        };
        if let Err(e) = found {
            out.push(src.diag(
                &[Key("spec"), Key("secretEnv"), Index(i), Key("name")],
                Code::Schema,
                match e {
                    EnvError::SecretNotListed { .. } => e.to_string(),
                    _ => format!("secretEnv {e}"),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_shell_perfsync_proxy_and_k6_settings_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "PERFSYNC_OUT",
            "PERFSYNC_EXIT",
            "PATH",
            "HOME",
            "SHELL",
            "BASH_ENV",
            "ENV",
            "http_proxy",
            "HTTPS_PROXY",
            "All_Proxy",
            "NO_PROXY",
            "K6_OUT",
            "K6_VUS",
            "K6_HOSTS",
            "K6_CONSOLE_OUTPUT",
            "K6_BROWSER_ARGS",
            "K6_WEB_DASHBOARD",
            "K6_HTTP_DEBUG",
            "K6_PROMETHEUS_RW_SERVER_URL",
            "SSLKEYLOGFILE",
            "XDG_CONFIG_HOME",
            "GCONV_PATH",
        ] {
            assert!(check_name(name).is_err(), "{name} passed");
        }
    }

    #[test]
    fn ordinary_names_and_the_listed_k6_settings_pass() {
        for name in ["BASE_URL", "API_TOKEN", "proxy_mode", "K6", "MY_K6_URL"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        for (name, _) in K6_ALLOWED {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_local_secret_must_be_listed_by_the_operator() {
        let listed = vec!["API_TOKEN".to_string()];
        assert_eq!(check_local_secret("API_TOKEN", &listed), Ok(()));
        let e = check_local_secret("PERFSYNC_DATABASE_URL", &listed).unwrap_err();
        assert!(matches!(e, EnvError::Refused { .. }), "{e}");
        let e = check_local_secret("DATABASE_URL", &listed).unwrap_err();
        assert!(e.to_string().contains("executor.local.secretEnv"), "{e}");
        let e = check_local_secret("DATABASE_URL", &[]).unwrap_err();
        assert!(e.to_string().contains("it lists none"), "{e}");
    }
}
