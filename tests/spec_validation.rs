//! Every validation code, asserted with its file and line, on plain in-memory trees.

use perfsync::config::{Config, Layout, Policy};
use perfsync::source::{Entry, Tree};
use perfsync::spec::{build, Catalog, Code, Diagnostic, Options};

const SCRIPT: &str = "import http from 'k6/http';\nexport default function () {\n  http.get('https://api.staging.example.com/items');\n}\n";

fn spec(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets:\n    - https://api.staging.example.com\n{extra}"
    )
}

fn policy() -> Policy {
    let text = "policy:\n  allowedTargets: ['https://*.staging.example.com', 'http://10.20.0.0/16']\n  maxVUs: 100\n  maxDuration: 10m\n  maxParallelism: 4\n  maxBundleBytes: 2000\n  maxTimeout: 1h\n";
    Config::parse("perfsync.yaml", text).unwrap().policy
}

fn tree(files: &[(&str, &str)]) -> Tree {
    let mut t = Tree::new();
    for (p, c) in files {
        t.insert_file(*p, c.as_bytes().to_vec());
    }
    t
}

fn check(t: &Tree, with_policy: bool) -> Catalog {
    let layout = Layout {
        tests_dir: "tests".into(),
        templates_dir: "templates".into(),
        results_dir: "results".into(),
    };
    let p = policy();
    build(
        t,
        &Options {
            layout: &layout,
            policy: with_policy.then_some(&p),
        },
    )
}

fn only(cat: &Catalog, code: Code) -> &Diagnostic {
    let found: Vec<&Diagnostic> = cat.diagnostics.iter().filter(|d| d.code == code).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {code}, got {:#?}",
        cat.diagnostics
    );
    found[0]
}

fn assert_at(d: &Diagnostic, file: &str, line: usize) {
    assert_eq!((d.file.as_str(), d.line), (file, line), "{d}");
}

#[test]
fn a_valid_test_has_a_revision_and_no_errors() {
    let t = tree(&[
        ("tests/a/perftest.yaml", &spec("a", "")),
        ("tests/a/script.js", SCRIPT),
    ]);
    let cat = check(&t, true);
    assert!(cat.diagnostics.is_empty(), "{:#?}", cat.diagnostics);
    let rev = &cat.tests[0].resolved.as_ref().unwrap().revision;
    assert_eq!(rev.len(), 64);
}

#[test]
fn empty_repository_is_valid_and_empty() {
    let cat = check(&Tree::new(), true);
    assert!(cat.tests.is_empty() && cat.templates.is_empty() && cat.diagnostics.is_empty());
}

#[test]
fn yaml_syntax_error_names_its_line() {
    let bad = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: a\n spec: [\n";
    let cat = check(&tree(&[("tests/a/perftest.yaml", bad)]), false);
    let d = only(&cat, Code::YamlSyntax);
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("tests/a/perftest.yaml", 5, 2),
        "{d}"
    );
}

#[test]
fn unknown_field_suggests_the_right_one() {
    let text = spec("a", "  thresholdz:\n    http_reqs: ['count>1']\n");
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    let d = only(&cat, Code::Schema);
    assert_at(d, "tests/a/perftest.yaml", 9);
    assert!(d.message.contains("did you mean `thresholds`"), "{d}");
}

#[test]
fn wrong_type_and_missing_field_are_schema_errors() {
    let text = spec("a", "  parallelism: many\n");
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    assert_at(only(&cat, Code::Schema), "tests/a/perftest.yaml", 9);
    let missing = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: a\nspec:\n  script: script.js\n";
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", missing),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    assert!(only(&cat, Code::Schema)
        .message
        .contains("missing field `targets`"));
}

#[test]
fn a_spec_that_is_a_list_is_refused() {
    let cat = check(&tree(&[("tests/a/perftest.yaml", "- a\n- b\n")]), false);
    let d = only(&cat, Code::Schema);
    assert_at(d, "tests/a/perftest.yaml", 1);
    assert!(d.message.contains("mapping"), "{d}");
}

#[test]
fn names_must_be_short_dns_labels() {
    for (name, why) in [
        ("Checkout_Peak", "DNS-1123"),
        (&"a".repeat(41)[..], "41 characters"),
        ("-a", "DNS-1123"),
    ] {
        let cat = check(
            &tree(&[
                ("tests/a/perftest.yaml", &spec(name, "")),
                ("tests/a/script.js", SCRIPT),
            ]),
            false,
        );
        let d = only(&cat, Code::Schema);
        assert_at(d, "tests/a/perftest.yaml", 4);
        assert!(d.message.contains(why), "{d}");
    }
    let forty = "a".repeat(40);
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &spec(&forty, "")),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    assert!(cat.diagnostics.is_empty());
}

#[test]
fn duplicate_names_flag_the_later_test_only() {
    let t = tree(&[
        ("tests/a/perftest.yaml", &spec("same", "")),
        ("tests/a/script.js", SCRIPT),
        ("tests/b/perftest.yaml", &spec("same", "")),
        ("tests/b/script.js", SCRIPT),
    ]);
    let cat = check(&t, false);
    let d = only(&cat, Code::DuplicateName);
    assert_at(d, "tests/b/perftest.yaml", 4);
    assert!(d.message.contains("tests/a/perftest.yaml"));
    assert!(cat.tests[0].resolved.is_some() && cat.tests[1].resolved.is_none());
}

#[test]
fn two_tests_in_one_folder_are_refused() {
    let text = format!("{}---\n{}", spec("one", ""), spec("two", ""));
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    let d = only(&cat, Code::Schema);
    assert_at(d, "tests/a/perftest.yaml", 13);
    assert!(d.message.contains("one PerfTest"), "{d}");
    assert!(cat.test("one").unwrap().resolved.is_some());
}

#[test]
fn missing_script_is_reported_on_the_script_line() {
    let cat = check(&tree(&[("tests/a/perftest.yaml", &spec("a", ""))]), false);
    assert_at(only(&cat, Code::ScriptMissing), "tests/a/perftest.yaml", 6);
}

#[test]
fn script_paths_and_imports_may_not_leave_the_bundle() {
    let text = spec("a", "").replace("script: script.js", "script: ../b/script.js");
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/b/script.js", SCRIPT),
        ]),
        false,
    );
    assert_at(only(&cat, Code::PathEscape), "tests/a/perftest.yaml", 6);

    let script = "import x from '../../secrets.js';\nconst d = open('/etc/passwd');\nexport default function () {}\n";
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &spec("a", "")),
            ("tests/a/script.js", script),
        ]),
        false,
    );
    let escapes: Vec<(usize, usize)> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::PathEscape)
        .map(|d| (d.line, d.column))
        .collect();
    assert_eq!(escapes, vec![(1, 16), (2, 17)], "{:#?}", cat.diagnostics);
}

#[test]
fn symlinks_out_of_the_bundle_are_refused_and_never_read() {
    let mut t = tree(&[("tests/a/perftest.yaml", &spec("a", ""))]);
    t.insert("tests/a/script.js", Entry::Symlink("/etc/passwd".into()));
    t.insert(
        "tests/a/data.json",
        Entry::Symlink("../../../outside.json".into()),
    );
    let cat = check(&t, false);
    let files: Vec<&str> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::PathEscape)
        .map(|d| d.file.as_str())
        .collect();
    assert_eq!(
        files,
        vec!["tests/a/data.json", "tests/a/script.js"],
        "{:#?}",
        cat.diagnostics
    );
    assert!(!cat
        .diagnostics
        .iter()
        .any(|d| d.code == Code::ScriptMissing));
}

#[test]
fn symlinks_inside_the_bundle_are_followed() {
    let mut t = tree(&[
        ("tests/a/perftest.yaml", &spec("a", "")),
        ("tests/a/real.js", SCRIPT),
    ]);
    t.insert("tests/a/script.js", Entry::Symlink("./real.js".into()));
    let cat = check(&t, false);
    assert!(cat.diagnostics.is_empty(), "{:#?}", cat.diagnostics);
    let rt = cat.tests[0].resolved.as_ref().unwrap();
    assert_eq!(
        &**rt.bundle.files.get("script.js").unwrap(),
        SCRIPT.as_bytes()
    );
}

#[test]
fn targets_outside_the_allowlist_are_refused_after_normalisation() {
    let text = spec("a", "").replace(
        "    - https://api.staging.example.com\n",
        "    - https://api.staging.example.com\n    - https://api.staging.example.com.evil.io/\n    - https://api.staging.example.com@evil.io/\n",
    );
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        true,
    );
    let lines: Vec<usize> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::TargetNotAllowed)
        .map(|d| d.line)
        .collect();
    assert_eq!(lines, vec![9, 10], "{:#?}", cat.diagnostics);
    // Without a policy, targets are not checked.
    assert!(check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT)
        ]),
        false
    )
    .diagnostics
    .is_empty());
}

#[test]
fn urls_written_in_scripts_and_env_are_checked() {
    let script = "import http from 'k6/http';\n// docs: https://grafana.com/docs/k6\nexport default function () {\n  http.get('https://api.staging.example.com/ok');\n  http.get(\"https://api.staging.example.com.evil.io/\");\n}\n";
    let text = spec(
        "a",
        "  env:\n    BASE: http://10.99.0.1:8080\n    OK: http://10.20.1.2\n",
    );
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", script),
        ]),
        true,
    );
    let found: Vec<(&str, usize)> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::TargetNotAllowed)
        .map(|d| (d.file.as_str(), d.line))
        .collect();
    assert_eq!(
        found,
        vec![("tests/a/perftest.yaml", 10), ("tests/a/script.js", 5)],
        "{:#?}",
        cat.diagnostics
    );
}

#[test]
fn limits_come_from_the_policy() {
    let text = spec("a", "  load:\n    stages:\n      - {duration: 5m, target: 50}\n      - {duration: 6m, target: 500}\n  parallelism: 8\n  timeout: 2h\n");
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        true,
    );
    let lines: Vec<usize> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::LimitExceeded)
        .map(|d| d.line)
        .collect();
    // VUs on the 500 stage, the 11m duration on `load`, parallelism, timeout.
    assert_eq!(lines, vec![9, 12, 13, 14], "{:#?}", cat.diagnostics);
}

#[test]
fn bundle_size_is_limited() {
    let big = format!("{SCRIPT}// {}\n", "x".repeat(3000));
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &spec("a", "")),
            ("tests/a/script.js", &big),
        ]),
        true,
    );
    assert_at(only(&cat, Code::LimitExceeded), "tests/a/perftest.yaml", 4);
}

#[test]
fn oversized_files_are_refused_without_being_read() {
    let mut t = tree(&[("tests/a/script.js", SCRIPT)]);
    t.insert("tests/a/perftest.yaml", Entry::Oversized(50 * 1024 * 1024));
    let cat = check(&t, false);
    assert_at(only(&cat, Code::LimitExceeded), "tests/a/perftest.yaml", 1);
}

#[test]
fn inline_secrets_are_refused() {
    let text = spec(
        "a",
        "  env:\n    ENVIRONMENT: staging\n    API_TOKEN: abc123\n",
    );
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    let d = only(&cat, Code::InlineSecret);
    assert_at(d, "tests/a/perftest.yaml", 11);
    assert!(
        !d.message.contains("abc123"),
        "the secret itself must not be echoed: {d}"
    );
}

#[test]
fn bad_schedules_and_thresholds_have_their_own_codes() {
    let text = spec("a", "  thresholds:\n    http_req_duration: ['p(95)<500', 'p95 < 500']\n  trigger:\n    schedule: '61 * * * *'\n");
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", &text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    assert_at(
        only(&cat, Code::ThresholdInvalid),
        "tests/a/perftest.yaml",
        10,
    );
    assert_at(
        only(&cat, Code::ScheduleInvalid),
        "tests/a/perftest.yaml",
        12,
    );
}

const TEMPLATE: &str = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTemplate\nmetadata:\n  name: api-load\nspec:\n  category: api\n  script: script.js\n  params:\n    TARGET_URL: {required: true}\n    VUS: {default: \"10\"}\n";
const TEMPLATE_SCRIPT: &str = "import http from 'k6/http';\nexport const options = { vus: ${VUS} };\nexport default function () {\n  http.get('${TARGET_URL}/x', { tags: { t: `$${__VU}` } });\n}\n";

fn templated(params: &str) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: t\nspec:\n  template:\n    name: api-load\n    params:\n{params}  targets:\n    - https://api.staging.example.com\n")
}

#[test]
fn templates_render_with_defaults_and_escapes() {
    let t = tree(&[
        ("templates/api-load/template.yaml", TEMPLATE),
        ("templates/api-load/script.js", TEMPLATE_SCRIPT),
        (
            "tests/t/perftest.yaml",
            &templated("      TARGET_URL: https://api.staging.example.com\n"),
        ),
    ]);
    let cat = check(&t, true);
    assert!(cat.diagnostics.is_empty(), "{:#?}", cat.diagnostics);
    let rt = cat.tests[0].resolved.as_ref().unwrap();
    let script =
        String::from_utf8(rt.bundle.files.get(&rt.bundle.entry).unwrap().to_vec()).unwrap();
    assert!(script.contains("vus: 10"));
    assert!(script.contains("'https://api.staging.example.com/x'"));
    assert!(script.contains("`${__VU}`"));
}

#[test]
fn template_parameters_are_checked_both_ways() {
    let t = tree(&[
        ("templates/api-load/template.yaml", TEMPLATE),
        ("templates/api-load/script.js", TEMPLATE_SCRIPT),
        (
            "tests/t/perftest.yaml",
            &templated("      VUS: \"3\"\n      TARGET: x\n"),
        ),
    ]);
    let cat = check(&t, false);
    let lines: Vec<usize> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::TemplateParam)
        .map(|d| d.line)
        .collect();
    assert_eq!(
        lines,
        vec![6, 10],
        "missing required on `template:`, undeclared on its line: {:#?}",
        cat.diagnostics
    );
}

#[test]
fn a_template_using_an_undeclared_variable_is_invalid() {
    let script = format!("{TEMPLATE_SCRIPT}// ${{UNDECLARED}}\n");
    let t = tree(&[
        ("templates/api-load/template.yaml", TEMPLATE),
        ("templates/api-load/script.js", &script),
    ]);
    let cat = check(&t, false);
    let d = only(&cat, Code::TemplateParam);
    assert_at(d, "templates/api-load/script.js", 6);
    assert!(d.message.contains("UNDECLARED"));
    let unused = TEMPLATE.replace(
        "    VUS: {default: \"10\"}\n",
        "    VUS: {default: \"10\"}\n    EXTRA: {default: x}\n",
    );
    let cat = check(
        &tree(&[
            ("templates/api-load/template.yaml", &unused),
            ("templates/api-load/script.js", TEMPLATE_SCRIPT),
        ]),
        false,
    );
    assert_at(
        only(&cat, Code::TemplateParam),
        "templates/api-load/template.yaml",
        11,
    );
}

#[test]
fn unknown_templates_suggest_a_name() {
    let text = templated("      TARGET_URL: x\n").replace("name: api-load", "name: api-lod");
    let t = tree(&[
        ("templates/api-load/template.yaml", TEMPLATE),
        ("templates/api-load/script.js", TEMPLATE_SCRIPT),
        ("tests/t/perftest.yaml", &text),
    ]);
    let d = only(&check(&t, false), Code::TemplateUnknown).clone();
    assert_at(&d, "tests/t/perftest.yaml", 7);
    assert!(d.message.contains("did you mean `api-load`"), "{d}");
}

#[test]
fn one_bad_test_does_not_hide_the_others() {
    let t = tree(&[
        ("tests/a/perftest.yaml", "::: not yaml"),
        ("tests/b/perftest.yaml", &spec("b", "  timeout: forever\n")),
        ("tests/b/script.js", SCRIPT),
        ("tests/c/perftest.yaml", &spec("c", "")),
        ("tests/c/script.js", SCRIPT),
    ]);
    let cat = check(&t, false);
    let files: Vec<&str> = cat.diagnostics.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(
        files,
        vec!["tests/a/perftest.yaml", "tests/b/perftest.yaml"]
    );
    assert!(cat.test("c").unwrap().resolved.is_some());
}

#[test]
fn nested_tests_have_their_own_bundles() {
    let t = tree(&[
        ("tests/a/perftest.yaml", &spec("a", "")),
        ("tests/a/script.js", SCRIPT),
        ("tests/a/inner/perftest.yaml", &spec("inner", "")),
        ("tests/a/inner/script.js", SCRIPT),
        ("tests/a/inner/data.json", "{}"),
    ]);
    let cat = check(&t, false);
    let a = cat.test("a").unwrap().resolved.as_ref().unwrap();
    assert_eq!(a.bundle.files.keys().collect::<Vec<_>>(), vec!["script.js"]);
    let inner = cat.test("inner").unwrap().resolved.as_ref().unwrap();
    assert_eq!(inner.bundle.files.len(), 2);
}

#[test]
fn revision_depends_on_content_only() {
    let base = [
        ("tests/a/perftest.yaml", spec("a", "")),
        ("tests/a/script.js", SCRIPT.to_string()),
        ("tests/a/lib/x.js", "export const x = 1;\n".into()),
    ];
    let rev = |files: &[(&str, String)]| {
        let mut t = Tree::new();
        for (p, c) in files {
            t.insert_file(*p, c.as_bytes().to_vec());
        }
        check(&t, false).tests[0]
            .resolved
            .as_ref()
            .unwrap()
            .revision
            .clone()
    };
    let r1 = rev(&base);
    let mut reordered = base.clone();
    reordered.reverse();
    assert_eq!(r1, rev(&reordered));
    let mut comment_in_yaml = base.clone();
    comment_in_yaml[0].1 = format!("# a comment\n{}", base[0].1);
    assert_eq!(
        r1,
        rev(&comment_in_yaml),
        "formatting of the spec is not content"
    );
    let mut changed = base.clone();
    changed[2].1 = "export const x = 2;\n".into();
    assert_ne!(r1, rev(&changed));
    let mut threshold = base.clone();
    threshold[0].1 = spec("a", "  thresholds:\n    http_reqs: ['count>1']\n");
    assert_ne!(r1, rev(&threshold));
}

#[test]
fn hostile_yaml_fails_fast_with_a_clear_error() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut t = tree(&[
        ("tests/bomb/perftest.yaml", bomb),
        ("tests/deep/perftest.yaml", &deep),
    ]);
    t.insert(
        "tests/bad/perftest.yaml",
        Entry::File(std::sync::Arc::from(&b"kind: \xff\xfe\n"[..])),
    );
    let cat = check(&t, false);
    let codes: Vec<(&str, Code)> = cat
        .diagnostics
        .iter()
        .map(|d| (d.file.as_str(), d.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("tests/bad/perftest.yaml", Code::YamlSyntax),
            ("tests/bomb/perftest.yaml", Code::YamlSyntax),
            ("tests/deep/perftest.yaml", Code::YamlSyntax)
        ],
        "{:#?}",
        cat.diagnostics
    );
}

#[test]
fn a_tag_that_would_split_the_testrun_arguments_is_refused_at_its_line() {
    let t = tree(&[
        (
            "tests/a/perftest.yaml",
            &spec("a", "  tags:\n    team: qa\n    service: orders api\n"),
        ),
        ("tests/a/script.js", SCRIPT),
    ]);
    let cat = check(&t, false);
    let d = only(&cat, Code::Schema);
    assert_at(d, "tests/a/perftest.yaml", 11);
    assert!(
        d.message.contains("tag `service`") && d.message.contains("`_.:/@+=,-`"),
        "{d}"
    );
}

fn one_test(extra: &str) -> Catalog {
    check(
        &tree(&[
            ("tests/a/perftest.yaml", &spec("a", extra)),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    )
}

/// Findings of `code` as (line, message), in line order.
fn findings(cat: &Catalog, code: Code) -> Vec<(usize, String)> {
    let mut f: Vec<(usize, String)> = cat
        .diagnostics
        .iter()
        .filter(|d| d.code == code)
        .map(|d| (d.line, d.message.clone()))
        .collect();
    f.sort();
    f
}

#[test]
fn tags_reach_a_shell_so_only_inert_characters_pass() {
    // Line 9 is `tags:`, each tag on its own line from 10.
    let cat = one_test(concat!(
        "  tags:\n",
        "    ok: 'https://api.example.com:8443/p@a+b=c,d_e.f'\n",
        "    percentile: 'p(95)'\n",
        "    'a;b': x\n",
        "    cmd: '$(id)'\n",
        "    empty: ''\n",
        "    testid: mine\n",
        "    quote: \"it's\"\n",
        "    glob: '*'\n",
    ));
    let f = findings(&cat, Code::Schema);
    let lines: Vec<usize> = f.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![11, 12, 13, 14, 15, 16, 17], "{f:#?}");
    assert!(
        f[0].1.contains("tag `percentile`: value `p(95)`"),
        "{}",
        f[0].1
    );
    assert!(f[0].1.contains("`_.:/@+=,-`"), "{}", f[0].1);
    assert!(
        f[1].1.contains("tag key `a;b`") && f[1].1.contains("`_.-`"),
        "{}",
        f[1].1
    );
    assert!(
        f[4].1.contains("tag `testid` is set on every metric"),
        "{}",
        f[4].1
    );
    let long = one_test(&format!("  tags:\n    long: {}\n", "x".repeat(257)));
    assert!(findings(&long, Code::Schema)[0].1.contains("256"));
    let long_key = one_test(&format!("  tags:\n    {}: x\n", "k".repeat(65)));
    assert!(findings(&long_key, Code::Schema)[0].1.contains("64"));
}

#[test]
fn env_names_are_shell_identifiers_and_secret_refs_are_kubernetes_names() {
    let cat = one_test(concat!(
        "  env:\n",
        "    GOOD_1: x\n",
        "    A-B: x\n",
        "    'A;B': x\n",
        "    1X: x\n",
        "    K6_SUMMARY_TREND_STATS: 'avg'\n",
        "  secretEnv:\n",
        "    - name: 'A B'\n",
        "      secret: Creds_1\n",
        "      key: 'to ken'\n",
        "    - {name: _OK, secret: creds.v1, key: .token-1_x}\n",
    ));
    let f = findings(&cat, Code::Schema);
    let lines: Vec<usize> = f.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![11, 12, 13, 14, 16, 17, 18], "{f:#?}");
    assert!(
        f[0].1
            .starts_with("env name `A-B` is not a shell identifier"),
        "{}",
        f[0].1
    );
    assert!(
        f[3].1
            .contains("`K6_SUMMARY_TREND_STATS` would replace the trend statistics"),
        "{}",
        f[3].1
    );
    assert!(
        f[4].1
            .starts_with("secretEnv name `A B` is not a shell identifier"),
        "{}",
        f[4].1
    );
    assert!(
        f[5].1.contains("`Creds_1` is not a Secret name"),
        "{}",
        f[5].1
    );
    assert!(
        f[6].1.contains("`to ken` is not a Secret key"),
        "{}",
        f[6].1
    );
}

#[test]
fn labels_are_kubernetes_labels_and_not_perfsyncs_or_the_operators() {
    let text = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: a\n  labels:\n    team: QA Team\n    example.com/owner: qa_team.1\n    empty: ''\n    perfsync.dev/run: x\n    app.kubernetes.io/managed-by: me\n    app: k6\n    k6_cr: x\n    runner: 'true'\n    job-name: x\n    'bad key': x\n    Example.com/x: y\n    app.kubernetes.io/part-of: shop\nspec:\n  script: script.js\n  targets: [https://api.staging.example.com]\n";
    let cat = check(
        &tree(&[
            ("tests/a/perftest.yaml", text),
            ("tests/a/script.js", SCRIPT),
        ]),
        false,
    );
    let f = findings(&cat, Code::Schema);
    let lines: Vec<usize> = f.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![6, 9, 10, 11, 12, 13, 14, 15, 16], "{f:#?}");
    assert!(
        f[0].1
            .contains("label `team`: `QA Team` is not a Kubernetes label value"),
        "{}",
        f[0].1
    );
    assert!(
        f[1].1.contains("`perfsync.dev/run` is perfsync's own"),
        "{}",
        f[1].1
    );
    assert!(
        f[2].1
            .contains("`app.kubernetes.io/managed-by` is perfsync's own"),
        "{}",
        f[2].1
    );
    assert!(
        f[3].1.contains("`app` is set by the k6-operator"),
        "{}",
        f[3].1
    );
    assert!(
        f[7].1.contains("`bad key` is not a Kubernetes label key"),
        "{}",
        f[7].1
    );
    assert!(f[8].1.contains("prefix `Example.com`"), "{}", f[8].1);
}

#[test]
fn runner_resources_are_kubernetes_quantities() {
    let cat = one_test(concat!(
        "  runner:\n",
        "    resources:\n",
        "      requests:\n",
        "        cpu: 2 cores\n",
        "        memory: 512Mi\n",
        "      limits:\n",
        "        cpu: lots\n",
        "        memory: 1.5.0\n",
        "        ephemeral-storage: 1e3\n",
        "    nodeSelector: {pool: load}\n",
    ));
    let f = findings(&cat, Code::Schema);
    let lines: Vec<usize> = f.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![12, 15, 16], "{f:#?}");
    assert!(
        f[0].1.starts_with(
            "spec.runner.resources.requests.cpu: `2 cores` is not a Kubernetes quantity"
        ),
        "{}",
        f[0].1
    );
    assert!(
        f[1].1
            .starts_with("spec.runner.resources.limits.cpu: `lots`"),
        "{}",
        f[1].1
    );
    assert!(
        f[2].1
            .starts_with("spec.runner.resources.limits.memory: `1.5.0`"),
        "{}",
        f[2].1
    );
    assert!(f[0].1.contains("`500m`"), "says what to write: {}", f[0].1);
    let over = one_test(
        "  runner:\n    resources:\n      requests: {memory: 2Gi}\n      limits: {memory: 1Gi}\n",
    );
    let f = findings(&over, Code::Schema);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].1
            .contains("the request `2Gi` is more than the limit `1Gi`"),
        "{}",
        f[0].1
    );
    let fine = one_test("  runner:\n    resources:\n      requests: {cpu: 500m, memory: 512Mi}\n      limits: {cpu: '2', memory: 1Gi}\n");
    assert!(fine.is_valid(), "{:#?}", fine.diagnostics);
}

#[test]
fn parallelism_is_capped_at_what_the_operator_can_name_even_without_a_policy() {
    let cat = one_test("  parallelism: 10000\n");
    let d = only(&cat, Code::LimitExceeded);
    assert_at(d, "tests/a/perftest.yaml", 9);
    assert!(d.message.contains("9999"), "{d}");
    assert!(one_test("  parallelism: 9999\n").is_valid());
}

#[test]
fn the_rendered_configmap_must_fit_kubernetes_limit_of_1_mib() {
    const LIMIT: usize = 1024 * 1024;
    let with_data = |data: &str| {
        check(
            &tree(&[
                (
                    "tests/a/perftest.yaml",
                    &spec("a", "  thresholds:\n    http_req_duration: ['p(95)<500']\n"),
                ),
                ("tests/a/script.js", SCRIPT),
                ("tests/a/data.txt", data),
            ]),
            false,
        )
    };
    // What the ConfigMap holds besides data.txt's content: every key, the script, the entry.
    let small = with_data("x");
    let rt = small.tests[0].resolved.clone().unwrap();
    let size = perfsync::spec::render::configmap_bytes(&rt.bundle, &rt.test.spec.thresholds);
    let overhead = size as usize - 1;
    assert!(
        overhead > SCRIPT.len() + 500,
        "the entry script counts: {overhead}"
    );

    let at_limit = with_data(&"x".repeat(LIMIT - overhead));
    assert!(at_limit.is_valid(), "{:#?}", at_limit.diagnostics);
    let rt = at_limit.tests[0].resolved.clone().unwrap();
    assert_eq!(
        perfsync::spec::render::configmap_bytes(&rt.bundle, &rt.test.spec.thresholds),
        LIMIT as u64
    );

    let over = with_data(&"x".repeat(LIMIT - overhead + 1));
    let d = only(&over, Code::LimitExceeded);
    assert_at(d, "tests/a/perftest.yaml", 4);
    assert!(
        d.message.contains(&format!("{} bytes", LIMIT + 1)) && d.message.contains("1048576"),
        "{d}"
    );
    assert!(over.tests[0].resolved.is_none());
}
