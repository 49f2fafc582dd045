//! From a repository snapshot to the set of tests and templates, each valid (with its bundle
//! and revision) or reported. One bad test never hides or blocks another.

use super::bundle::{self, Bundle, SPEC_FILES, TEMPLATE_FILES};
use super::checks::{check_spec, PolicyCheck, SpecSource};
use super::diagnostic::{Code, Diagnostic, Pos};
use super::js::check::{self as script_check, Limits, RenderedEntry, PLACEHOLDER};
use super::k8s::MAX_CONFIGMAP_BYTES;
use super::locate::Seg;
use super::model::{PerfTemplate, PerfTest, API_VERSION, KIND_TEMPLATE, KIND_TEST};
use super::parse::{self, Doc};
use super::revision::revision;
use super::template;
use crate::config::{Layout, Policy};
use crate::source::tree::{is_within, join, parent, Tree};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Spec files over this size are refused before parsing.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTest {
    /// The spec as it will run: template parameters filled in with their defaults.
    pub test: PerfTest,
    /// The folder holding the test's spec, relative to the repository root.
    pub dir: String,
    pub bundle: Bundle,
    pub revision: String,
    /// The template it renders, if any, and that template's own content hash.
    pub template: Option<String>,
    pub template_revision: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TestEntry {
    /// `None` when the spec did not parse far enough to have one.
    pub name: Option<String>,
    pub file: String,
    /// Where `metadata.name` is written, for findings about the name.
    pub name_pos: Pos,
    /// The template the spec names, valid or not.
    pub template: Option<String>,
    /// `None` when the test is invalid; its errors are in [`Catalog::diagnostics`].
    pub resolved: Option<Arc<ResolvedTest>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTemplate {
    pub template: PerfTemplate,
    pub dir: String,
    /// The template folder's files, keyed relative to it, unrendered.
    pub files: Bundle,
}

#[derive(Debug, Clone)]
pub struct TemplateEntry {
    pub name: Option<String>,
    pub file: String,
    pub resolved: Option<ResolvedTemplate>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tests: Vec<TestEntry>,
    pub templates: Vec<TemplateEntry>,
    pub diagnostics: Vec<Diagnostic>,
    /// Findings that do not make a test invalid: what perfsync could not check.
    pub warnings: Vec<Warning>,
}

/// Something perfsync could not check about a valid test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub test: String,
    pub diagnostic: Diagnostic,
}

/// What `k6 inspect --execution-requirements` said about a test's script, run at the edge
/// (the CLI) and handed back to [`Catalog::apply_inspection`].
pub type Inspection = Result<super::js::options::Extent, String>;

impl Catalog {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
    pub fn valid_tests(&self) -> impl Iterator<Item = &ResolvedTest> {
        self.tests.iter().filter_map(|t| t.resolved.as_deref())
    }
    pub fn test(&self, name: &str) -> Option<&TestEntry> {
        self.tests.iter().find(|t| t.name.as_deref() == Some(name))
    }

    /// Valid tests whose VUs and duration could not be worked out from their spec and
    /// script, so maxVUs and maxDuration are unchecked: candidates for `k6 inspect`.
    pub fn unchecked_load(&self) -> Vec<&ResolvedTest> {
        self.warnings
            .iter()
            .filter(|w| w.diagnostic.code == Code::LimitUnchecked)
            .filter_map(|w| self.test(&w.test).and_then(|t| t.resolved.as_deref()))
            .collect()
    }

    /// Applies what `k6 inspect` said about `test`: within the policy, the warning goes;
    /// over it, the test is invalid, with an error where the warning was; when k6 could not
    /// say, the warning stays and says why.
    pub fn apply_inspection(&mut self, test: &str, inspection: Inspection, policy: &Policy) {
        let Some(i) = self
            .warnings
            .iter()
            .position(|w| w.test == test && w.diagnostic.code == Code::LimitUnchecked)
        else {
            return;
        };
        let extent = match inspection {
            Ok(e) => e,
            Err(why) => {
                self.warnings[i]
                    .diagnostic
                    .message
                    .push_str(&format!("; k6 inspect could not tell either: {why}"));
                return;
            }
        };
        let w = self.warnings.remove(i);
        let d = &w.diagnostic;
        let at = Pos::new(d.line, d.column);
        let mut errors = Vec::new();
        if extent.vus > u64::from(policy.max_vus) {
            errors.push(Diagnostic::new(&d.file, at, Code::LimitExceeded, format!(
                "k6 inspect says the script runs up to {} VUs ({}), over the policy's maxVUs of {}; lower the script's options or set spec.load within the policy",
                extent.vus, extent.vus_why, policy.max_vus
            )));
        }
        if let Some(dur) = extent.duration.filter(|x| *x > policy.max_duration.0) {
            errors.push(Diagnostic::new(&d.file, at, Code::LimitExceeded, format!(
                "k6 inspect says the script runs for {} ({}), over the policy's maxDuration of {}; shorten the script's options or set spec.load within the policy",
                super::duration::format_duration(dur), extent.duration_why, policy.max_duration
            )));
        }
        if errors.is_empty() {
            return;
        }
        for t in self
            .tests
            .iter_mut()
            .filter(|t| t.name.as_deref() == Some(test))
        {
            t.resolved = None;
        }
        self.diagnostics.extend(errors);
        self.diagnostics.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.code).cmp(&(&b.file, b.line, b.column, b.code))
        });
    }
}

pub struct Options<'a> {
    pub layout: &'a Layout,
    /// `None`: no policy, so targets and limits are not checked (`perfsync validate` without config).
    pub policy: Option<&'a Policy>,
}

/// DNS-1123 label of at most 40 characters (room for the suffixes of object names).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else if name.len() > 40 {
        Err(format!(
            "name `{name}` is {} characters long; use at most 40",
            name.len()
        ))
    } else {
        Err(format!(
            "name `{name}` is not a DNS-1123 label; use lowercase letters, digits and `-`, starting and ending with a letter or digit"
        ))
    }
}

pub fn build(tree: &Tree, opts: &Options) -> Catalog {
    Index::build(tree, opts.layout.clone(), opts.policy.cloned()).catalog()
}

type TemplateMap = BTreeMap<String, (String, Option<ResolvedTemplate>)>;

#[derive(Debug, Clone, Default)]
struct Templates {
    by_name: TemplateMap,
    entries: Vec<TemplateEntry>,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Default)]
struct FileTests {
    entries: Vec<TestEntry>,
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Warning>,
}

/// The parsed repository, kept between syncs so that a change re-reads only the tests it
/// touches: its cost follows the size of the change, not of the repository.
#[derive(Debug, Clone)]
pub struct Index {
    layout: Layout,
    policy: Option<Policy>,
    templates: Templates,
    /// Keyed by spec file path.
    tests: BTreeMap<String, FileTests>,
}

struct Ctx<'a> {
    layout: &'a Layout,
    policy: Option<PolicyCheck<'a>>,
}

impl Index {
    pub fn build(tree: &Tree, layout: Layout, policy: Option<Policy>) -> Index {
        let mut index = Index {
            layout,
            policy,
            templates: Templates::default(),
            tests: BTreeMap::new(),
        };
        let allowlist = index.allowlist();
        let ctx = index.ctx(allowlist.as_ref());
        let templates = load_templates(tree, ctx.layout, ctx.policy.as_ref());
        let files: Vec<String> = spec_files(tree, &ctx.layout.tests_dir, &SPEC_FILES)
            .map(str::to_string)
            .collect();
        let tests = resolve_files(tree, files, &ctx, &templates.by_name);
        index.templates = templates;
        index.tests = tests;
        index
    }

    // An invalid allowlist is refused when the config loads; should one get here, it allows nothing.
    fn allowlist(&self) -> Option<super::allowlist::Allowlist> {
        self.policy
            .as_ref()
            .map(|p| p.allowlist().unwrap_or_default())
    }

    fn ctx<'a>(&'a self, allowlist: Option<&'a super::allowlist::Allowlist>) -> Ctx<'a> {
        Ctx {
            layout: &self.layout,
            policy: self
                .policy
                .as_ref()
                .zip(allowlist)
                .map(|(policy, allowlist)| PolicyCheck { policy, allowlist }),
        }
    }

    /// Re-reads what `changed` paths (added, modified or deleted, relative to the root) touch:
    /// every test whose folder holds one of them, and every test of a template that changed.
    pub fn update(&mut self, tree: &Tree, changed: &[String]) {
        let allowlist = self.allowlist();
        let ctx = self.ctx(allowlist.as_ref());
        let mut changed_templates = BTreeSet::new();
        let mut new_templates = None;
        if changed
            .iter()
            .any(|p| is_within(p, &self.layout.templates_dir))
        {
            let fresh = load_templates(tree, ctx.layout, ctx.policy.as_ref());
            let names: BTreeSet<&String> = fresh
                .by_name
                .keys()
                .chain(self.templates.by_name.keys())
                .collect();
            for name in names {
                if fresh.by_name.get(name) != self.templates.by_name.get(name) {
                    changed_templates.insert(name.clone());
                }
            }
            new_templates = Some(fresh);
        }
        let templates = new_templates.as_ref().unwrap_or(&self.templates);
        let mut affected = BTreeSet::new();
        for path in changed
            .iter()
            .filter(|p| is_within(p, &self.layout.tests_dir))
        {
            let mut dir = parent(path);
            loop {
                for name in SPEC_FILES {
                    let f = if dir.is_empty() {
                        name.to_string()
                    } else {
                        format!("{dir}/{name}")
                    };
                    if tree.get(&f).is_some() || self.tests.contains_key(&f) {
                        affected.insert(f);
                    }
                }
                if dir.is_empty() || dir == self.layout.tests_dir {
                    break;
                }
                dir = parent(dir);
            }
        }
        if !changed_templates.is_empty() {
            for (file, ft) in &self.tests {
                if ft.entries.iter().any(|e| {
                    e.template
                        .as_ref()
                        .is_some_and(|t| changed_templates.contains(t))
                }) {
                    affected.insert(file.clone());
                }
            }
        }
        let mut updates = Vec::new();
        for file in affected {
            let fresh = tree
                .get(&file)
                .is_some()
                .then(|| resolve_file(tree, &file, &ctx, &templates.by_name));
            updates.push((file, fresh));
        }
        for (file, fresh) in updates {
            match fresh {
                Some(ft) => self.tests.insert(file, ft),
                None => self.tests.remove(&file),
            };
        }
        if let Some(t) = new_templates {
            self.templates = t;
        }
    }

    /// The tests and templates, with names checked for duplicates across the repository:
    /// the first in path order keeps a name, later ones are invalid.
    pub fn catalog(&self) -> Catalog {
        let mut cat = Catalog {
            tests: Vec::with_capacity(self.tests.len()),
            templates: self.templates.entries.clone(),
            diagnostics: self.templates.diagnostics.clone(),
            warnings: Vec::new(),
        };
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for (file, ft) in &self.tests {
            cat.diagnostics.extend(ft.diagnostics.iter().cloned());
            for original in &ft.entries {
                let mut entry = original.clone();
                if let Some(name) = original.name.as_deref() {
                    match names.get(name) {
                        Some(other) if *other != file.as_str() => {
                            cat.diagnostics.push(Diagnostic::new(
                                file,
                                entry.name_pos,
                                Code::DuplicateName,
                                format!(
                                "test name `{name}` is already used by {other}; rename one of them"
                            ),
                            ));
                            entry.resolved = None;
                        }
                        Some(_) => {}
                        None => {
                            names.insert(name, file);
                        }
                    }
                }
                if entry.resolved.is_some() {
                    let name = entry.name.as_deref();
                    cat.warnings.extend(
                        ft.warnings
                            .iter()
                            .filter(|w| Some(w.test.as_str()) == name)
                            .cloned(),
                    );
                }
                cat.tests.push(entry);
            }
        }
        cat.diagnostics.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.code).cmp(&(&b.file, b.line, b.column, b.code))
        });
        cat.diagnostics.dedup();
        cat
    }
}

/// Every spec file resolved, on as many threads as there are cores (each test is resolved on
/// its own, and scripts are parsed: a first build of a large repository is CPU-bound).
fn resolve_files(
    tree: &Tree,
    files: Vec<String>,
    ctx: &Ctx,
    templates: &TemplateMap,
) -> BTreeMap<String, FileTests> {
    const PER_THREAD_MIN: usize = 256;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len() / PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        return files
            .into_iter()
            .map(|f| {
                let ft = resolve_file(tree, &f, ctx, templates);
                (f, ft)
            })
            .collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| (f.clone(), resolve_file(tree, f, ctx, templates)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        for h in handles {
            match h.join() {
                Ok(resolved) => out.extend(resolved),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

fn spec_files<'a>(
    tree: &'a Tree,
    dir: &'a str,
    names: &'a [&str],
) -> impl Iterator<Item = &'a str> + 'a {
    tree.under(dir)
        .map(|(p, _)| p)
        .filter(move |p| names.contains(&bundle::file_name(p)))
}

/// Reads a spec file and yields each document of the expected kind; the rest is reported.
fn for_each_doc(
    tree: &Tree,
    file: &str,
    kind: &str,
    diags: &mut Vec<Diagnostic>,
    mut each: impl FnMut(Doc, &mut Vec<Diagnostic>),
) {
    let bytes = match bundle::read(tree, file, parent(file)) {
        Ok(b) => b,
        Err(d) => return diags.push(d),
    };
    if bytes.len() > MAX_SPEC_BYTES {
        return diags.push(Diagnostic::new(file, Pos::START, Code::LimitExceeded, format!(
            "the spec file is {} bytes; spec files are limited to {MAX_SPEC_BYTES} bytes, so keep data in the bundle instead", bytes.len()
        )));
    }
    let text = match parse::utf8(file, &bytes) {
        Ok(t) => t,
        Err(d) => return diags.push(d),
    };
    for doc in parse::split_documents(text) {
        let header = match parse::read_kind(file, doc) {
            Ok(h) => h,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let at = |seg: &str| super::locate::locate(doc.text, doc.first_line, &[Seg::Key(seg)]);
        if header.kind.as_deref() != Some(kind) {
            let found = header.kind.as_deref().unwrap_or("nothing");
            let hint = match header.kind.as_deref() {
                Some(KIND_TEMPLATE) => {
                    " (templates belong in the templates folder, in template.yaml)"
                }
                Some(KIND_TEST) => " (tests belong in the tests folder, in perftest.yaml)",
                _ => "",
            };
            diags.push(Diagnostic::new(
                file,
                at("kind"),
                Code::Schema,
                format!("expected `kind: {kind}`, found {found}{hint}"),
            ));
            continue;
        }
        if header.api_version.as_deref() != Some(API_VERSION) {
            diags.push(Diagnostic::new(
                file,
                at("apiVersion"),
                Code::Schema,
                format!(
                    "apiVersion must be `{API_VERSION}`, found {}",
                    header.api_version.as_deref().unwrap_or("nothing")
                ),
            ));
            continue;
        }
        each(doc, diags);
    }
}

fn load_templates(tree: &Tree, layout: &Layout, policy: Option<&PolicyCheck>) -> Templates {
    let mut cat = Templates::default();
    let mut by_name: TemplateMap = BTreeMap::new();
    let files: Vec<&str> = spec_files(tree, &layout.templates_dir, &TEMPLATE_FILES).collect();
    for file in files {
        let dir = parent(file).to_string();
        let mut seen_in_file = false;
        for_each_doc(
            tree,
            file,
            KIND_TEMPLATE,
            &mut cat.diagnostics,
            |doc, diags| {
                let src = SpecSource { file, doc };
                let tpl: PerfTemplate = match parse::typed(file, doc) {
                    Ok(t) => t,
                    Err(d) => {
                        diags.push(d);
                        cat.entries.push(TemplateEntry {
                            name: None,
                            file: file.to_string(),
                            resolved: None,
                        });
                        return;
                    }
                };
                let name = tpl.metadata.name.clone();
                let mut errs = Vec::new();
                if seen_in_file {
                    errs.push(src.diag(
                        &[Seg::Key("metadata"), Seg::Key("name")],
                        Code::Schema,
                        format!(
                            "a folder holds one PerfTemplate; move `{name}` to a folder of its own"
                        ),
                    ));
                }
                seen_in_file = true;
                if let Err(e) = check_name(&name) {
                    errs.push(src.diag(&[Seg::Key("metadata"), Seg::Key("name")], Code::Schema, e));
                }
                if let Some((other, _)) = by_name.get(&name) {
                    errs.push(src.diag(
                        &[Seg::Key("metadata"), Seg::Key("name")],
                        Code::DuplicateName,
                        format!(
                            "template name `{name}` is already used by {other}; rename one of them"
                        ),
                    ));
                }
                let resolved = resolve_template(tree, &src, tpl, &dir, policy, &mut errs);
                let valid = errs.is_empty();
                diags.extend(errs);
                let resolved = resolved.filter(|_| valid);
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| (file.to_string(), resolved.clone()));
                cat.entries.push(TemplateEntry {
                    name: Some(name),
                    file: file.to_string(),
                    resolved,
                });
            },
        );
    }
    cat.by_name = by_name;
    cat
}

fn resolve_template(
    tree: &Tree,
    src: &SpecSource,
    tpl: PerfTemplate,
    dir: &str,
    policy: Option<&PolicyCheck>,
    errs: &mut Vec<Diagnostic>,
) -> Option<ResolvedTemplate> {
    use Seg::Key;
    let mut files = Bundle::default();
    bundle::collect(tree, dir, &[], "", &mut files, errs);
    let script_path = match join(dir, &tpl.spec.script).filter(|p| is_within(p, dir)) {
        Some(p) => p,
        None => {
            errs.push(src.diag(
                &[Key("spec"), Key("script")],
                Code::PathEscape,
                format!(
                    "script `{}` leads outside the template's folder; keep it inside {dir}",
                    tpl.spec.script
                ),
            ));
            return None;
        }
    };
    let key = script_path[dir.len() + 1..].to_string();
    let Some(script) = files.files.get(&key).cloned() else {
        if tree.get(&script_path).is_none() {
            errs.push(src.diag(
                &[Key("spec"), Key("script")],
                Code::ScriptMissing,
                format!(
                    "script `{}` does not exist in {dir}; add it or fix the path",
                    tpl.spec.script
                ),
            ));
        }
        return None;
    };
    files.entry = key;
    let text = String::from_utf8_lossy(&script);
    let mut used = std::collections::BTreeSet::new();
    for r in template::references(&text) {
        let pos = super::diagnostic::pos_of_offset(&text, r.offset);
        if r.unclosed || !r.valid {
            errs.push(Diagnostic::new(&script_path, pos, Code::TemplateParam, format!(
                "`${{{}` is not a template parameter; write `$${{` for a literal `${{` (a JavaScript template literal)", r.name
            )));
        } else if !tpl.spec.params.contains_key(&r.name) {
            errs.push(Diagnostic::new(
                &script_path,
                pos,
                Code::TemplateParam,
                format!(
                    "`${{{}}}` is not declared; add `{}` under spec.params in {}",
                    r.name, r.name, src.file
                ),
            ));
        } else {
            used.insert(r.name);
        }
    }
    if let Some(desc) = &tpl.spec.description {
        used.extend(
            template::references(desc)
                .into_iter()
                .filter(|r| r.valid)
                .map(|r| r.name),
        );
    }
    for name in tpl.spec.params.keys() {
        if !used.contains(name) {
            errs.push(src.diag(&[Key("spec"), Key("params"), Key(name)], Code::TemplateParam, format!(
                "parameter `{name}` is declared but never used in the script or description; use it as `${{{name}}}` or remove it"
            )));
        }
    }
    // The script on its own: defaults filled in, parameters without one as placeholders (so it
    // parses); each test checks it again as rendered with its own values.
    let values: BTreeMap<String, String> = tpl
        .spec
        .params
        .iter()
        .map(|(name, p)| {
            let v = p
                .default
                .clone()
                .unwrap_or_else(|| format!("{PLACEHOLDER}{name}"));
            (name.clone(), v)
        })
        .collect();
    let rendered = template::substitute_mapped(&text, &values);
    let ctx = script_check::Context {
        allow: policy.map(|p| p.allowlist),
        allowed_modules: policy.map_or(&[][..], |p| &p.policy.allowed_modules[..]),
        env: &[],
        entry: Some(RenderedEntry {
            rendered: &rendered,
            template_text: &text,
            template: &tpl.metadata.name,
            for_test: None,
        }),
        limits: None,
    };
    script_check::check_bundle(&files, &ctx, errs, &mut Vec::new());
    Some(ResolvedTemplate {
        template: tpl,
        dir: dir.to_string(),
        files,
    })
}

/// Every PerfTest of one spec file, resolved; duplicate names are checked later, across files.
fn resolve_file(tree: &Tree, file: &str, ctx: &Ctx, templates: &TemplateMap) -> FileTests {
    let mut out = FileTests::default();
    let dir = parent(file);
    // Folders below this one that hold their own test are not part of this bundle.
    let nested: Vec<&str> = tree
        .under(dir)
        .filter(|(p, _)| SPEC_FILES.contains(&bundle::file_name(p)) && parent(p) != dir)
        .map(|(p, _)| parent(p))
        .collect();
    let mut seen_in_file = false;
    let policy = ctx.policy.as_ref();
    for_each_doc(tree, file, KIND_TEST, &mut out.diagnostics, |doc, diags| {
        let src = SpecSource { file, doc };
        let test: PerfTest = match parse::typed(file, doc) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                out.entries.push(TestEntry {
                    name: None,
                    file: file.to_string(),
                    name_pos: Pos::START,
                    template: None,
                    resolved: None,
                });
                return;
            }
        };
        let name = test.metadata.name.clone();
        let name_pos = src.at(&[Seg::Key("metadata"), Seg::Key("name")]);
        let template = test.spec.template.as_ref().map(|t| t.name.clone());
        let mut errs = Vec::new();
        if seen_in_file {
            errs.push(Diagnostic::new(
                file,
                name_pos,
                Code::Schema,
                format!("a folder holds one PerfTest; move `{name}` to a folder of its own"),
            ));
        }
        seen_in_file = true;
        if let Err(e) = check_name(&name) {
            errs.push(Diagnostic::new(file, name_pos, Code::Schema, e));
        }
        let mut warnings = Vec::new();
        let resolved = resolve_test(
            tree,
            &src,
            test,
            dir,
            &nested,
            policy,
            templates,
            &mut errs,
            &mut warnings,
        );
        let valid = errs.is_empty();
        diags.extend(errs);
        if valid {
            out.warnings
                .extend(warnings.into_iter().map(|diagnostic| Warning {
                    test: name.clone(),
                    diagnostic,
                }));
        }
        out.entries.push(TestEntry {
            name: Some(name),
            file: file.to_string(),
            name_pos,
            template,
            resolved: resolved.filter(|_| valid).map(Arc::new),
        });
    });
    // A file that yielded no test at all (bad YAML, wrong kind) still stands for one, so that
    // the test it held is reported invalid rather than taken for deleted.
    if out.entries.is_empty() && !out.diagnostics.is_empty() {
        out.entries.push(TestEntry {
            name: None,
            file: file.to_string(),
            name_pos: Pos::START,
            template: None,
            resolved: None,
        });
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn resolve_test(
    tree: &Tree,
    src: &SpecSource,
    mut test: PerfTest,
    dir: &str,
    nested: &[&str],
    policy: Option<&PolicyCheck>,
    templates: &TemplateMap,
    errs: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<ResolvedTest> {
    use Seg::Key;
    let mut bundle = Bundle::default();
    bundle::collect(tree, dir, nested, "", &mut bundle, errs);
    let mut template_name = None;
    let mut template_revision = None;
    // The template's script as rendered for this test, to check and to point findings back at.
    let mut rendered: Option<(template::Rendered, String, String)> = None;
    match (&test.spec.script, &test.spec.template) {
        (Some(_), Some(_)) | (None, None) => {
            errs.push(src.diag(
                &[Key("spec")],
                Code::Schema,
                "set exactly one of spec.script and spec.template",
            ));
        }
        (Some(script), None) => match join(dir, script)
            .filter(|p| is_within(p, dir) && !nested.iter().any(|n| is_within(p, n)))
        {
            None => errs.push(src.diag(
                &[Key("spec"), Key("script")],
                Code::PathEscape,
                format!(
                "script `{script}` leads outside the test's folder {dir}; keep the script inside it"
            ),
            )),
            Some(path) => {
                let key = path[dir.len() + 1..].to_string();
                if bundle.files.contains_key(&key) {
                    bundle.entry = key;
                } else if tree.get(&path).is_none() {
                    errs.push(src.diag(
                        &[Key("spec"), Key("script")],
                        Code::ScriptMissing,
                        format!(
                            "script `{script}` does not exist in {dir}; add it or fix the path"
                        ),
                    ));
                }
            }
        },
        (None, Some(tref)) => {
            let name = tref.name.clone();
            let at = [Key("spec"), Key("template"), Key("name")];
            match templates.get(&name) {
                None => {
                    let hint = templates
                        .keys()
                        .map(|k| (strsim::jaro_winkler(&name, k), k))
                        .filter(|(s, _)| *s > 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map_or(String::new(), |(_, k)| format!(" did you mean `{k}`?"));
                    errs.push(src.diag(
                        &at,
                        Code::TemplateUnknown,
                        format!("template `{name}` does not exist.{hint}"),
                    ));
                }
                Some((file, None)) => errs.push(src.diag(
                    &at,
                    Code::TemplateUnknown,
                    format!("template `{name}` in {file} is invalid; fix its errors first"),
                )),
                Some((_, Some(tpl))) => {
                    let values = template_values(src, tref, tpl, policy, errs);
                    let prefix = format!("_template/{name}/");
                    for (key, bytes) in &tpl.files.files {
                        let content: std::sync::Arc<[u8]> = if *key == tpl.files.entry {
                            let source = String::from_utf8_lossy(bytes).into_owned();
                            let r = template::substitute_mapped(&source, &values);
                            let content = r.text.clone().into_bytes().into();
                            rendered = Some((r, source, name.clone()));
                            content
                        } else {
                            bytes.clone()
                        };
                        bundle.files.insert(format!("{prefix}{key}"), content);
                        bundle
                            .origin
                            .insert(format!("{prefix}{key}"), format!("{}/{key}", tpl.dir));
                    }
                    bundle.entry = format!("{prefix}{}", tpl.files.entry);
                    if let Some(t) = test.spec.template.as_mut() {
                        t.params = values.into();
                    }
                    template_name = Some(name);
                    template_revision = Some(super::revision::template_revision(
                        &tpl.template,
                        &tpl.files,
                    ));
                }
            }
        }
    }
    check_spec(src, &test, policy, errs);
    let env: Vec<(String, String)> = test
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ctx = script_check::Context {
        allow: policy.map(|p| p.allowlist),
        allowed_modules: policy.map_or(&[][..], |p| &p.policy.allowed_modules[..]),
        env: &env,
        entry: rendered
            .as_ref()
            .map(|(r, source, template)| RenderedEntry {
                rendered: r,
                template_text: source,
                template,
                for_test: Some(src.file),
            }),
        limits: policy.map(|p| Limits {
            policy: p.policy,
            load: test.spec.load.as_ref(),
        }),
    };
    script_check::check_bundle(&bundle, &ctx, errs, warnings);
    if let Some(p) = policy {
        let size = bundle.total_bytes();
        if size > p.policy.max_bundle_bytes {
            errs.push(src.diag(&[Key("metadata"), Key("name")], Code::LimitExceeded, format!(
                "the bundle holds {size} bytes, over the policy's maxBundleBytes of {}; move large data out of the test's folder", p.policy.max_bundle_bytes
            )));
        }
    }
    if !bundle.entry.is_empty() {
        // Whatever the policy says, the apiserver refuses a bigger ConfigMap (422), so the
        // run would end at its start.
        let size = super::render::configmap_bytes(&bundle, &test.spec.thresholds);
        if size > MAX_CONFIGMAP_BYTES {
            errs.push(src.diag(&[Key("metadata"), Key("name")], Code::LimitExceeded, format!(
                "the test's ConfigMap would hold {size} bytes ({} in the bundle's files, the rest in keys and the generated entry script), over the {MAX_CONFIGMAP_BYTES} bytes Kubernetes allows in one ConfigMap; move large data out of the test's folder",
                bundle.total_bytes()
            )));
        }
    }
    if !errs.is_empty() || bundle.entry.is_empty() {
        return None;
    }
    let revision = revision(&test, &bundle);
    // Where bundle files came from matters only to the findings above; the index keeps every
    // valid test, so it does not keep this.
    bundle.origin = BTreeMap::new();
    Some(ResolvedTest {
        test,
        dir: dir.to_string(),
        bundle,
        revision,
        template: template_name,
        template_revision,
    })
}

/// The template's parameters for one test: defaults overlaid with the test's values.
fn template_values(
    src: &SpecSource,
    tref: &super::model::TemplateRef,
    tpl: &ResolvedTemplate,
    policy: Option<&PolicyCheck>,
    errs: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
    use Seg::Key;
    let declared = &tpl.template.spec.params;
    let mut values = BTreeMap::new();
    for (name, spec) in declared {
        match (tref.params.get(name), &spec.default) {
            (Some(v), _) => {
                values.insert(name.clone(), v.clone());
            }
            (None, Some(d)) => {
                values.insert(name.clone(), d.clone());
            }
            (None, None) if spec.required => errs.push(src.diag(
                &[Key("spec"), Key("template")],
                Code::TemplateParam,
                format!(
                    "template `{}` requires parameter `{name}`; add it under spec.template.params",
                    tref.name
                ),
            )),
            (None, None) => {
                values.insert(name.clone(), String::new());
            }
        }
    }
    for (name, value) in &tref.params {
        let at = [Key("spec"), Key("template"), Key("params"), Key(name)];
        if !declared.contains_key(name) {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            errs.push(src.diag(
                &at,
                Code::TemplateParam,
                format!(
                    "template `{}` has no parameter `{name}`; its parameters are: {}",
                    tref.name,
                    known.join(", ")
                ),
            ));
        }
        if let Some(p) = policy {
            for url in super::script_scan::urls(&format!("\"{value}\""))
                .into_iter()
                .filter(|u| !u.dynamic_host)
            {
                if let Some(why) = super::checks::target_refusal(&url.url, p.allowlist) {
                    errs.push(src.diag(
                        &at,
                        Code::TargetNotAllowed,
                        format!("parameter `{name}`: {why}"),
                    ));
                }
            }
        }
    }
    values
}
