//! How the operator turns `spec.arguments` / `spec.args` into argv, and which of them it keeps
//! for `k6 archive` (its `ParseCLI`), for both releases.

use super::Version;
use serde_json::Value;

/// What `ParseCLI` finds: the arguments fit for `k6 archive`, and whether `--out cloud` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    pub archive_args: Vec<String>,
    pub has_cloud_out: bool,
}

fn spec_args(spec: &Value) -> Vec<String> {
    spec["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the k6 command goes through a shell: always in v1.5; in v1.6 unless `spec.args`
/// is a non-empty list.
pub fn needs_shell(spec: &Value, version: Version) -> bool {
    version == Version::V1_5 || spec_args(spec).is_empty()
}

/// The argv the runners get: v1.6 `Argv()` (`spec.args`, else `strings.Fields(arguments)`);
/// v1.5 `strings.Split(arguments, " ")` (so two spaces give an empty argument).
pub fn argv(spec: &Value, version: Version) -> Vec<String> {
    let arguments = spec["arguments"].as_str().unwrap_or("");
    match version {
        Version::V1_5 if arguments.is_empty() => Vec::new(),
        Version::V1_5 => arguments.split(' ').map(str::to_string).collect(),
        Version::V1_6 => {
            let args = spec_args(spec);
            if !args.is_empty() {
                return args;
            }
            arguments.split_whitespace().map(str::to_string).collect()
        }
    }
}

/// The operator's `ParseCLI` of the spec's arguments (v1.6 over `Argv()`, v1.5 over the
/// `arguments` string). The error is its validation error; the arguments found before it are
/// returned with it, as the operator does.
pub fn parse_cli(spec: &Value, version: Version) -> (Cli, Option<String>) {
    match version {
        Version::V1_6 => parse_v16(&argv(spec, version)),
        Version::V1_5 => parse_v15(spec["arguments"].as_str().unwrap_or("")),
    }
}

fn invalid(arg: &str) -> String {
    format!("encountered an invalid value for k6 CLI argument: `{arg}`")
}

fn parse_v16(argv: &[String]) -> (Cli, Option<String>) {
    // The values of the flag at `start - 1`: up to the next flag; an empty element counts
    // only right after the flag.
    let values_end = |start: usize| {
        let mut end = start;
        while end < argv.len() {
            if argv[end].is_empty() {
                if end == start {
                    end += 1;
                }
                break;
            }
            if argv[end].starts_with('-') {
                break;
            }
            end += 1;
        }
        end
    };
    let mut cli = Cli::default();
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].as_str();
        if !a.starts_with('-') {
            return (cli, Some(invalid(a)));
        }
        let end = values_end(i + 1);
        if a.starts_with("--log-output")
            || a.starts_with("--block-hostnames")
            || a.starts_with("--blacklist-ip")
            || a.starts_with("--user-agent")
            || matches!(
                a,
                "-l" | "--linger" | "--no-usage-report" | "--verbose" | "-v"
            )
        {
        } else if matches!(a, "-o" | "--out") {
            if i + 1 < end && argv[i + 1] == "cloud" {
                cli.has_cloud_out = true;
            }
        } else {
            cli.archive_args.extend(argv[i..end].iter().cloned());
        }
        i = end;
    }
    (cli, None)
}

fn parse_v15(arguments: &str) -> (Cli, Option<String>) {
    let args: Vec<&str> = arguments.split(' ').collect();
    let values_end = |start: usize| {
        let mut end = start;
        while end < args.len() {
            let t = args[end].trim();
            if t.starts_with('-') {
                break;
            }
            end += 1;
        }
        end
    };
    let mut cli = Cli::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim();
        if a.is_empty() {
            i += 1;
            continue;
        }
        if !a.starts_with('-') {
            return (cli, Some(invalid(a)));
        }
        let end = values_end(i + 1);
        if a.starts_with("--log-output")
            || matches!(
                a,
                "-l" | "--linger" | "--no-usage-report" | "--verbose" | "-v"
            )
        {
        } else if matches!(a, "-o" | "--out") {
            // v1.5 looks for `cloud` anywhere before the end of the flag's values.
            if args[..end].iter().any(|x| x.trim() == "cloud") {
                cli.has_cloud_out = true;
            }
        } else {
            let part: Vec<&str> = args[i..end].iter().map(|x| x.trim()).collect();
            cli.archive_args.push(part.join(" "));
        }
        i = end;
    }
    (cli, None)
}
