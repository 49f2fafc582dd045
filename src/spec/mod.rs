//! Spec stage: parse, validate and render tests. Pure: it reads a [`crate::source::Tree`]
//! snapshot and never touches the file system, the network or a clock.

pub mod allowlist;
pub mod bundle;
pub mod catalog;
pub mod checks;
pub mod diagnostic;
pub mod duration;
pub mod env_rules;
pub mod js;
pub mod k8s;
pub mod locate;
pub mod model;
pub mod parse;
pub mod privileges;
pub mod render;
pub mod revision;
pub mod schema;
pub mod script_scan;
pub mod small_map;
pub mod template;
pub mod threshold;

pub use catalog::{build, Catalog, Options, ResolvedTest};
pub use diagnostic::{Code, Diagnostic};
