//! Checks on a parsed test that serde cannot make: policy limits and targets, scripts' URLs
//! and imports, thresholds, schedules, secrets written in plain text.

use super::allowlist::{normalize, Allowlist};
use super::bundle::Bundle;
use super::diagnostic::{pos_of_offset, Code, Diagnostic, Pos};
use super::locate::{locate, Seg};
use super::model::{Load, PerfTest};
use super::parse::Doc;
use super::script_scan::{self, Usage};
use super::threshold::{parse_expr, parse_metric_key};
use crate::config::Policy;
use crate::source::tree::{join, parent};
use std::time::Duration;

/// Where a spec came from, to point findings at lines.
pub struct SpecSource<'a> {
    pub file: &'a str,
    pub doc: Doc<'a>,
}

impl SpecSource<'_> {
    pub fn at(&self, path: &[Seg]) -> Pos {
        locate(self.doc.text, self.doc.first_line, path)
    }
    pub fn diag(&self, path: &[Seg], code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, self.at(path), code, message)
    }
}

pub struct PolicyCheck<'a> {
    pub policy: &'a Policy,
    pub allowlist: &'a Allowlist,
}

const SECRET_WORDS: [&str; 10] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PWD",
    "KEY",
    "APIKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
];

pub fn looks_secret(name: &str) -> bool {
    name.to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| SECRET_WORDS.contains(&w))
}

/// Why a URL may not be hit under the allowlist, or `None` when it may.
pub fn target_refusal(raw: &str, allow: &Allowlist) -> Option<String> {
    match normalize(raw) {
        Err(e) => Some(e),
        Ok(t) if allow.allows(&t) => None,
        Ok(t) => Some(format!(
            "`{raw}` (host {t}) is outside the policy's allowedTargets; use an allowed target or ask the operator to extend the policy"
        )),
    }
}

/// Spec-level checks: targets, env, thresholds, schedule, load limits.
pub fn check_spec(
    src: &SpecSource,
    test: &PerfTest,
    policy: Option<&PolicyCheck>,
    out: &mut Vec<Diagnostic>,
) {
    let s = &test.spec;
    use Seg::{Index, Key};
    for (i, target) in s.targets.iter().enumerate() {
        let path = [Key("spec"), Key("targets"), Index(i)];
        if let Err(e) = normalize(target) {
            out.push(src.diag(&path, Code::Schema, e));
        } else if let Some(p) = policy {
            if let Some(why) = target_refusal(target, p.allowlist) {
                out.push(src.diag(&path, Code::TargetNotAllowed, why));
            }
        }
    }
    // Tags travel as `--tag key=value` in the TestRun's `arguments` string, which the
    // k6-operator splits on whitespace.
    for (key, value) in &s.tags {
        if key.is_empty()
            || key.contains(['=', ' ', '\t', '\n'])
            || value.contains(char::is_whitespace)
        {
            out.push(src.diag(
                &[Key("spec"), Key("tags"), Key(key)],
                Code::Schema,
                format!("tag `{key}: {value}`: keys need at least one character and no `=` or whitespace, values no whitespace (k6 gets them as `--tag key=value` arguments); use `-` or `_` instead"),
            ));
        }
    }
    for (name, value) in &s.env {
        let path = [Key("spec"), Key("env"), Key(name)];
        if looks_secret(name) && !value.is_empty() {
            out.push(src.diag(
                &path,
                Code::InlineSecret,
                format!("env `{name}` looks like a secret but has a literal value in git; move it to secretEnv (a Kubernetes Secret) and rotate the value"),
            ));
        }
        if let Some(p) = policy {
            for url in script_scan::urls(&format!("\"{value}\""))
                .into_iter()
                .filter(|u| !u.dynamic_host)
            {
                if let Some(why) = target_refusal(&url.url, p.allowlist) {
                    out.push(src.diag(
                        &path,
                        Code::TargetNotAllowed,
                        format!("env `{name}`: {why}"),
                    ));
                }
            }
        }
    }
    for (metric, entries) in &s.thresholds {
        let path = [Key("spec"), Key("thresholds"), Key(metric)];
        if let Err(e) = parse_metric_key(metric) {
            out.push(src.diag(&path, Code::ThresholdInvalid, e));
        }
        for entry in entries {
            if let Err(e) = parse_expr(entry.expression()) {
                out.push(src.diag(&path, Code::ThresholdInvalid, e));
            }
        }
    }
    if let Some(schedule) = &s.trigger.schedule {
        if let Err(e) = check_cron(schedule) {
            out.push(src.diag(
                &[Key("spec"), Key("trigger"), Key("schedule")],
                Code::ScheduleInvalid,
                e,
            ));
        }
    }
    if s.parallelism == Some(0) {
        out.push(src.diag(
            &[Key("spec"), Key("parallelism")],
            Code::Schema,
            "parallelism must be at least 1",
        ));
    }
    if let Some(load) = &s.load {
        check_load_shape(src, load, out);
    }
    if let Some(p) = policy {
        check_limits(src, test, p.policy, out);
    }
}

/// A five-field cron expression in UTC, as Kubernetes CronJobs write it.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && !expr.trim().starts_with('@') {
        return Err(format!(
            "schedule `{expr}` has {fields} fields; write five (minute hour day-of-month month day-of-week), e.g. `0 3 * * *`"
        ));
    }
    croner::parser::CronParser::new()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "schedule `{expr}` does not parse: {e}; e.g. `0 3 * * *` runs daily at 03:00 UTC"
            )
        })
}

fn check_load_shape(src: &SpecSource, load: &Load, out: &mut Vec<Diagnostic>) {
    use Seg::Key;
    if load.duration.is_some() && !load.stages.is_empty() {
        out.push(src.diag(
            &[Key("spec"), Key("load")],
            Code::Schema,
            "load sets both duration and stages; use one of them",
        ));
    }
    if load.vus == Some(0) {
        out.push(src.diag(
            &[Key("spec"), Key("load"), Key("vus")],
            Code::Schema,
            "vus must be at least 1",
        ));
    }
}

/// Peak VUs and total duration a load asks for.
pub fn load_extent(load: &Load) -> (Option<u32>, Option<Duration>) {
    let stage_peak = load.stages.iter().map(|s| s.target).max();
    let vus = match (load.vus, stage_peak) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let duration = match (&load.duration, load.stages.is_empty()) {
        (Some(d), _) => Some(d.0),
        (None, false) => Some(load.stages.iter().map(|s| s.duration.0).sum()),
        (None, true) => None,
    };
    (vus, duration)
}

fn check_limits(src: &SpecSource, test: &PerfTest, policy: &Policy, out: &mut Vec<Diagnostic>) {
    use Seg::{Index, Key};
    let s = &test.spec;
    if let Some(load) = &s.load {
        let (vus, duration) = load_extent(load);
        if let Some(v) = vus.filter(|v| *v > policy.max_vus) {
            let path: Vec<Seg> = match load.stages.iter().position(|st| st.target == v) {
                Some(i) if load.vus != Some(v) => {
                    vec![Key("spec"), Key("load"), Key("stages"), Index(i)]
                }
                _ => vec![Key("spec"), Key("load"), Key("vus")],
            };
            out.push(src.diag(&path, Code::LimitExceeded, format!(
                "the load reaches {v} VUs, over the policy's maxVUs of {}; lower it or raise parallelism within the policy", policy.max_vus
            )));
        }
        if let Some(d) = duration.filter(|d| *d > policy.max_duration.0) {
            out.push(src.diag(
                &[Key("spec"), Key("load")],
                Code::LimitExceeded,
                format!(
                    "the load lasts {}, over the policy's maxDuration of {}; shorten it",
                    super::duration::format_duration(d),
                    policy.max_duration
                ),
            ));
        }
    }
    if s.parallelism() > policy.max_parallelism {
        out.push(src.diag(
            &[Key("spec"), Key("parallelism")],
            Code::LimitExceeded,
            format!(
                "parallelism {} is over the policy's maxParallelism of {}",
                s.parallelism(),
                policy.max_parallelism
            ),
        ));
    }
    if let Some(t) = s.timeout.filter(|t| *t > policy.max_timeout) {
        out.push(src.diag(
            &[Key("spec"), Key("timeout")],
            Code::LimitExceeded,
            format!(
                "timeout {t} is over the policy's maxTimeout of {}; shorten it",
                policy.max_timeout
            ),
        ));
    }
}

/// Script-level checks over every JavaScript file of the bundle: relative imports and `open()`
/// calls stay inside the bundle and exist; literal URLs are inside the allowlist.
pub fn check_scripts(
    bundle: &Bundle,
    allow: Option<&Allowlist>,
    skip_urls_in: &str,
    out: &mut Vec<Diagnostic>,
) {
    for (key, bytes) in &bundle.files {
        if !is_script(key) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            let origin = bundle.origin.get(key).map_or(key.as_str(), String::as_str);
            out.push(Diagnostic::new(
                origin,
                Pos::START,
                Code::Schema,
                "the script is not valid UTF-8; save it as UTF-8",
            ));
            continue;
        };
        let origin = bundle.origin.get(key).map_or(key.as_str(), String::as_str);
        for lit in script_scan::literals(text) {
            if lit.usage == Usage::Other {
                continue;
            }
            let spec = lit.text;
            let local = spec.starts_with("./")
                || spec.starts_with("../")
                || spec.starts_with('/')
                || spec.starts_with("file:");
            if !local && lit.usage == Usage::Module {
                continue; // k6/* built-ins and remote modules
            }
            let pos = pos_of_offset(text, lit.offset);
            let resolved = if spec.starts_with('/') || spec.starts_with("file:") {
                None
            } else {
                join(parent(key), spec)
            };
            match resolved {
                None => out.push(Diagnostic::new(origin, pos, Code::PathEscape, format!(
                    "`{spec}` leads outside the test's bundle; keep imported and opened files in the test's folder"
                ))),
                // `open()` of a computed path cannot be checked before the run.
                Some(p) if !bundle.files.contains_key(&p) && !(lit.usage == Usage::Open && spec.contains("${")) => {
                    out.push(Diagnostic::new(origin, pos, Code::ScriptMissing, format!(
                        "`{spec}` is not in the test's bundle; add the file or fix the path"
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(allow) = allow {
            // Template files are checked once, unrendered, with the template itself.
            if !skip_urls_in.is_empty() && key.starts_with(skip_urls_in) {
                continue;
            }
            for url in script_scan::urls(text)
                .into_iter()
                .filter(|u| !u.dynamic_host)
            {
                if let Some(why) = target_refusal(&url.url, allow) {
                    out.push(Diagnostic::new(
                        origin,
                        pos_of_offset(text, url.offset),
                        Code::TargetNotAllowed,
                        why,
                    ));
                }
            }
        }
    }
}

pub fn is_script(path: &str) -> bool {
    [".js", ".mjs", ".cjs", ".ts"]
        .iter()
        .any(|e| path.ends_with(e))
}
