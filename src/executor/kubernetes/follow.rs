//! Reading a run off the cluster, without I/O, the way the real k6-operator drives it:
//! stage `initialization` (the initializer pod runs `k6 archive` and `k6 inspect`), then
//! runner Jobs whose pods start **paused** (phase `Running`, doing nothing), then a starter
//! pod that resumes them once all are Running, then `stopped`/`finished` whether k6 passed
//! or not. The operator says neither whether a test passed nor why it failed (its `error`
//! stage carries no message); the pods do.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The stage the operator reports (`initialization` … `finished`, or `error`).
pub fn stage(tr: &DynamicObject) -> Option<String> {
    tr.data
        .pointer("/status/stage")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// Messages of the TestRun's conditions (the real operator sets none for `error`; a
/// future one might).
pub fn condition_messages(tr: &DynamicObject) -> Vec<String> {
    tr.data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let msg = c.get("message").and_then(|m| m.as_str())?;
                    (!msg.is_empty()).then(|| msg.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pod as far as perfsync cares.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerState {
    /// Not running yet; the reason kubelet or the scheduler gives (`ContainerCreating`,
    /// `ImagePullBackOff`, `Unschedulable`…).
    Pending(Option<String>),
    Running,
    Ended {
        exit_code: Option<i32>,
        /// A platform reason: `OOMKilled`, `Evicted: …`.
        reason: Option<String>,
        finished_at: Option<DateTime<Utc>>,
    },
}

/// Which of a run's pods this is; the operator names their Jobs `<testrun>-initializer`,
/// `<testrun>-<i>` and `<testrun>-starter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Initializer,
    Runner(u32),
    Starter,
}

fn job_of(pod: &Pod) -> Option<String> {
    let labels = pod.labels();
    labels
        .get("job-name")
        .or_else(|| labels.get("batch.kubernetes.io/job-name"))
        .cloned()
        .or_else(|| {
            // Pod names are `<job>-<suffix>` when the label is missing.
            let name = pod.name_any();
            name.rsplit_once('-').map(|(job, _)| job.to_string())
        })
}

pub fn role(pod: &Pod, testrun: &str) -> Option<Role> {
    let job = job_of(pod)?;
    match job.strip_prefix(testrun)?.strip_prefix('-')? {
        "initializer" => Some(Role::Initializer),
        "starter" => Some(Role::Starter),
        i => i.parse().ok().filter(|i| *i > 0).map(Role::Runner),
    }
}

/// The runner's 1-based index: its Job is `<testrun>-<i>`.
pub fn runner_index(pod: &Pod, testrun: &str) -> Option<u32> {
    match role(pod, testrun)? {
        Role::Runner(i) => Some(i),
        _ => None,
    }
}

fn ts(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

fn container(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == "k6").or_else(|| cs.first()))
}

/// The scheduler's refusal, when the pod cannot be placed.
fn unschedulable(pod: &Pod) -> Option<String> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let reason = c.reason.clone().unwrap_or_else(|| "Unschedulable".into());
    Some(match c.message.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason}: {m}"),
        None => reason,
    })
}

pub fn runner_state(pod: &Pod) -> RunnerState {
    let Some(status) = &pod.status else {
        return RunnerState::Pending(None);
    };
    let container = container(pod);
    let phase = status.phase.as_deref().unwrap_or("Pending");
    // An evicted pod may never report its container's end.
    if phase == "Failed" {
        if let Some(reason) = &status.reason {
            let message = status.message.clone().unwrap_or_default();
            return RunnerState::Ended {
                exit_code: None,
                reason: Some(
                    format!("{reason}: {message}")
                        .trim_end_matches(": ")
                        .to_string(),
                ),
                finished_at: None,
            };
        }
    }
    if let Some(t) = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
    {
        let reason = t
            .reason
            .as_deref()
            .filter(|r| *r == "OOMKilled" || *r == "DeadlineExceeded" || *r == "Evicted")
            .map(str::to_string);
        return RunnerState::Ended {
            exit_code: Some(t.exit_code),
            reason,
            finished_at: t.finished_at.as_ref().and_then(ts),
        };
    }
    if matches!(phase, "Succeeded" | "Failed") {
        return RunnerState::Ended {
            exit_code: None,
            reason: Some(format!(
                "the pod ended ({phase}) without a container exit code"
            )),
            finished_at: None,
        };
    }
    if phase == "Running" {
        return RunnerState::Running;
    }
    if let Some(why) = unschedulable(pod) {
        return RunnerState::Pending(Some(why));
    }
    let waiting = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| {
            let reason = w.reason.clone()?;
            Some(match w.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{reason}: {m}"),
                None => reason,
            })
        });
    RunnerState::Pending(waiting)
}

/// A run's pods by role: the newest of each (a Job may have made more than one).
#[derive(Debug, Default)]
pub struct RunPods<'a> {
    pub initializer: Option<&'a Pod>,
    pub starter: Option<&'a Pod>,
    pub runners: BTreeMap<u32, &'a Pod>,
}

pub fn run_pods<'a>(pods: impl Iterator<Item = &'a Pod>, testrun: &str) -> RunPods<'a> {
    let mut out = RunPods::default();
    let newer = |p: &Pod, q: Option<&&Pod>| match q {
        Some(q) => p.creation_timestamp() > q.creation_timestamp(),
        None => true,
    };
    for p in pods {
        match role(p, testrun) {
            Some(Role::Initializer) if newer(p, out.initializer.as_ref()) => {
                out.initializer = Some(p)
            }
            Some(Role::Starter) if newer(p, out.starter.as_ref()) => out.starter = Some(p),
            Some(Role::Runner(i)) if newer(p, out.runners.get(&i)) => {
                out.runners.insert(i, p);
            }
            _ => {}
        }
    }
    out
}

/// Each runner's newest pod, by index.
pub fn runners<'a>(pods: impl Iterator<Item = &'a Pod>, testrun: &str) -> BTreeMap<u32, &'a Pod> {
    run_pods(pods, testrun).runners
}

fn succeeded(pod: Option<&Pod>) -> bool {
    pod.is_some_and(|p| {
        matches!(
            runner_state(p),
            RunnerState::Ended {
                exit_code: Some(0),
                ..
            }
        )
    })
}

/// Whether the runners were resumed: the starter pod did its work, or the operator moved
/// past `started`.
pub fn resumed(stage: Option<&str>, pods: &RunPods) -> bool {
    succeeded(pods.starter) || matches!(stage, Some("stopped" | "finished"))
}

/// Whether something is doing work right now, so that an unchanged picture is not a stall:
/// the initializer or the starter running, or runners running after they were resumed. A
/// paused runner is `Running` and does nothing: before the resume it never counts.
pub fn working(stage: Option<&str>, pods: &RunPods) -> bool {
    let running = |p: Option<&Pod>| p.is_some_and(|p| runner_state(p) == RunnerState::Running);
    running(pods.initializer)
        || running(pods.starter)
        || (resumed(stage, pods)
            && pods
                .runners
                .values()
                .any(|p| runner_state(p) == RunnerState::Running))
}

fn state_word(p: &Pod) -> &'static str {
    // Waiting reasons alternate (ErrImagePull, ImagePullBackOff) without any progress.
    match runner_state(p) {
        RunnerState::Pending(_) => "pending",
        RunnerState::Running => "running",
        RunnerState::Ended { .. } => "ended",
    }
}

/// What changes when the run moves: the stage and every pod's state. A run whose key stays
/// the same while nothing is [`working`] is stalled.
pub fn progress_key(stage: Option<&str>, pods: &RunPods) -> String {
    let mut key = stage.unwrap_or("-").to_string();
    if let Some(p) = pods.initializer {
        key.push_str(&format!(" init={}", state_word(p)));
    }
    for (i, p) in &pods.runners {
        key.push_str(&format!(" {i}={}", state_word(p)));
    }
    if let Some(p) = pods.starter {
        key.push_str(&format!(" starter={}", state_word(p)));
    }
    key
}

/// Why a stalled run is stuck, in a person's words, and the pods whose events may say more
/// (those pending without a reason of their own, e.g. a volume that cannot be mounted).
pub fn stall_cause(stage: Option<&str>, pods: &RunPods, parallelism: u32) -> (String, Vec<String>) {
    let mut causes: Vec<String> = Vec::new();
    let mut ask: Vec<String> = Vec::new();
    let mut pending = |what: &str, p: &Pod, causes: &mut Vec<String>| {
        if let RunnerState::Pending(why) = runner_state(p) {
            let name = p.name_any();
            match why {
                Some(r) if r != "ContainerCreating" && r != "PodInitializing" => {
                    causes.push(format!("{what} pod {name}: {r}"))
                }
                other => {
                    causes.push(format!(
                        "{what} pod {name}: {}",
                        other.unwrap_or_else(|| "Pending".into())
                    ));
                    ask.push(name);
                }
            }
        }
    };
    if let Some(p) = pods.initializer {
        pending("initializer", p, &mut causes);
    }
    for (i, p) in &pods.runners {
        pending(&format!("runner {i}"), p, &mut causes);
    }
    if !resumed(stage, pods) {
        for (i, p) in &pods.runners {
            if let RunnerState::Ended {
                exit_code, reason, ..
            } = runner_state(p)
            {
                let how = match (exit_code, reason) {
                    (_, Some(r)) => r,
                    (Some(c), None) => format!("exit code {c}"),
                    (None, None) => "no exit code".into(),
                };
                causes.push(format!(
                    "runner {i} pod {} ended ({how}) before the runners were started",
                    p.name_any()
                ));
            }
        }
    }
    if let Some(p) = pods.starter {
        pending("starter", p, &mut causes);
    }
    let have = pods.runners.len() as u32;
    if causes.is_empty() {
        let s = stage.unwrap_or("");
        causes.push(match s {
            "" => "the k6-operator has not taken up the TestRun (is it installed and watching this namespace?)".into(),
            "initialization" if pods.initializer.is_none() => {
                "the k6-operator created no initializer pod".into()
            }
            "initialized" | "created" if have < parallelism => format!(
                "{have} of {parallelism} runner pods exist (the k6-operator could not create the others; its log says why)"
            ),
            "created" | "started" if pods.starter.is_none() => format!(
                "the runners are paused and no starter pod exists ({have} of {parallelism} runner pods)"
            ),
            _ => format!("stage `{s}`"),
        });
    } else if have < parallelism && matches!(stage, Some("initialized" | "created")) {
        causes.push(format!("{have} of {parallelism} runner pods exist"));
    }
    (
        format!(
            "stage `{}`: {}",
            stage.unwrap_or("none yet"),
            causes.join("; ")
        ),
        ask,
    )
}

/// Lines of an initializer log worth showing: k6's error lines, else the last lines.
pub fn log_excerpt(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=error") || l.contains("rror"))
        .collect();
    let lines: Vec<&str> = if errors.is_empty() {
        let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(3)..].to_vec()
    } else {
        errors[errors.len().saturating_sub(3)..].to_vec()
    };
    let mut s = lines.join(" | ");
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// `maxVUs` from `k6 inspect --execution-requirements` output (pretty-printed JSON, maybe
/// after log lines).
fn inspect_max_vus(log: &str) -> Option<u64> {
    let (start, end) = (log.find('{')?, log.rfind('}')?);
    let v: serde_json::Value = serde_json::from_str(log.get(start..=end)?).ok()?;
    v.get("maxVUs")?.as_u64()
}

/// Why the operator put the TestRun in its `error` stage, from the initializer pod's state
/// and log (the stage itself carries no message).
pub fn error_cause(
    tr: Option<&DynamicObject>,
    pods: &RunPods,
    init_log: Option<&str>,
    parallelism: u32,
) -> String {
    let head = "the k6-operator put the TestRun in its error stage";
    let messages = tr.map(condition_messages).unwrap_or_default();
    let Some(init) = pods.initializer else {
        return if messages.is_empty() {
            format!("{head} (no initializer pod was seen)")
        } else {
            format!("{head}: {}", messages.join("; "))
        };
    };
    let name = init.name_any();
    match runner_state(init) {
        RunnerState::Ended {
            exit_code: Some(0), ..
        } => {
            let max_vus = init_log.and_then(inspect_max_vus);
            match max_vus {
                Some(m) if m < u64::from(parallelism) => format!(
                    "{head}: parallelism {parallelism} is more than the script's {m} VUs at most (k6 inspect in initializer pod {name}); lower parallelism or raise the VUs"
                ),
                _ if !messages.is_empty() => format!("{head}: {}", messages.join("; ")),
                _ => format!("{head} after initializer pod {name} succeeded"),
            }
        }
        RunnerState::Ended {
            exit_code, reason, ..
        } => {
            let how = match (exit_code, reason) {
                (_, Some(r)) => r,
                (Some(c), None) => format!("exit code {c}"),
                (None, None) => "no exit code".into(),
            };
            let log = init_log.map(log_excerpt).filter(|l| !l.is_empty());
            match log {
                Some(l) => format!("{head}: initializer pod {name} failed ({how}): {l}"),
                None => format!(
                    "{head}: initializer pod {name} failed ({how}); its log could not be read"
                ),
            }
        }
        RunnerState::Pending(why) => format!(
            "{head}: initializer pod {name} is {}",
            why.unwrap_or_else(|| "Pending".into())
        ),
        RunnerState::Running => format!("{head} while initializer pod {name} runs"),
    }
}

#[cfg(test)]
mod tests;
