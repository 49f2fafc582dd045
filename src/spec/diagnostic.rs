//! Validation findings: every one names a file, a line, a column and a stable code.

use serde::Serialize;
use std::fmt;

/// Stable codes; their spelling is part of the CLI's JSON output and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    YamlSyntax,
    Schema,
    DuplicateName,
    ScriptMissing,
    PathEscape,
    TargetNotAllowed,
    LimitExceeded,
    TemplateUnknown,
    TemplateParam,
    InlineSecret,
    ScheduleInvalid,
    ThresholdInvalid,
    PolicyDenied,
    ScriptSyntax,
    ModuleNotAllowed,
    LimitUnchecked,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "yaml-syntax",
            Code::Schema => "schema",
            Code::DuplicateName => "duplicate-name",
            Code::ScriptMissing => "script-missing",
            Code::PathEscape => "path-escape",
            Code::TargetNotAllowed => "target-not-allowed",
            Code::LimitExceeded => "limit-exceeded",
            Code::TemplateUnknown => "template-unknown",
            Code::TemplateParam => "template-param",
            Code::InlineSecret => "inline-secret",
            Code::ScheduleInvalid => "schedule-invalid",
            Code::ThresholdInvalid => "threshold-invalid",
            Code::PolicyDenied => "policy-denied",
            Code::ScriptSyntax => "script-syntax",
            Code::ModuleNotAllowed => "module-not-allowed",
            Code::LimitUnchecked => "limit-unchecked",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
    pub fn new(line: usize, column: usize) -> Self {
        Pos { line, column }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Path relative to the repository root, with `/` separators.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub code: Code,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, pos: Pos, code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: [{}] {}",
            self.file, self.line, self.column, self.code, self.message
        )
    }
}

/// Line and column (1-based, in characters) of a byte offset in `text`.
pub fn pos_of_offset(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos { line, column }
}
