//! Formats for validation findings: text for people, JSON for tools, GitHub workflow commands
//! for merge-request pipelines.

use crate::spec::{Catalog, Diagnostic};
use serde::Serialize;

#[derive(Serialize)]
struct TestOut<'a> {
    name: Option<&'a str>,
    file: &'a str,
    valid: bool,
    revision: Option<&'a str>,
}

#[derive(Serialize)]
struct TemplateOut<'a> {
    name: Option<&'a str>,
    file: &'a str,
    valid: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    tests: Vec<TestOut<'a>>,
    templates: Vec<TemplateOut<'a>>,
    errors: &'a [Diagnostic],
    /// What could not be checked (the tests stay valid).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'a Diagnostic>,
}

pub fn json(cat: &Catalog) -> String {
    let report = Report {
        tests: cat
            .tests
            .iter()
            .map(|t| TestOut {
                name: t.name.as_deref(),
                file: &t.file,
                valid: t.resolved.is_some(),
                revision: t.resolved.as_ref().map(|r| r.revision.as_str()),
            })
            .collect(),
        templates: cat
            .templates
            .iter()
            .map(|t| TemplateOut {
                name: t.name.as_deref(),
                file: &t.file,
                valid: t.resolved.is_some(),
            })
            .collect(),
        errors: &cat.diagnostics,
        warnings: cat.warnings.iter().map(|w| &w.diagnostic).collect(),
    };
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

pub fn text(cat: &Catalog) -> String {
    let mut out = String::new();
    for d in &cat.diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    for w in &cat.warnings {
        out.push_str(&format!("warning: {}\n", w.diagnostic));
    }
    out.push_str(&summary_line(cat));
    out
}

pub fn summary_line(cat: &Catalog) -> String {
    let valid = cat.tests.iter().filter(|t| t.resolved.is_some()).count();
    let tvalid = cat
        .templates
        .iter()
        .filter(|t| t.resolved.is_some())
        .count();
    format!(
        "{} tests ({} valid), {} templates ({} valid), {} errors\n",
        cat.tests.len(),
        valid,
        cat.templates.len(),
        tvalid,
        cat.diagnostics.len()
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands: each error shows on its line in the merge request.
pub fn github(cat: &Catalog) -> String {
    let mut out = String::new();
    for d in &cat.diagnostics {
        out.push_str(&format!(
            "::error file={},line={},col={},title={}::{}\n",
            escape_property(&d.file),
            d.line,
            d.column,
            escape_property(&format!("perfsync {}", d.code)),
            escape_data(&d.message)
        ));
    }
    for w in &cat.warnings {
        let d = &w.diagnostic;
        out.push_str(&format!(
            "::warning file={},line={},col={},title={}::{}\n",
            escape_property(&d.file),
            d.line,
            d.column,
            escape_property(&format!("perfsync {}", d.code)),
            escape_data(&d.message)
        ));
    }
    out.push_str(&summary_line(cat));
    out
}
