//! The daemon's configuration file (`perfsync.yaml`): repository layout, policy, executor.
//! The policy is the operator's; nothing in a test repository can widen it.

mod policy;

pub use policy::{Policy, RegressionTolerance};

use crate::spec::diagnostic::Diagnostic;
use crate::spec::parse;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "perfsync configuration")]
pub struct Config {
    #[serde(default)]
    pub repository: RepositoryConfig,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub executor: ExecutorConfig,
}

/// Where the tests live and where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositoryConfig {
    /// A local path, `file://`, `git://`, `http(s)://` or `ssh://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default = "default_tests_dir")]
    pub tests_dir: String,
    #[serde(default = "default_templates_dir")]
    pub templates_dir: String,
    #[serde(default = "default_results_dir")]
    pub results_dir: String,
}

impl RepositoryConfig {
    pub fn layout(&self) -> Layout {
        Layout {
            tests_dir: self.tests_dir.trim_matches('/').to_string(),
            templates_dir: self.templates_dir.trim_matches('/').to_string(),
            results_dir: self.results_dir.trim_matches('/').to_string(),
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            url: None,
            branch: default_branch(),
            tests_dir: default_tests_dir(),
            templates_dir: default_templates_dir(),
            results_dir: default_results_dir(),
        }
    }
}

fn default_branch() -> String {
    "main".to_string()
}

/// The folders of a test repository (DESIGN.md section 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub tests_dir: String,
    pub templates_dir: String,
    pub results_dir: String,
}

fn default_tests_dir() -> String {
    "tests".into()
}
fn default_templates_dir() -> String {
    "templates".into()
}
fn default_results_dir() -> String {
    "results".into()
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            tests_dir: default_tests_dir(),
            templates_dir: default_templates_dir(),
            results_dir: default_results_dir(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecutorConfig {
    #[serde(default)]
    pub kind: ExecutorKind,
    /// Namespace for ConfigMaps, TestRuns and PerfTest mirrors (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Runner image when a test names none (kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_image: Option<String>,
    /// Path of the k6 binary (local executor); `k6` on PATH when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k6_binary: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostic),
    #[error("{file}: {message}")]
    Policy { file: String, message: String },
}

impl Config {
    /// Parses a config file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let docs = parse::split_documents(text);
        let config: Config = match docs.as_slice() {
            [] => Config::default(),
            [doc] => {
                parse::read_kind(file, *doc).map_err(ConfigError::Invalid)?;
                parse::typed(file, *doc).map_err(ConfigError::Invalid)?
            }
            [_, second, ..] => {
                return Err(ConfigError::Invalid(Diagnostic::new(
                    file,
                    crate::spec::diagnostic::Pos::new(second.first_line, 1),
                    crate::spec::diagnostic::Code::Schema,
                    "a config file holds one YAML document; remove the others",
                )))
            }
        };
        config.policy.check().map_err(|message| ConfigError::Policy {
            file: file.to_string(),
            message,
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            source: e,
        })?;
        let text = parse::utf8(&shown, &bytes).map_err(ConfigError::Invalid)?;
        Config::parse(&shown, text)
    }
}
