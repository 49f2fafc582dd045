use super::{load_config, Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::Config;
use crate::plan::{plan, Known, Plan, Prior};
use crate::source::git::GitSource;
use crate::spec::catalog::Index;
use std::path::Path;

pub struct Args<'a> {
    pub config: Option<&'a Path>,
    pub repo: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub format: Format,
}

pub fn run(args: Args) -> i32 {
    let config = match load_config(args.config) {
        Ok(c) => c.unwrap_or_default(),
        Err(code) => return code,
    };
    match compute(&config, &args) {
        Ok(p) => {
            match args.format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default())
                }
                _ => print!("{}", text(&p)),
            }
            if p.invalid.is_empty() {
                EXIT_OK
            } else {
                EXIT_INVALID
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn compute(config: &Config, args: &Args) -> Result<Plan, String> {
    let url = match args.repo {
        Some(r) => absolute(r),
        None => config.repository_url().map_err(|e| e.to_string())?,
    };
    let state = std::env::temp_dir().join("perfsync-cli");
    let auth = config.git_auth().map_err(|e| e.to_string())?;
    let src = GitSource::new(&url, &config.repository.branch, &state, auth)
        .with_limits(config.repository.limits());
    src.fetch().map_err(|e| e.to_string())?;
    let to = src
        .resolve(args.to.unwrap_or(&config.repository.branch))
        .map_err(|e| e.to_string())?;
    let layout = config.repository.layout();
    let folders = [layout.tests_dir.as_str(), layout.templates_dir.as_str()];
    let policy = args.config.map(|_| config.policy.clone());
    let catalog_at = |commit: &str| -> Result<crate::spec::Catalog, String> {
        let tree = src.tree_at(commit, &folders).map_err(|e| e.to_string())?;
        Ok(Index::build(&tree, layout.clone(), policy.clone()).catalog())
    };
    let now = catalog_at(&to)?;
    let (prior, changed) = match args.from {
        None => (Prior::default(), None),
        Some(rev) => {
            let from = src.resolve(rev).map_err(|e| e.to_string())?;
            let before = catalog_at(&from)?;
            let tests = before
                .tests
                .iter()
                .filter_map(|e| {
                    let name = e.name.clone()?;
                    let rt = e.resolved.as_ref();
                    Some((
                        name,
                        Known {
                            revision: rt.map(|r| r.revision.clone()),
                            template_revision: rt.and_then(|r| r.template_revision.clone()),
                            file: e.file.clone(),
                            valid: rt.is_some(),
                        },
                    ))
                })
                .collect();
            let changed = if src.is_ancestor(&from, &to).map_err(|e| e.to_string())? {
                Some(
                    src.changed_paths(&from, &to, &folders)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            (
                Prior {
                    commit: Some(from),
                    tests,
                },
                changed,
            )
        }
    };
    Ok(plan(&prior, &now, &to, changed.as_deref()))
}

/// Local paths become absolute so the clone under the temp dir can find them.
fn absolute(repo: &str) -> String {
    let p = Path::new(repo);
    if repo.contains("://") || p.is_absolute() {
        return repo.to_string();
    }
    std::env::current_dir()
        .map(|d| d.join(p).display().to_string())
        .unwrap_or_else(|_| repo.to_string())
}

pub fn text(p: &Plan) -> String {
    let mut out = format!(
        "plan {}..{}{}\n",
        p.from
            .as_deref()
            .map_or("(first sync)", |f| &f[..f.len().min(12)]),
        &p.to[..p.to.len().min(12)],
        if p.is_baseline() {
            ": baseline, nothing runs"
        } else {
            ""
        }
    );
    for r in &p.runs {
        out.push_str(&format!(
            "run      {:<40} {} ({})\n",
            r.test,
            crate::spec::revision::short(&r.revision),
            r.reason.as_str()
        ));
    }
    for s in &p.skipped {
        out.push_str(&format!(
            "skip     {:<40} {} ({})\n",
            s.test,
            crate::spec::revision::short(&s.revision),
            s.why
        ));
    }
    for r in &p.removed {
        out.push_str(&format!("remove   {}\n", r.test));
    }
    for i in &p.invalid {
        out.push_str(&format!("invalid  {} ({})\n", i.test, i.file));
        for e in &i.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out.push_str(&format!(
        "{} to run, {} removed, {} invalid\n",
        p.runs.len(),
        p.removed.len(),
        p.invalid.len()
    ));
    out
}
