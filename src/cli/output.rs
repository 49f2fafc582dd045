//! Formats for validation findings: text for people, JSON for tools, GitHub workflow commands
//! and GitLab Code Quality reports for merge-request pipelines.

use crate::spec::{Catalog, Diagnostic};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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

/// One finding of a GitLab Code Quality report: the subset of the Code Climate issue format
/// that GitLab reads, as its documentation lists it ("Implement a custom tool",
/// <https://docs.gitlab.com/ci/testing/code_quality/#code-quality-report-format>): an array of
/// objects with `description`, `check_name`, `fingerprint`, `severity` (`info`, `minor`,
/// `major`, `critical` or `blocker`), `location.path` (relative to the project root) and
/// `location.lines.begin`. Other Code Climate properties are ignored by GitLab, so none is sent.
#[derive(Serialize)]
struct CodeQualityIssue<'a> {
    description: String,
    check_name: String,
    fingerprint: String,
    severity: &'static str,
    location: CodeQualityLocation<'a>,
}

#[derive(Serialize)]
struct CodeQualityLocation<'a> {
    path: &'a str,
    lines: CodeQualityLines,
}

#[derive(Serialize)]
struct CodeQualityLines {
    begin: usize,
}

/// A GitLab Code Quality report (`artifacts: reports: codequality:`), so each finding shows on
/// its line in the merge request. Errors (the test is refused) are `major`; warnings (what
/// could not be checked; the test stays valid) are `minor`.
///
/// The fingerprint identifies a finding across pipelines, which GitLab compares to show what a
/// merge request adds and resolves: sha256 of the code, the file, the message and the
/// finding's rank among identical ones in that file, cut to 32 hex digits. The line is left
/// out, so an edit above a finding does not make it look new; the rank keeps two identical
/// findings in one file apart (GitLab shows findings with one fingerprint as one).
pub fn gitlab(cat: &Catalog) -> String {
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let findings = cat
        .diagnostics
        .iter()
        .map(|d| (d, "major"))
        .chain(cat.warnings.iter().map(|w| (&w.diagnostic, "minor")));
    let issues: Vec<CodeQualityIssue> = findings
        .map(|(d, severity)| {
            let code = d.code.as_str();
            let rank = seen
                .entry((code, d.file.as_str(), d.message.as_str()))
                .and_modify(|n| *n += 1)
                .or_insert(0);
            let mut h = Sha256::new();
            for part in [code, d.file.as_str(), d.message.as_str()] {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
            h.update(rank.to_string().as_bytes());
            let digest = h.finalize();
            let fingerprint: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            CodeQualityIssue {
                description: format!("{} [{}]", d.message, code),
                check_name: format!("perfsync/{code}"),
                fingerprint,
                severity,
                location: CodeQualityLocation {
                    path: &d.file,
                    lines: CodeQualityLines {
                        begin: d.line.max(1),
                    },
                },
            }
        })
        .collect();
    serde_json::to_string_pretty(&issues).unwrap_or_else(|_| "[]".to_string()) + "\n"
}
