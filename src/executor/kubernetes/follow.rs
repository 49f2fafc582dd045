//! Reading a run off the cluster, without I/O: the TestRun's stage, each runner pod's state,
//! and whether anything moved. The k6-operator says neither whether a test passed nor why a
//! runner failed; the pods do.

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

/// What the operator says about a TestRun in its `error` stage.
pub fn stage_error(tr: &DynamicObject) -> String {
    let messages: Vec<String> = tr
        .data
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
        .unwrap_or_default();
    if messages.is_empty() {
        "the k6-operator put the TestRun in its error stage".into()
    } else {
        format!(
            "the k6-operator put the TestRun in its error stage: {}",
            messages.join("; ")
        )
    }
}

/// A runner pod as far as perfsync cares.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerState {
    /// Not running yet; the reason kubelet gives (`ContainerCreating`, `ImagePullBackOff`…).
    Pending(Option<String>),
    Running,
    Ended {
        exit_code: Option<i32>,
        /// A platform reason: `OOMKilled`, `Evicted: …`.
        reason: Option<String>,
        finished_at: Option<DateTime<Utc>>,
    },
}

/// The runner's 1-based index: its Job is `<testrun>-<i>`.
pub fn runner_index(pod: &Pod, testrun: &str) -> Option<u32> {
    let labels = pod.labels();
    let job = labels
        .get("job-name")
        .or_else(|| labels.get("batch.kubernetes.io/job-name"))
        .cloned()
        .or_else(|| {
            // Pod names are `<job>-<suffix>` when the label is missing.
            let name = pod.name_any();
            name.rsplit_once('-').map(|(job, _)| job.to_string())
        })?;
    job.strip_prefix(testrun)?.strip_prefix('-')?.parse().ok()
}

fn ts(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

pub fn runner_state(pod: &Pod) -> RunnerState {
    let Some(status) = &pod.status else {
        return RunnerState::Pending(None);
    };
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == "k6").or_else(|| cs.first()));
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
    let waiting = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    RunnerState::Pending(waiting)
}

/// Each runner's newest pod (a Job may have made more than one), by index.
pub fn runners<'a>(pods: impl Iterator<Item = &'a Pod>, testrun: &str) -> BTreeMap<u32, &'a Pod> {
    let mut out: BTreeMap<u32, &Pod> = BTreeMap::new();
    for p in pods {
        let Some(i) = runner_index(p, testrun) else {
            continue;
        };
        let newer = match out.get(&i) {
            Some(q) => p.creation_timestamp() > q.creation_timestamp(),
            None => true,
        };
        if newer {
            out.insert(i, p);
        }
    }
    out
}

/// What changes when the run moves: the stage and every runner's state. A run whose key
/// stays the same, with no runner running, is stalled.
pub fn progress_key(stage: Option<&str>, runners: &BTreeMap<u32, &Pod>) -> String {
    let mut key = stage.unwrap_or("-").to_string();
    for (i, p) in runners {
        let s = match runner_state(p) {
            RunnerState::Pending(r) => format!("pending:{}", r.unwrap_or_default()),
            RunnerState::Running => "running".into(),
            RunnerState::Ended { .. } => "ended".into(),
        };
        key.push_str(&format!(" {i}={s}"));
    }
    key
}

/// Why a stalled run is stuck, in a person's words.
pub fn stall_reason(
    stage: Option<&str>,
    runners: &BTreeMap<u32, &Pod>,
    parallelism: u32,
) -> String {
    let mut parts = vec![format!("stage `{}`", stage.unwrap_or("none yet"))];
    let waiting: Vec<String> = runners
        .iter()
        .filter_map(|(i, p)| match runner_state(p) {
            RunnerState::Pending(Some(r)) => Some(format!("runner {i}: {r}")),
            _ => None,
        })
        .collect();
    parts.extend(waiting);
    if (runners.len() as u32) < parallelism {
        parts.push(format!(
            "{} of {parallelism} runner pods exist",
            runners.len()
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn exit_codes_oom_and_eviction() {
        let done = pod(serde_json::json!({
            "metadata": {"name": "t-1-abc", "labels": {"job-name": "t-1"}},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 99, "finishedAt": "2026-11-23T10:00:00Z"}}}]}
        }));
        assert_eq!(runner_index(&done, "t"), Some(1));
        assert!(matches!(
            runner_state(&done),
            RunnerState::Ended {
                exit_code: Some(99),
                reason: None,
                finished_at: Some(_)
            }
        ));
        let oom = pod(serde_json::json!({
            "metadata": {"name": "t-2-x", "labels": {"job-name": "t-2"}},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }));
        assert_eq!(
            runner_state(&oom),
            RunnerState::Ended {
                exit_code: Some(137),
                reason: Some("OOMKilled".into()),
                finished_at: None
            }
        );
        let evicted = pod(serde_json::json!({
            "metadata": {"name": "t-3-x"},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}
        }));
        assert_eq!(runner_index(&evicted, "t"), Some(3));
        assert_eq!(
            runner_state(&evicted),
            RunnerState::Ended {
                exit_code: None,
                reason: Some("Evicted: low on memory".into()),
                finished_at: None
            }
        );
        let pulling = pod(serde_json::json!({
            "metadata": {"name": "t-1-y", "labels": {"job-name": "t-1"}},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
        }));
        assert_eq!(
            runner_state(&pulling),
            RunnerState::Pending(Some("ImagePullBackOff".into()))
        );
        let all = [pulling.clone()];
        let rs = runners(all.iter(), "t");
        assert_eq!(
            stall_reason(Some("created"), &rs, 2),
            "stage `created`, runner 1: ImagePullBackOff, 1 of 2 runner pods exist"
        );
        // Another TestRun's pods (a name sharing the prefix) are not this run's runners.
        assert_eq!(runner_index(&done, "t-1"), None);
    }
}
