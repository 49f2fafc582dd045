use super::{load_config, output, Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::Config;
use crate::source::dir::load_dir;
use crate::spec::{self, Catalog, Options};
use std::path::Path;

/// Loads and validates the repository at `path`; errors reading it are environment errors.
pub fn catalog(config: Option<&Config>, path: &Path) -> Result<Catalog, i32> {
    let repo = config.map(|c| c.repository.clone()).unwrap_or_default();
    let layout = repo.layout();
    let tree = load_dir(path, &[&layout.tests_dir, &layout.templates_dir]).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    Ok(spec::build(
        &tree,
        &Options {
            layout: &layout,
            policy: config.map(|c| &c.policy),
        },
    ))
}

pub fn run(config_path: Option<&Path>, format: Format, path: &Path) -> i32 {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.is_none() {
        eprintln!(
            "warning: no --config given, so there is no policy: targets and limits are not checked"
        );
    }
    let cat = match catalog(config.as_ref(), path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rendered = match format {
        Format::Text => output::text(&cat),
        Format::Json => output::json(&cat) + "\n",
        Format::Github => output::github(&cat),
    };
    print!("{rendered}");
    if cat.is_valid() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}
