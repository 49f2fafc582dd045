//! The `perfsync` command line. Each subcommand is a small function returning an exit code:
//! 0 ok, 1 the input is invalid, 2 usage or environment error (DESIGN.md section 6).

mod daemon_cmds;
mod gate;
mod output;
pub mod plan;
mod render;
mod runs;
mod validate;

use crate::config::{Config, ConfigError};
use crate::spec::schema::{schema_json, SchemaKind};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// `perfsync --version`: the release and the commit it was built from (`build.rs`; `unknown`
/// when built outside git without `PERFSYNC_COMMIT`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PERFSYNC_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "perfsync", version = VERSION, about = "GitOps for k6 load tests")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every test and template of a repository against the schema and the policy.
    Validate {
        /// Daemon config holding the policy; without it targets and limits are not checked.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Root of the test repository.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print the JSON Schema of a document kind.
    Schema {
        #[arg(value_enum, default_value_t = SchemaKind::Perftest)]
        kind: SchemaKind,
    },
    /// Show what a sync from one commit to another would run, remove and refuse.
    Plan {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Repository path or URL (default: the config's repository.url).
        #[arg(long)]
        repo: Option<String>,
        /// The last synced commit; without it, the plan is a first sync's (a baseline).
        #[arg(long)]
        from: Option<String>,
        /// Default: the head of the configured branch.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the daemon: sync loop, triggers, HTTP server.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Recorded runs, from PostgreSQL.
    Runs {
        #[command(subcommand)]
        action: RunsCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
        format: Format,
    },
    /// Ask a running daemon to run a test now; with --wait, follow it and exit by its verdict
    /// (0 succeeded; 1 failed, error, timeout, aborted, or not ended within --timeout; 2 usage,
    /// wrong token, unknown test, daemon unreachable).
    Run(gate::Args),
    /// Print the PerfTest CustomResourceDefinition (the in-cluster mirror of each test).
    Crd,
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Serve the demo HTTP target the examples load-test (loopback only).
    DemoTarget {
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
    },
    /// Apply the database migrations.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the Kubernetes objects perfsync would create for a test: `render [PATH] TEST`.
    Render {
        #[arg(long)]
        config: Option<PathBuf>,
        /// `[PATH] TEST`: the repository root (default `.`) and the test's name.
        #[arg(num_args = 1..=2, required = true, value_names = ["PATH", "TEST"])]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The most recent runs, newest first.
    List {
        #[arg(long)]
        test: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One run's summary.
    Show { run: String },
    /// How RUN_B compares with RUN_A (p95, error rate, throughput).
    Compare { run_a: String, run_b: String },
    /// Change points found over each test's series (where a shift began), newest first.
    Changes {
        #[arg(long)]
        test: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
    /// A GitLab Code Quality report (validate; other commands print text).
    Gitlab,
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate {
            config,
            format,
            path,
        } => validate::run(config.as_deref(), format, &path),
        Command::Plan {
            config,
            repo,
            from,
            to,
            format,
        } => plan::run(plan::Args {
            config: config.as_deref(),
            repo: repo.as_deref(),
            from: from.as_deref(),
            to: to.as_deref(),
            format,
        }),
        Command::Serve { config } => daemon_cmds::serve(&config),
        Command::Run(args) => gate::run(args),
        Command::Migrate { config } => daemon_cmds::migrate(config.as_deref()),
        Command::Crd => {
            print!("{}", crate::executor::kubernetes::crd::crd_yaml());
            EXIT_OK
        }
        Command::Openapi => {
            print!("{}", crate::server::openapi::document_text());
            EXIT_OK
        }
        Command::DemoTarget { listen } => daemon_cmds::demo_target(&listen),
        Command::Runs {
            action,
            config,
            format,
        } => {
            let action = match &action {
                RunsCommand::List { test, limit } => runs::Action::List {
                    test: test.as_deref(),
                    limit: *limit,
                },
                RunsCommand::Show { run } => runs::Action::Show { run },
                RunsCommand::Compare { run_a, run_b } => {
                    runs::Action::Compare { a: run_a, b: run_b }
                }
                RunsCommand::Changes { test, limit } => runs::Action::Changes {
                    test: test.as_deref(),
                    limit: *limit,
                },
            };
            runs::run(config.as_deref(), format, action)
        }
        Command::Schema { kind } => {
            print!("{}", schema_json(kind));
            EXIT_OK
        }
        Command::Render { config, args } => {
            let (path, test) = match args.as_slice() {
                [test] => (PathBuf::from("."), test.clone()),
                [path, test] => (PathBuf::from(path), test.clone()),
                _ => {
                    eprintln!("error: usage: perfsync render [--config FILE] [PATH] TEST");
                    return EXIT_USAGE;
                }
            };
            render::run(config.as_deref(), &path, &test)
        }
    }
}

/// A runtime for a command that talks to the database or the API; on failure the error is
/// printed and the exit code is 2.
fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            EXIT_USAGE
        })
}

/// Loads the config when one is given; errors are printed and turned into exit code 2.
fn load_config(path: Option<&Path>) -> Result<Option<Config>, i32> {
    match path.map(Config::load).transpose() {
        Ok(c) => Ok(c),
        Err(e) => {
            match &e {
                ConfigError::Invalid(d) => eprintln!("error: invalid config: {d}"),
                other => eprintln!("error: {other}"),
            }
            Err(EXIT_USAGE)
        }
    }
}

/// The config (default when none is given) and the database URL it leads to.
fn config_and_database(path: Option<&Path>) -> Result<(Config, String), i32> {
    let config = load_config(path)?.unwrap_or_default();
    match config.database_url() {
        Ok(url) => Ok((config, url)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_USAGE)
        }
    }
}
