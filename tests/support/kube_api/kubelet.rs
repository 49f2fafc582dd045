//! What the apiserver gets from kubelets and the scheduler: pod logs (`container`,
//! `tailLines`, `limitBytes`; a 500 when the kubelet cannot be reached) and core/v1 Events
//! about objects (deduplicated with a count, as the event recorder does).

use super::{lock, now, status, Coll, Store};
use serde_json::{json, Value};
use std::path::Path;

/// The message a real apiserver gives when the pod's kubelet is unreachable.
pub fn kubelet_unreachable(ns: &str, pod: &str, container: &str) -> String {
    format!(
        "Get \"https://10.0.0.7:10250/containerLogs/{ns}/{pod}/{container}\": dial tcp 10.0.0.7:10250: connect: no route to host"
    )
}

/// The query of a log read.
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub container: Option<String>,
    pub tail_lines: Option<String>,
    pub limit_bytes: Option<String>,
}

fn bad_request(msg: &str) -> (u16, Value) {
    (400, status(400, "BadRequest", msg))
}

fn containers(pod: &Value) -> Vec<String> {
    ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

impl Store {
    pub fn set_log(&self, ns: &str, pod: &str, path: &Path) {
        lock(&self.inner)
            .logs
            .insert((ns.into(), pod.into()), path.to_path_buf());
    }

    /// Reads of this pod's log answer 500 with `message` (empty: [`kubelet_unreachable`]).
    pub fn fail_log(&self, ns: &str, pod: &str, message: &str) {
        lock(&self.inner)
            .log_failures
            .insert((ns.into(), pod.into()), message.into());
    }

    /// Undoes [`Store::fail_log`]: the kubelet is back.
    pub fn heal_log(&self, ns: &str, pod: &str) {
        lock(&self.inner)
            .log_failures
            .remove(&(ns.to_string(), pod.to_string()));
    }

    /// `GET …/pods/NAME/log` as the apiserver answers it.
    pub fn read_log(&self, ns: &str, pod: &str, q: &LogQuery) -> Result<String, (u16, Value)> {
        let Some(obj) = self.get(&Coll::new("", "pods"), ns, pod) else {
            return Err((
                404,
                status(404, "NotFound", &format!("pods \"{pod}\" not found")),
            ));
        };
        let names = containers(&obj);
        let container = match &q.container {
            Some(c) if !names.contains(c) => {
                return Err(bad_request(&format!(
                    "container {c} is not valid for pod {pod}"
                )))
            }
            Some(c) => c.clone(),
            None if names.len() > 1 => {
                return Err(bad_request(&format!(
                    "a container name must be specified for pod {pod}, choose one of: [{}]",
                    names.join(" ")
                )))
            }
            None => names.first().cloned().unwrap_or_else(|| "k6".into()),
        };
        let parse = |v: &Option<String>, field: &str| -> Result<Option<i64>, (u16, Value)> {
            v.as_deref()
                .map(|s| {
                    s.parse::<i64>().map_err(|_| {
                        bad_request(&format!(
                            "{field}: strconv.ParseInt: parsing {s:?}: invalid syntax"
                        ))
                    })
                })
                .transpose()
        };
        let tail = parse(&q.tail_lines, "tailLines")?;
        let limit = parse(&q.limit_bytes, "limitBytes")?;
        let invalid = |field: &str, n: i64, m: &str| {
            let text = format!("{field}: Invalid value: {n}: {m}");
            (
                422,
                status(
                    422,
                    "Invalid",
                    &format!("PodLogOptions \"{pod}\" is invalid: {text}"),
                ),
            )
        };
        if let Some(n) = tail.filter(|n| *n < 0) {
            return Err(invalid(
                "tailLines",
                n,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = limit.filter(|n| *n < 1) {
            return Err(invalid("limitBytes", n, "must be greater than 0"));
        }
        let (path, failure) = {
            let inner = lock(&self.inner);
            let key = (ns.to_string(), pod.to_string());
            (
                inner.logs.get(&key).cloned(),
                inner.log_failures.get(&key).cloned(),
            )
        };
        if let Some(m) = failure {
            let m = if m.is_empty() {
                kubelet_unreachable(ns, pod, &container)
            } else {
                m
            };
            return Err((500, status(500, "InternalError", &m)));
        }
        let Some(path) = path else {
            return Err(bad_request(&format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )));
        };
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(n) = tail {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let keep = lines.len().saturating_sub(n as usize);
            text = lines[keep..].concat();
        }
        if let Some(n) = limit {
            let mut end = (n as usize).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Ok(text)
    }

    /// Records a core/v1 Event about an object, as a kubelet or the scheduler would; the same
    /// reason and message again raise `count` and `lastTimestamp` instead.
    pub fn record_event(
        &self,
        ns: &str,
        involved_kind: &str,
        involved_name: &str,
        reason: &str,
        message: &str,
        type_: &str,
    ) -> Value {
        let events = Coll::new("", "events");
        let same = {
            let inner = lock(&self.inner);
            let found = super::store::in_coll(&inner, &events, Some(ns))
                .map(|(_, e)| e)
                .find(|e| {
                    e["involvedObject"]["kind"] == involved_kind
                        && e["involvedObject"]["name"] == involved_name
                        && e["reason"] == reason
                        && e["message"] == message
                })
                .cloned();
            found
        };
        if let Some(e) = same {
            let name = e["metadata"]["name"].as_str().unwrap_or("").to_string();
            let count = e["count"].as_u64().unwrap_or(1) + 1;
            let patch = json!({"count": count, "lastTimestamp": now()});
            if let Ok(v) = self.merge(&events, ns, &name, &patch, false) {
                return v;
            }
        }
        let (api_version, resource) = match involved_kind {
            "Pod" => ("v1", Coll::new("", "pods")),
            "Job" => ("batch/v1", Coll::new("batch", "jobs")),
            "TestRun" => ("k6.io/v1alpha1", Coll::new("k6.io", "testruns")),
            "ConfigMap" => ("v1", Coll::new("", "configmaps")),
            "Service" => ("v1", Coll::new("", "services")),
            _ => ("v1", Coll::new("", "")),
        };
        let uid = self
            .get(&resource, ns, involved_name)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string))
            .unwrap_or_default();
        let component = match (involved_kind, reason) {
            ("Pod", "Scheduled" | "FailedScheduling") => "default-scheduler",
            ("Pod", _) => "kubelet",
            ("Job", _) => "job-controller",
            _ => "k6-operator",
        };
        let ts = now();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{involved_name}.{:016x}", fastrand::u64(..))},
            "involvedObject": {"kind": involved_kind, "name": involved_name, "namespace": ns,
                               "uid": uid, "apiVersion": api_version},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": ts, "lastTimestamp": ts,
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": "",
        });
        self.create(&events, ns, event)
            .expect("an event about a valid object is valid")
    }
}
