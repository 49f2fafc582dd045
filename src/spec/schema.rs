//! JSON Schemas for editors and merge-request pipelines, generated from the Rust types.

use super::model::{PerfTemplate, PerfTest};
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    Perftest,
    Template,
    Config,
    Runsummary,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 3] = [
        SchemaKind::Perftest,
        SchemaKind::Template,
        SchemaKind::Config,
    ];

    /// The checked-in copy, relative to the repository root.
    pub fn file(self) -> &'static str {
        match self {
            SchemaKind::Perftest => "schemas/perftest.schema.json",
            SchemaKind::Template => "schemas/template.schema.json",
            SchemaKind::Config => "schemas/config.schema.json",
            SchemaKind::Runsummary => "schemas/runsummary.schema.json",
        }
    }
}

pub fn schema_json(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Perftest => schemars::schema_for!(PerfTest),
        SchemaKind::Template => schemars::schema_for!(PerfTemplate),
        SchemaKind::Config => schemars::schema_for!(Config),
        SchemaKind::Runsummary => schemars::schema_for!(crate::results::summary::RunSummary),
    };
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
