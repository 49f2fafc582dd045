//! The incremental index must always agree with a full rebuild of the same tree.

use perfsync::config::{Config, Layout};
use perfsync::source::Tree;
use perfsync::spec::catalog::Index;
use perfsync::spec::Catalog;

type Projection = (Vec<(Option<String>, String, Option<String>)>, Vec<String>);

fn project(c: &Catalog) -> Projection {
    (
        c.tests
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.file.clone(),
                    t.resolved.as_ref().map(|r| r.revision.clone()),
                )
            })
            .collect(),
        c.diagnostics.iter().map(|d| d.to_string()).collect(),
    )
}

fn spec(name: &str, extra: &str) -> String {
    format!("apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: {name}\nspec:\n  script: s.js\n  targets: [http://127.0.0.1:1]\n{extra}")
}

const TPL: &str = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTemplate\nmetadata:\n  name: tpl\nspec:\n  category: api\n  script: s.js\n  params:\n    P: {default: a}\n";
const TPL_TEST: &str = "apiVersion: perfsync.dev/v1alpha1\nkind: PerfTest\nmetadata:\n  name: uses-tpl\nspec:\n  template: {name: tpl}\n  targets: [http://127.0.0.1:1]\n";

#[test]
fn incremental_updates_match_full_rebuilds() {
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let mut tree = Tree::new();
    let files = [
        ("tests/a/perftest.yaml", spec("a", "")),
        (
            "tests/a/s.js",
            "export default function () {}\n".to_string(),
        ),
        ("tests/b/perftest.yaml", spec("b", "")),
        (
            "tests/b/s.js",
            "export default function () {}\n".to_string(),
        ),
        ("templates/tpl/template.yaml", TPL.to_string()),
        (
            "templates/tpl/s.js",
            "export default function () { console.log('${P}'); }\n".to_string(),
        ),
        ("tests/c/perftest.yaml", TPL_TEST.to_string()),
    ];
    for (p, c) in &files {
        tree.insert_file(*p, c.as_bytes().to_vec());
    }
    let mut index = Index::build(&tree, Layout::default(), Some(policy.clone()));
    // Each step: paths to write (Some) or delete (None).
    let steps: Vec<Vec<(&str, Option<String>)>> = vec![
        vec![(
            "tests/a/s.js",
            Some("export default function () { /* v2 */ }\n".into()),
        )],
        // A nested test takes a folder out of its parent's bundle.
        vec![
            ("tests/a/inner/perftest.yaml", Some(spec("inner", ""))),
            (
                "tests/a/inner/s.js",
                Some("export default function () {}\n".into()),
            ),
        ],
        // A duplicate name, then the first holder goes away and the second becomes valid.
        vec![("tests/b/perftest.yaml", Some(spec("a", "")))],
        vec![("tests/a/perftest.yaml", None)],
        // The template changes; its user must be re-rendered.
        vec![(
            "templates/tpl/s.js",
            Some("export default function () { console.log('${P}?'); }\n".into()),
        )],
        vec![("templates/tpl/template.yaml", None)],
        vec![("templates/tpl/template.yaml", Some(TPL.into()))],
        // A broken spec, then the nested test removed.
        vec![("tests/b/perftest.yaml", Some("::".into()))],
        vec![("tests/a/inner/perftest.yaml", None)],
        vec![(
            "tests/a/perftest.yaml",
            Some(spec("a", "  thresholds:\n    x: ['bad']\n")),
        )],
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let changed: Vec<String> = step.iter().map(|(p, _)| p.to_string()).collect();
        for (p, c) in step {
            match c {
                Some(c) => tree.insert_file(p, c.into_bytes()),
                None => {
                    tree.remove(p);
                }
            }
        }
        index.update(&tree, &changed);
        let full = Index::build(&tree, Layout::default(), Some(policy.clone()));
        assert_eq!(
            project(&index.catalog()),
            project(&full.catalog()),
            "step {i}"
        );
    }
}
