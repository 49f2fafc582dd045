//! Checks on a parsed test that serde cannot make: policy limits and targets, thresholds,
//! schedules, secrets written in plain text (scripts: [`super::js::check`]).

use super::allowlist::{normalize, Allowlist};
use super::diagnostic::{Code, Diagnostic, Pos};
use super::k8s;
use super::locate::{locate, Seg};
use super::model::{Load, PerfTest};
use super::parse::Doc;
use super::render::MAX_PARALLELISM;
use super::script_scan;
use super::threshold::{parse_expr, parse_metric_key};
use crate::config::Policy;
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
    check_kubernetes_fields(src, test, out);
    super::env_rules::check(src, test, policy, out);
    // Tags travel as `--tag key=value` in the TestRun's `arguments` string, which the
    // k6-operator splits on whitespace and pastes unquoted into a shell script.
    for (key, value) in &s.tags {
        if let Err(e) = check_tag(key, value) {
            out.push(src.diag(&[Key("spec"), Key("tags"), Key(key)], Code::Schema, e));
        }
    }
    for (i, name) in s.tracked_trends.iter().enumerate() {
        let valid = name.len() <= 128
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push(src.diag(
                &[Key("spec"), Key("trackedTrends"), Index(i)],
                Code::Schema,
                format!("trackedTrends: `{name}` is not a k6 metric name; use the name the script gives `new Trend(...)` ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
    }
    if s.tracked_trends.len() > 20 {
        out.push(src.diag(
            &[Key("spec"), Key("trackedTrends")],
            Code::Schema,
            format!(
                "trackedTrends names {} metrics; at most 20",
                s.tracked_trends.len()
            ),
        ));
    }
    for (name, value) in &s.env {
        let path = [Key("spec"), Key("env"), Key(name)];
        if let Err(e) = check_env_name(name) {
            out.push(src.diag(&path, Code::Schema, format!("env {e}")));
        }
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
    if s.parallelism() > MAX_PARALLELISM {
        out.push(src.diag(
            &[Key("spec"), Key("parallelism")],
            Code::LimitExceeded,
            format!(
                "parallelism {} is over {MAX_PARALLELISM}, the most runners the k6-operator can name (`<testrun>-service-<i>` must fit in 63 characters); lower it",
                s.parallelism()
            ),
        ));
    }
    if let Some(load) = &s.load {
        check_load_shape(src, load, out);
    }
    if let Some(p) = policy {
        check_limits(src, test, p.policy, out);
    }
    super::privileges::check(src, test, policy, out);
}

/// Characters a tag key may hold besides ASCII letters and digits.
pub const TAG_KEY_EXTRA: &str = "_.-";
/// Characters a tag value may hold besides ASCII letters and digits.
pub const TAG_VALUE_EXTRA: &str = "_.:/@+=,-";
pub const TAG_KEY_MAX: usize = 64;
pub const TAG_VALUE_MAX: usize = 256;
/// Tags perfsync and the k6-operator give every metric of a run.
pub const RESERVED_TAGS: [&str; 3] = ["testid", "instance_id", "testrun_name"];
/// Environment variables perfsync relies on being its own: the trend statistics are script
/// options, which k6's environment would override.
pub const RESERVED_ENV: [&str; 1] = ["K6_SUMMARY_TREND_STATS"];

/// A k6 tag of the spec: it becomes the `--tag key=value` argument of a TestRun, which the
/// k6-operator pastes unquoted into a shell script, so only characters inert in `sh` pass.
/// Keys: 1–64 of `A-Z a-z 0-9 _ . -`; values: 1–256 of `A-Z a-z 0-9 _ . : / @ + = , -`.
pub fn check_tag(key: &str, value: &str) -> Result<(), String> {
    let fits = |s: &str, extra: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    if !fits(key, TAG_KEY_EXTRA, TAG_KEY_MAX) {
        return Err(format!(
            "tag key `{key}`: use 1 to {TAG_KEY_MAX} ASCII letters, digits and `{TAG_KEY_EXTRA}` (k6 gets tags as `--tag key=value` arguments, which the k6-operator passes through a shell)"
        ));
    }
    if !fits(value, TAG_VALUE_EXTRA, TAG_VALUE_MAX) {
        return Err(format!(
            "tag `{key}`: value `{value}` may hold only 1 to {TAG_VALUE_MAX} ASCII letters, digits and `{TAG_VALUE_EXTRA}` (k6 gets tags as `--tag key=value` arguments, which the k6-operator passes through a shell); replace spaces and other characters with `-` or `_`"
        ));
    }
    if RESERVED_TAGS.contains(&key) {
        return Err(format!(
            "tag `{key}` is set on every metric by perfsync or the k6-operator ({}); choose another key",
            RESERVED_TAGS.join(", ")
        ));
    }
    Ok(())
}

/// An environment variable's name: a shell identifier, `[A-Za-z_][A-Za-z0-9_]*` (the
/// k6-operator's initializer passes each as `-e NAME="${NAME}"` in a shell script).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "name `{name}` is not a shell identifier; use ASCII letters, digits and `_`, not starting with a digit, e.g. `BASE_URL`"
        ));
    }
    if RESERVED_ENV.contains(&name) {
        return Err(format!(
            "`{name}` would replace the trend statistics perfsync needs from every runner; set `summaryTrendStats` in the script's options instead (perfsync adds its own to that list)"
        ));
    }
    Ok(())
}

/// What becomes part of a Kubernetes object: labels, secret references, runner settings.
fn check_kubernetes_fields(src: &SpecSource, test: &PerfTest, out: &mut Vec<Diagnostic>) {
    use Seg::{Index, Key};
    for (key, value) in &test.metadata.labels {
        if let Err(e) = k8s::check_test_label(key, value) {
            out.push(src.diag(&[Key("metadata"), Key("labels"), Key(key)], Code::Schema, e));
        }
    }
    for (i, se) in test.spec.secret_env.iter().enumerate() {
        let at = |field| [Key("spec"), Key("secretEnv"), Index(i), Key(field)];
        if let Err(e) = check_env_name(&se.name) {
            out.push(src.diag(&at("name"), Code::Schema, format!("secretEnv {e}")));
        }
        if !k8s::is_dns1123_subdomain(&se.secret) {
            out.push(src.diag(&at("secret"), Code::Schema, format!(
                "secretEnv `{}`: `{}` is not a Secret name; use lowercase letters, digits, `-` and `.` (at most 253)",
                se.name, se.secret
            )));
        }
        let key_ok = !se.key.is_empty()
            && se.key.len() <= 253
            && se
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !key_ok {
            out.push(src.diag(&at("key"), Code::Schema, format!(
                "secretEnv `{}`: `{}` is not a Secret key; use letters, digits, `-`, `_` and `.` (at most 253)",
                se.name, se.key
            )));
        }
    }
    if let Some(runner) = &test.spec.runner {
        for f in k8s::check_runner("spec.runner", runner) {
            let mut path = vec![Key("spec"), Key("runner")];
            path.extend(f.path.iter().map(|p| Key(p.as_str())));
            out.push(src.diag(&path, Code::Schema, f.message));
        }
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

/// Script-level checks (imports, `open()`, URLs, `hosts`, tags, the script's own load) live
/// in [`super::js::check`], which reads scripts with a JavaScript parser.
pub use super::js::check::is_script;
