use crate::spec::allowlist::Allowlist;
use crate::spec::duration::KDuration;
use crate::spec::render::MAX_PARALLELISM;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What tests may do: which targets, how hard, how long. The default allows no target at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// URL patterns (`https://*.staging.example.com`, `http://api.internal:8080`) and CIDRs
    /// (`http://10.20.0.0/16`); scheme and port must match when the pattern gives them.
    #[serde(default)]
    pub allowed_targets: Vec<String>,
    /// URL prefixes of remote modules scripts may import (`https://jslib.k6.io/`); k6
    /// downloads and runs them unchecked, so none is allowed by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_modules: Vec<String>,
    #[serde(default = "d_max_vus", rename = "maxVUs")]
    pub max_vus: u32,
    #[serde(default = "d_max_duration")]
    pub max_duration: KDuration,
    /// At most 9999: runner Services are named `<testrun>-service-<i>`.
    #[serde(default = "d_max_parallelism")]
    #[schemars(range(min = 1, max = 9999))]
    pub max_parallelism: u32,
    #[serde(default = "d_max_concurrent_runs")]
    pub max_concurrent_runs: u32,
    /// A ConfigMap holds at most 1 MiB, spec and scripts together.
    #[serde(default = "d_max_bundle_bytes")]
    pub max_bundle_bytes: u64,
    #[serde(default = "d_default_timeout")]
    pub default_timeout: KDuration,
    /// The longest `timeout` a test may ask for.
    #[serde(default = "d_max_timeout")]
    pub max_timeout: KDuration,
    #[serde(default)]
    pub regression_tolerance: RegressionTolerance,
    /// The statistical gate and change-point detection (the tolerance above is the smallest
    /// effect that counts).
    #[serde(default)]
    pub regression: RegressionPolicy,
    /// What a test may set about its runner pods (kubernetes executor).
    #[serde(default)]
    pub runner: super::RunnerPolicy,
    /// The secrets the local executor may resolve (`executor.local.secretEnv`), copied here by
    /// `Config::parse` so validation refuses a test naming another; `None` when the config's
    /// executor is not local (or there is no config).
    #[serde(skip)]
    #[schemars(skip)]
    pub local_secret_env: Option<Vec<String>>,
}

/// What a regression does to a run, and how regressions are found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegressionPolicy {
    /// `flag` (default): the run keeps its verdict and is marked; `fail`: a succeeded run
    /// that regressed ends `failed`.
    #[serde(default)]
    pub action: RegressionAction,
    /// The per-run gate: method, window K, minimum runs, significance.
    #[serde(default)]
    pub gate: crate::results::stats::GateConfig,
    /// Change points over each series' history (Otava's E-divisive means with a t-test).
    #[serde(default)]
    pub change_points: crate::results::stats::ChangePointConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegressionAction {
    #[default]
    Flag,
    Fail,
}

/// How much worse than its baseline a run may be before it is flagged as a regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegressionTolerance {
    /// Allowed p95 increase, in percent.
    #[serde(default = "d_p95_percent")]
    pub p95_percent: f64,
    /// Allowed error-rate increase, in percentage points.
    #[serde(default = "d_error_rate_points")]
    pub error_rate_points: f64,
}

fn d_max_vus() -> u32 {
    2000
}
fn d_max_duration() -> KDuration {
    KDuration::from_secs(3600)
}
fn d_max_parallelism() -> u32 {
    10
}
fn d_max_concurrent_runs() -> u32 {
    3
}
fn d_max_bundle_bytes() -> u64 {
    900_000
}
fn d_default_timeout() -> KDuration {
    KDuration::from_secs(3600)
}
fn d_max_timeout() -> KDuration {
    KDuration::from_secs(2 * 3600)
}
fn d_p95_percent() -> f64 {
    10.0
}
fn d_error_rate_points() -> f64 {
    1.0
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_targets: Vec::new(),
            allowed_modules: Vec::new(),
            max_vus: d_max_vus(),
            max_duration: d_max_duration(),
            max_parallelism: d_max_parallelism(),
            max_concurrent_runs: d_max_concurrent_runs(),
            max_bundle_bytes: d_max_bundle_bytes(),
            default_timeout: d_default_timeout(),
            max_timeout: d_max_timeout(),
            regression_tolerance: RegressionTolerance::default(),
            regression: RegressionPolicy::default(),
            runner: super::RunnerPolicy::default(),
            local_secret_env: None,
        }
    }
}

impl Default for RegressionTolerance {
    fn default() -> Self {
        RegressionTolerance {
            p95_percent: d_p95_percent(),
            error_rate_points: d_error_rate_points(),
        }
    }
}

impl Policy {
    pub fn allowlist(&self) -> Result<Allowlist, String> {
        Allowlist::parse(&self.allowed_targets).map_err(|e| format!("policy.allowedTargets: {e}"))
    }

    /// Checks what serde cannot: patterns parse, limits are usable.
    pub fn check(&self) -> Result<(), String> {
        self.allowlist()?;
        for m in &self.allowed_modules {
            let host = m
                .strip_prefix("https://")
                .or_else(|| m.strip_prefix("http://"))
                .map_or("", |rest| rest.split('/').next().unwrap_or(""));
            if host.is_empty() || host.contains('@') {
                return Err(format!(
                    "policy.allowedModules: `{m}` is not an http(s) URL prefix with a host, e.g. `https://jslib.k6.io/`"
                ));
            }
        }
        self.runner.check()?;
        self.regression
            .gate
            .validate()
            .map_err(|e| format!("policy.regression.gate: {e}"))?;
        self.regression
            .change_points
            .validate()
            .map_err(|e| format!("policy.regression.changePoints: {e}"))?;
        if self.max_bundle_bytes > 1024 * 1024 {
            return Err(format!(
                "policy.maxBundleBytes is {}; a ConfigMap holds at most 1048576 bytes",
                self.max_bundle_bytes
            ));
        }
        if self.max_parallelism == 0 || self.max_concurrent_runs == 0 || self.max_vus == 0 {
            return Err(
                "policy.maxVUs, maxParallelism and maxConcurrentRuns must be at least 1".into(),
            );
        }
        if self.max_parallelism > MAX_PARALLELISM {
            return Err(format!(
                "policy.maxParallelism is {}; at most {MAX_PARALLELISM} (the k6-operator names runner Services `<testrun>-service-<i>`, which must fit in 63 characters)",
                self.max_parallelism
            ));
        }
        if self.default_timeout > self.max_timeout {
            return Err("policy.defaultTimeout is longer than policy.maxTimeout".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_parallelism_is_capped_at_what_the_operator_can_name() {
        let mut p = Policy {
            max_parallelism: MAX_PARALLELISM,
            ..Policy::default()
        };
        assert_eq!(p.check(), Ok(()));
        p.max_parallelism = MAX_PARALLELISM + 1;
        let e = p.check().unwrap_err();
        assert!(
            e.contains("policy.maxParallelism") && e.contains("9999"),
            "{e}"
        );
    }
}
