//! The initializer Job as the operator builds it (`NewInitializerJob`): a copy of
//! `spec.runner` when `spec.initializer` is unset, and a shell program that runs `k6 archive`
//! then `k6 inspect --execution-requirements`, printing only inspect's JSON on success.

use super::args::{needs_shell, Cli};
use super::runners::{
    annotations, container, labels, owner, pod_spec, ports, volumes_and_mounts, Script,
};
use super::{s, Version};
use serde_json::{json, Value};

pub fn job_name(testrun: &str) -> String {
    format!("{testrun}-initializer")
}

/// The section the initializer pod is built from.
pub fn section(spec: &Value) -> &Value {
    match spec.get("initializer") {
        Some(v) if v.is_object() => v,
        _ => &spec["runner"],
    }
}

/// The shell program. `setup` runs first; `archive` is how the program names the archive
/// file; `archive_cmd` is the `k6 archive` command line. Errors of `k6 archive`/`k6 inspect`
/// go to a file that is printed only when they fail (or log at level error), so that a
/// successful run prints inspect's JSON and nothing else.
fn program(setup: &str, archive: &str, archive_cmd: &str) -> String {
    let setup = if setup.is_empty() {
        String::new()
    } else {
        format!("{setup}\n")
    };
    format!(
        r#"if ! command -v k6 >/dev/null 2>&1; then
  echo 'level=error msg="no k6 executable in PATH: the initializer image needs k6"' >&2
  exit 127
fi

logs=/tmp/k6logs
{setup}
if ! mkdir -p "$(dirname {archive})"; then
  exit 1
fi

if ! {archive_cmd} 2> "${{logs}}"; then
  cat "${{logs}}"
  exit 1
fi

if ! k6 inspect --execution-requirements {archive} 2> "${{logs}}"; then
  cat "${{logs}}"
  exit 1
fi

if grep 'level.*error' "${{logs}}"; then
  exit 1
fi"#
    )
}

/// The container command (after `sh -c`, which the caller prepends).
pub fn command(spec: &Value, version: Version, cli: &Cli) -> Result<Vec<String>, String> {
    let script = Script::of(spec)?;
    let script_name = script.full_name();
    let archive = format!("/tmp/{}.archived.tar", script.file);
    let env = section(spec)["env"].as_array().cloned().unwrap_or_default();
    if needs_shell(spec, version) {
        let mut env_flags = String::new();
        for e in &env {
            let name = s(e, "/name");
            match version {
                // v1.6: the shell expands the variable, whatever its source.
                Version::V1_6 => env_flags.push_str(&format!(" -e {name}=\"${{{name}}}\"")),
                // v1.5: the literal `value` (empty for a `valueFrom`).
                Version::V1_5 => env_flags.push_str(&format!(" -e {name}=\"{}\"", s(e, "/value"))),
            }
        }
        let line = cli.archive_args.join(" ");
        let archive_cmd = format!("k6 archive {script_name}{env_flags} -O {archive} {line}");
        return Ok(vec![program("", &archive, &archive_cmd)]);
    }
    let mut cmd = vec![
        program("archive=\"$1\"\nshift", "\"${archive}\"", "\"$@\""),
        "sh".to_string(),
        archive.clone(),
        "k6".to_string(),
        "archive".to_string(),
        script_name,
    ];
    for e in &env {
        let name = s(e, "/name");
        cmd.push("-e".into());
        cmd.push(format!("{name}=$({name})"));
    }
    cmd.push("-O".into());
    cmd.push(archive);
    cmd.extend(cli.archive_args.iter().cloned());
    Ok(cmd)
}

/// Initializer Job `<testrun>-initializer`.
pub fn job(tr: &Value, version: Version, cli: &Cli) -> Result<Value, String> {
    let spec = &tr["spec"];
    let sec = section(spec);
    let name = s(tr, "/metadata/name");
    let script = Script::of(spec)?;
    let mut cmd = vec!["sh".to_string(), "-c".to_string()];
    cmd.extend(command(spec, version, cli)?);
    let (volumes, mounts) = volumes_and_mounts(&script, sec);
    let mut c = container(
        sec,
        "grafana/k6:latest",
        cmd,
        sec["env"].clone(),
        ports(spec),
    );
    c["volumeMounts"] = mounts;
    let pod = pod_spec(sec, vec![c], volumes);
    let labels = labels(name, false, sec);
    let annotations = annotations(sec);
    Ok(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(name), "labels": labels, "annotations": annotations, "ownerReferences": owner(tr)},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}}}))
}
