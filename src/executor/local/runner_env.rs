//! A runner's environment, built from nothing: nothing of the daemon's own environment (its
//! database URL, API token, webhook and git secrets) reaches a runner unless the operator
//! listed it as a secret a test may name.
//!
//! What a runner gets, in this order (a later one wins, and a test cannot name perfsync's):
//! 1. the test's `env`;
//! 2. its `secretEnv`, each from the daemon's variable of that name, only when the operator
//!    lists it in `executor.local.secretEnv`;
//! 3. perfsync's: the Prometheus remote-write settings when configured, `PATH`, `HOME` and
//!    `TMPDIR` (the runner's own folders).
//!
//! k6 exposes exactly this to the script as `__ENV`. Values travel in the environment, never
//! on a command line (`/proc/<pid>/cmdline` is readable by every user on the host; a
//! process's environment only by its own user and root).

use super::LocalError;
use crate::spec::checks::check_env_name;
use crate::spec::env_rules::{check_local_secret, check_name};
use crate::spec::model::PerfTestSpec;
use std::collections::BTreeMap;

/// What every runner finds on `PATH` (k6 needs none of it; the browser module looks for a
/// browser there).
pub const RUNNER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// perfsync's own values for a runner.
pub struct Own<'a> {
    /// Prometheus remote-write settings (`K6_PROMETHEUS_RW_*`), from the config.
    pub extra: &'a [(String, String)],
    pub home: &'a str,
    pub tmpdir: &'a str,
}

/// The environment of a runner of a test with `spec`. `listed` are the daemon variables the
/// operator lets tests name in `secretEnv`; `lookup` reads the daemon's environment. Refuses
/// (naming the variable, never a value) an `env` or `secretEnv` name a test may not set, a
/// secret the operator did not list, and a listed secret the daemon does not have.
pub fn build(
    run: &str,
    spec: &PerfTestSpec,
    listed: &[String],
    lookup: impl Fn(&str) -> Option<String>,
    own: &Own,
) -> Result<Vec<(String, String)>, LocalError> {
    let refused = |e: String| LocalError::Refused {
        run: run.to_string(),
        why: e,
    };
    let mut env = BTreeMap::new();
    for (name, value) in spec.env.iter() {
        check_env_name(name).map_err(|e| refused(format!("env {e}")))?;
        check_name(name).map_err(|e| refused(format!("env {e}")))?;
        env.insert(name.clone(), value.clone());
    }
    for se in &spec.secret_env {
        check_env_name(&se.name).map_err(|e| refused(format!("secretEnv {e}")))?;
        check_local_secret(&se.name, listed).map_err(|e| refused(e.to_string()))?;
        let value = lookup(&se.name).filter(|v| !v.is_empty()).ok_or_else(|| {
            LocalError::MissingSecret {
                run: run.to_string(),
                name: se.name.clone(),
            }
        })?;
        env.insert(se.name.clone(), value);
    }
    for (name, value) in own.extra {
        env.insert(name.clone(), value.clone());
    }
    env.insert("PATH".into(), RUNNER_PATH.into());
    env.insert("HOME".into(), own.home.into());
    env.insert("TMPDIR".into(), own.tmpdir.into());
    Ok(env.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::SecretEnv;

    fn spec(env: &[(&str, &str)], secrets: &[&str]) -> PerfTestSpec {
        let mut yaml = String::from("script: s.js\ntargets: [http://127.0.0.1:1]\n");
        if !env.is_empty() {
            yaml.push_str("env:\n");
            for (k, v) in env {
                yaml.push_str(&format!("  {k}: '{v}'\n"));
            }
        }
        let mut spec: PerfTestSpec = serde_yaml::from_str(&yaml).expect("spec");
        spec.secret_env = secrets
            .iter()
            .map(|n| SecretEnv {
                name: n.to_string(),
                secret: "s".into(),
                key: "k".into(),
            })
            .collect();
        spec
    }

    fn own() -> Own<'static> {
        Own {
            extra: &[],
            home: "/perfsync/work",
            tmpdir: "/tmp",
        }
    }

    #[test]
    fn only_the_tests_env_listed_secrets_and_perfsyncs_values() {
        let listed = vec!["API_TOKEN".to_string()];
        let lookup = |n: &str| match n {
            "API_TOKEN" => Some("t0ken".to_string()),
            "PERFSYNC_DATABASE_URL" => Some("postgres://secret".to_string()),
            _ => None,
        };
        let env = build(
            "r",
            &spec(&[("BASE_URL", "http://x")], &["API_TOKEN"]),
            &listed,
            lookup,
            &own(),
        )
        .expect("env");
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["API_TOKEN", "BASE_URL", "HOME", "PATH", "TMPDIR"]);
        assert!(env.contains(&("HOME".into(), "/perfsync/work".into())));
    }

    #[test]
    fn refused_names_unlisted_and_missing_secrets_stop_the_run_without_values() {
        let listed = vec!["API_TOKEN".to_string()];
        let lookup = |n: &str| (n == "DATABASE_URL").then(|| "postgres://pw@db".to_string());
        for (env, secrets, says) in [
            (vec![("LD_PRELOAD", "./evil.so")], vec![], "LD_PRELOAD"),
            (vec![("PERFSYNC_OUT", "/etc/x")], vec![], "PERFSYNC_OUT"),
            (vec![("https_proxy", "http://evil")], vec![], "https_proxy"),
            (vec![("K6_OUT", "json=/x")], vec![], "K6_OUT"),
            (vec![], vec!["DATABASE_URL"], "executor.local.secretEnv"),
            (vec![], vec!["API_TOKEN"], "API_TOKEN"),
        ] {
            let e = build("r", &spec(&env, &secrets), &listed, lookup, &own()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("postgres://"), "{text}");
        }
    }
}
