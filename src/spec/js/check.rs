//! A test's scripts, checked: the entry script, every file it imports (whatever its name ends
//! in) and every script file of the bundle is parsed; what they import must be a k6 module,
//! a file of the bundle, or a remote module the policy allows; what they `open()` must be in
//! the bundle (and stays data); every URL a string can be folded into must be an allowed
//! target; `hosts` and perfsync's own tags may not be set; and what k6 will run must fit the
//! policy's maxVUs and maxDuration. A script that does not parse fails the test.

use super::options::{plan, Plan};
use super::value::Piece;
use super::{analyze, Analysis, Dialect, Env, FoundString, JsError, ModuleKind};
use crate::config::Policy;
use crate::source::tree::{join, parent};
use crate::spec::allowlist::{normalize, Allowlist};
use crate::spec::bundle::Bundle;
use crate::spec::checks::load_extent;
use crate::spec::diagnostic::{pos_of_offset, Code, Diagnostic, Pos};
use crate::spec::duration::format_duration;
use crate::spec::model::Load;
use crate::spec::script_scan::{self, Piece as ScanPiece};
use crate::spec::template::Rendered;
use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};

/// What a template parameter without a value is rendered as when a template is checked on
/// its own: an identifier, so the script still parses, never taken for a host or a path.
pub const PLACEHOLDER: &str = "__perfsync_param_";

/// File names k6 reads as scripts (others are checked when a script imports them).
pub fn is_script(path: &str) -> bool {
    [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"]
        .iter()
        .any(|e| path.ends_with(e))
}

/// The entry script is a template, rendered.
pub struct RenderedEntry<'a> {
    pub rendered: &'a Rendered,
    /// The template's script as written, and the template's name.
    pub template_text: &'a str,
    pub template: &'a str,
    /// The spec file whose parameters rendered it; `None` when the template is checked on
    /// its own, with its defaults and [`PLACEHOLDER`]s for parameters without one.
    pub for_test: Option<&'a str>,
}

pub struct Limits<'a> {
    pub policy: &'a Policy,
    pub load: Option<&'a Load>,
}

pub struct Context<'a> {
    /// `None`: no policy, so targets, remote modules and `hosts` are not checked.
    pub allow: Option<&'a Allowlist>,
    /// URL prefixes of remote modules the policy allows.
    pub allowed_modules: &'a [String],
    /// `__ENV` as the spec sets it.
    pub env: &'a Env,
    pub entry: Option<RenderedEntry<'a>>,
    /// Check what k6 will run against these (a test under a policy).
    pub limits: Option<Limits<'a>>,
}

/// Positions in one file of the bundle.
struct Place<'a> {
    file: &'a str,
    text: &'a str,
    entry: Option<&'a RenderedEntry<'a>>,
}

impl Place<'_> {
    fn pos(&self, offset: usize) -> Pos {
        match self.entry {
            Some(r) => pos_of_offset(r.template_text, r.rendered.source_offset(offset)),
            None => pos_of_offset(self.text, offset),
        }
    }

    /// Where a rendered template's finding comes from, for its message.
    fn note(&self, range: std::ops::Range<usize>) -> String {
        let Some(r) = self.entry else {
            return String::new();
        };
        let params = r.rendered.params_in(range);
        let with = if params.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
            format!(", with parameter {}", list.join(", "))
        };
        match r.for_test {
            Some(spec) => format!(" (template `{}` as rendered for {spec}{with})", r.template),
            None => format!(" (template `{}` with its defaults{with})", r.template),
        }
    }

    fn diag(&self, offset: usize, code: Code, message: String) -> Diagnostic {
        let note = self.note(offset..offset + 1);
        Diagnostic::new(
            self.file,
            self.pos(offset),
            code,
            format!("{message}{note}"),
        )
    }
}

/// Checks every script of `bundle`; errors and warnings go to their lists.
pub fn check_bundle(
    bundle: &Bundle,
    ctx: &Context,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let mut queue: VecDeque<String> = VecDeque::new();
    if !bundle.entry.is_empty() {
        queue.push_back(bundle.entry.clone());
    }
    queue.extend(bundle.files.keys().filter(|k| is_script(k)).cloned());
    let mut seen = BTreeSet::new();
    while let Some(key) = queue.pop_front() {
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(bytes) = bundle.files.get(&key) else {
            continue;
        };
        let origin = bundle.origin.get(&key).map_or(key.as_str(), String::as_str);
        let is_entry = key == bundle.entry;
        let rendered = ctx.entry.as_ref().filter(|_| is_entry);
        let text: Cow<str> = match rendered {
            Some(r) => Cow::Borrowed(r.rendered.text.as_str()),
            None => match std::str::from_utf8(bytes) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => {
                    errors.push(Diagnostic::new(
                        origin,
                        Pos::START,
                        Code::Schema,
                        "the script is not valid UTF-8; save it as UTF-8",
                    ));
                    continue;
                }
            },
        };
        let place = Place {
            file: origin,
            text: &text,
            entry: rendered,
        };
        let placeholders = rendered.is_some_and(|r| r.for_test.is_none());
        let analysis = match analyze(&text, Dialect::of(&key), ctx.env) {
            Ok(a) => a,
            Err(e) => {
                if !placeholders {
                    errors.push(parse_failure(&place, &e));
                }
                continue;
            }
        };
        let imports = check_file(&key, bundle, &analysis, ctx, &place, placeholders, errors);
        queue.extend(imports);
        if is_entry {
            if let Some(limits) = &ctx.limits {
                check_limits(&analysis, limits, &place, errors, warnings);
            }
        }
    }
}

fn parse_failure(place: &Place, e: &JsError) -> Diagnostic {
    let what = match e {
        JsError::Syntax { message, .. } => format!(
            "the script does not parse as JavaScript: {message}; fix the syntax (k6 would refuse the script too)"
        ),
        other => other.to_string(),
    };
    place.diag(e.offset(), Code::ScriptSyntax, what)
}

/// One file's findings; returns the bundle files it imports, to be checked in turn.
fn check_file(
    key: &str,
    bundle: &Bundle,
    a: &Analysis,
    ctx: &Context,
    place: &Place,
    placeholders: bool,
    out: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut imports = Vec::new();
    for m in &a.modules {
        let Some(spec) = &m.specifier else {
            out.push(place.diag(m.at, Code::ModuleNotAllowed, "the module to load is computed at run time, so perfsync cannot check it; write its path as a string literal".into()));
            continue;
        };
        if placeholders && spec.contains(PLACEHOLDER) {
            continue;
        }
        if spec == "k6" || spec.starts_with("k6/") {
            continue;
        }
        let lower = spec.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") || spec.starts_with("//") {
            if ctx.allow.is_some() && !module_allowed(spec, ctx.allowed_modules) {
                out.push(place.diag(m.at, Code::ModuleNotAllowed, format!(
                    "`{spec}` is a remote module: k6 downloads and runs it at the start of every run, and perfsync cannot check what it does; copy it into the test's folder and import it with a relative path, or ask the operator to add its URL prefix to policy.allowedModules"
                )));
            }
            continue;
        }
        let local = spec.starts_with("./")
            || spec.starts_with("../")
            || spec.starts_with('/')
            || spec.starts_with("file:");
        if !local {
            out.push(place.diag(m.at, Code::ModuleNotAllowed, format!(
                "`{spec}` is neither a k6 module (`k6`, `k6/…`) nor a file of the test (`./…`), so k6 cannot load it; copy the module into the test's folder and import it with a relative path"
            )));
            continue;
        }
        match resolve(key, spec) {
            None => out.push(place.diag(m.at, Code::PathEscape, format!(
                "`{spec}` leads outside the test's bundle; keep imported and opened files in the test's folder"
            ))),
            Some(p) if !bundle.files.contains_key(&p) => out.push(place.diag(m.at, Code::ScriptMissing, format!(
                "`{spec}` is not in the test's bundle; add the file or fix the path"
            ))),
            Some(p) => {
                if m.kind != ModuleKind::Dynamic || !imports.contains(&p) {
                    imports.push(p);
                }
            }
        }
    }
    for o in &a.opens {
        // A path built at run time cannot be checked before the run.
        let Some(path) = &o.path else { continue };
        if placeholders && path.contains(PLACEHOLDER) {
            continue;
        }
        match resolve(key, path) {
            None => out.push(place.diag(o.at, Code::PathEscape, format!(
                "`{path}` leads outside the test's bundle; keep imported and opened files in the test's folder"
            ))),
            Some(p) if !bundle.files.contains_key(&p) => out.push(place.diag(o.at, Code::ScriptMissing, format!(
                "`{path}` is not in the test's bundle; add the file or fix the path"
            ))),
            Some(_) => {}
        }
    }
    for t in &a.reserved_tags {
        let msg = match &t.key {
            Some(k) => format!(
                "the script sets tag `{k}`, which perfsync sets on every metric of a run (it reads each run's metrics by `testid`; {} are reserved); use another tag key",
                super::RESERVED_TAGS.join(", ")
            ),
            None => format!(
                "a tag key computed at run time may be one perfsync sets itself ({}); write tag keys as literals",
                super::RESERVED_TAGS.join(", ")
            ),
        };
        out.push(place.diag(t.at, Code::Schema, msg));
    }
    let Some(allow) = ctx.allow else {
        return imports;
    };
    for &at in &a.hosts {
        out.push(place.diag(at, Code::TargetNotAllowed, "`hosts` sends host names to addresses of the script's choosing, past the policy's allowedTargets; remove it (let DNS resolve names, or ask the operator to allow the address as a target)".into()));
    }
    for s in &a.strings {
        check_urls(s, allow, place, placeholders, out);
    }
    imports
}

/// A bundle path for a specifier or `open()` path of file `key`; `None` outside the bundle.
fn resolve(key: &str, spec: &str) -> Option<String> {
    if spec.starts_with('/') || spec.starts_with("file:") {
        return None;
    }
    join(parent(key), spec)
}

/// Whether a remote module's URL starts with one of the policy's prefixes, at a `/` (so
/// `https://jslib.k6.io` does not allow `https://jslib.k6.io.evil.example/`).
pub fn module_allowed(spec: &str, prefixes: &[String]) -> bool {
    let s = spec.to_ascii_lowercase();
    prefixes.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        s.starts_with(&p)
            && (p.ends_with('/') || s.len() == p.len() || s[p.len()..].starts_with('/'))
    })
}

fn check_urls(
    s: &FoundString,
    allow: &Allowlist,
    place: &Place,
    placeholders: bool,
    out: &mut Vec<Diagnostic>,
) {
    let scan: Vec<ScanPiece> = s
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Text { text, .. } => ScanPiece::Text(text),
            Piece::Env { name, value } => ScanPiece::Env { name, value },
            Piece::Unknown => ScanPiece::Unknown,
        })
        .collect();
    for u in script_scan::urls_in(&scan) {
        if u.dynamic_host || (placeholders && u.check.contains(PLACEHOLDER)) {
            continue;
        }
        // Where it is written: inside a literal of this expression, or the expression.
        let src = match s.pieces.get(u.piece) {
            Some(Piece::Text {
                src: Some(src),
                text,
            }) => Some((*src, text)),
            _ => None,
        };
        let offset = match src {
            Some((src, _)) if (s.at..s.end).contains(&src) => src + u.offset,
            Some((_, text)) => {
                // It starts in a `const` written elsewhere; when that literal alone names the
                // same host, it is reported there.
                if script_scan::urls(text).iter().any(|o| o.check == u.check) {
                    continue;
                }
                s.at
            }
            None => s.at,
        };
        // An `env` value that is the whole URL was checked where the spec sets it.
        if u.within_env {
            continue;
        }
        let Some(why) = refusal(&u, allow) else {
            continue;
        };
        let mut notes = Vec::new();
        if u.partial_host {
            notes.push("the rest of its host is computed at run time; perfsync checks the part written here".to_string());
        }
        if !u.env.is_empty() {
            let list: Vec<String> = u.env.iter().map(|n| format!("`{n}`")).collect();
            notes.push(format!("built with env {} from the spec", list.join(", ")));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        let range = offset..offset + u.url.len().max(1);
        let rendered_note = place.note(if place.entry.is_some() {
            s.at..s.end
        } else {
            range
        });
        out.push(Diagnostic::new(
            place.file,
            place.pos(offset),
            Code::TargetNotAllowed,
            format!("{why}{notes}{rendered_note}"),
        ));
    }
}

/// Why a URL found in a script may not be reached, or `None` when it may.
fn refusal(u: &script_scan::FoundUrl, allow: &Allowlist) -> Option<String> {
    let authority = u
        .check
        .split_once("://")
        .map_or("", |(_, rest)| rest.trim_end_matches('/'));
    if authority.contains('\\') {
        return Some(format!(
            "`{}` has a backslash in its host part, which k6 (Go) and URL parsers read differently; write the URL without it",
            u.url
        ));
    }
    let schemes: Vec<&str> = if u.scheme_unknown {
        script_scan::schemes().to_vec()
    } else {
        vec![u.check.split("://").next().unwrap_or("https")]
    };
    let mut last = None;
    for scheme in schemes {
        let url = format!("{scheme}://{authority}/");
        match normalize(&url) {
            Ok(t) if allow.allows(&t) => return None,
            Ok(t) => last = Some(format!(
                "`{}` reaches {t}, outside the policy's allowedTargets; use an allowed target or ask the operator to extend the policy",
                u.url
            )),
            Err(e) => last = Some(format!("`{}`: {e}", u.url)),
        }
    }
    last
}

/// maxVUs and maxDuration against what k6 will run: the spec's `load` over the script's
/// options. What the spec's `load` alone exceeds is reported on the spec already.
fn check_limits(
    a: &Analysis,
    limits: &Limits,
    place: &Place,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let policy = limits.policy;
    let (load_vus, load_duration) = limits.load.map_or((None, None), load_extent);
    match plan(&a.options, limits.load) {
        Plan::Known(e) => {
            let spec_says = load_vus.is_some_and(|v| u64::from(v) > u64::from(policy.max_vus));
            if e.vus > u64::from(policy.max_vus) && !spec_says {
                errors.push(place.diag(e.vus_at.unwrap_or(0), Code::LimitExceeded, format!(
                    "k6 will run up to {} VUs ({}), over the policy's maxVUs of {}; lower the script's options or set spec.load within the policy",
                    e.vus, e.vus_why, policy.max_vus
                )));
            }
            let spec_says = load_duration.is_some_and(|d| d > policy.max_duration.0);
            if let Some(d) = e.duration.filter(|d| *d > policy.max_duration.0) {
                if !spec_says {
                    errors.push(place.diag(e.duration_at.unwrap_or(0), Code::LimitExceeded, format!(
                        "k6 will run for {} ({}), over the policy's maxDuration of {}; shorten the script's options or set spec.load within the policy",
                        format_duration(d), e.duration_why, policy.max_duration
                    )));
                }
            }
        }
        Plan::Unknown { at, why } => warnings.push(place.diag(at.unwrap_or(0), Code::LimitUnchecked, format!(
            "perfsync cannot tell how many VUs and how long k6 will run ({why}), so maxVUs and maxDuration are not checked; write the options as literals or set spec.load (`perfsync validate` asks `k6 inspect` when k6 is installed)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_prefixes_end_at_a_slash() {
        let allowed = vec!["https://jslib.k6.io".to_string()];
        assert!(module_allowed(
            "https://jslib.k6.io/k6-utils/1.4.0/index.js",
            &allowed
        ));
        assert!(module_allowed("HTTPS://JSLIB.K6.IO/x.js", &allowed));
        assert!(!module_allowed(
            "https://jslib.k6.io.evil.example/x.js",
            &allowed
        ));
        assert!(!module_allowed(
            "https://jslib.k6.io@evil.example/x.js",
            &allowed
        ));
        assert!(!module_allowed("https://evil.example/x.js", &allowed));
    }
}
