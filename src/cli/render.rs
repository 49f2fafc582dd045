use super::validate::catalog;
use super::{load_config, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::spec::render::{configmap, testrun, RunnerDefaults};
use std::path::Path;

pub fn run(config_path: Option<&Path>, path: &Path, test: &str) -> i32 {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let cat = match catalog(config.as_ref(), path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(entry) = cat.test(test) else {
        let known: Vec<&str> = cat.tests.iter().filter_map(|t| t.name.as_deref()).collect();
        eprintln!(
            "error: no test named `{test}`; the repository has: {}",
            known.join(", ")
        );
        return EXIT_USAGE;
    };
    let Some(rt) = &entry.resolved else {
        for d in cat.diagnostics.iter().filter(|d| {
            d.file
                .starts_with(entry.file.rsplit_once('/').map_or("", |p| p.0))
        }) {
            eprintln!("{d}");
        }
        eprintln!(
            "error: test `{test}` ({}) is invalid; run `perfsync validate` for every error",
            entry.file
        );
        return EXIT_INVALID;
    };
    let exec = config
        .as_ref()
        .map(|c| c.executor.clone())
        .unwrap_or_default();
    let defaults = RunnerDefaults {
        namespace: exec.namespace.unwrap_or_else(|| "perfsync".into()),
        image: exec.runner_image,
        env: Vec::new(),
        runner: exec.runner.unwrap_or_default(),
        starter_image: exec.starter_image,
    };
    let docs = [
        serde_yaml::to_string(&configmap(rt, &defaults.namespace)),
        serde_yaml::to_string(&testrun(
            rt,
            &crate::spec::render::run_id(&rt.test.metadata.name, &rt.revision, 1),
            &defaults,
        )),
    ];
    for doc in docs {
        match doc {
            Ok(y) => print!("---\n{y}"),
            Err(e) => {
                eprintln!("error: cannot render YAML: {e}");
                return EXIT_USAGE;
            }
        }
    }
    EXIT_OK
}
