//! What k6 will run: the peak number of VUs and the planned duration, from the spec's `load`
//! (k6 gets it as `--vus`, `--duration`, `--stage`) over the script's own `options`, put
//! together the way k6 does: a shortcut set on the command line replaces the script's
//! scenarios; `iterations` comes before `duration`, which comes before `stages`, which come
//! before `scenarios`; scenarios run side by side from their `startTime`.
//!
//! Iteration-based executors without a `maxDuration` have no planned duration here: they end
//! when their iterations are done (k6 stops them after 10 minutes, and the spec's `timeout`
//! stops the run).

use super::value::{Const, Field, Obj};
use super::ScriptOptions;
use crate::spec::duration::{format_duration, parse_duration};
use crate::spec::model::Load;
use std::time::Duration;

/// The peak VUs and planned duration, and where in the entry script each comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub vus: u64,
    /// Byte offset in the entry script; `None` when it comes from the spec or a default.
    pub vus_at: Option<usize>,
    /// What gives that many VUs, for messages.
    pub vus_why: String,
    pub duration: Option<Duration>,
    pub duration_at: Option<usize>,
    pub duration_why: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Known(Extent),
    /// Something that decides it is not known before the run.
    Unknown {
        at: Option<usize>,
        why: String,
    },
}

/// Why the output of `k6 inspect --execution-requirements` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("k6 inspect printed no JSON object ({0})")]
    NotJson(String),
    #[error("k6 inspect printed no `{0}`")]
    Missing(&'static str),
    #[error("k6 inspect's options could not be read: {0}")]
    Options(String),
}

/// k6's graceful stop, and the longest an iteration-based executor runs, by default.
const GRACEFUL_STOP: Duration = Duration::from_secs(30);
const ITERATIONS_MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq)]
enum V<T> {
    Unset,
    Set(T, Option<usize>),
    Unknown(Option<usize>, String),
}

impl<T> V<T> {
    fn or(self, other: V<T>) -> V<T> {
        match self {
            V::Unset => other,
            v => v,
        }
    }
}

/// Where something not known before the run is (if anywhere in particular), and why.
type Unknowable = (Option<usize>, String);

/// Fields of a k6 options object (the script's, or one scenario's).
struct Reader<'c> {
    obj: Option<&'c Obj>,
    /// Why nothing is known, when nothing is.
    unknown: Option<Unknowable>,
    what: String,
}

impl<'c> Reader<'c> {
    fn field(&self, key: &str) -> Result<Option<(&'c Const, usize)>, Unknowable> {
        if let Some(u) = &self.unknown {
            return Err(u.clone());
        }
        match self.obj.map_or(Field::Unset, |o| o.get(key)) {
            Field::Unset => Ok(None),
            Field::Set(c, at) => Ok(Some((c, at))),
            Field::Unknown(at) => Err((
                Some(at),
                format!(
                    "{}: `{key}` may be set by a spread or computed key",
                    self.what
                ),
            )),
        }
    }

    fn count(&self, key: &str) -> V<u64> {
        match self.field(key) {
            Err((at, why)) => V::Unknown(at, why),
            Ok(None) => V::Unset,
            Ok(Some((c, at))) => match c {
                Const::Num(n) if n.is_finite() && *n >= 0.0 => V::Set(n.ceil() as u64, Some(at)),
                Const::Null | Const::Undefined => V::Unset,
                _ => V::Unknown(
                    Some(at),
                    format!(
                        "{}: `{key}` is not a number known before the run",
                        self.what
                    ),
                ),
            },
        }
    }

    fn duration(&self, key: &str) -> V<Duration> {
        match self.field(key) {
            Err((at, why)) => V::Unknown(at, why),
            Ok(None) => V::Unset,
            Ok(Some((c, at))) => match duration_of(c) {
                Some(Some(d)) => V::Set(d, Some(at)),
                Some(None) => V::Unset,
                None => V::Unknown(
                    Some(at),
                    format!(
                        "{}: `{key}` is not a duration known before the run",
                        self.what
                    ),
                ),
            },
        }
    }

    fn stages(&self, key: &str) -> V<Vec<(Duration, u64, usize)>> {
        match self.field(key) {
            Err((at, why)) => V::Unknown(at, why),
            Ok(None) => V::Unset,
            Ok(Some((Const::Null | Const::Undefined, _))) => V::Unset,
            Ok(Some((Const::Arr(items), at))) => {
                let mut out = Vec::new();
                for item in items {
                    let Const::Obj(o) = &item.value else {
                        return V::Unknown(
                            Some(item.at),
                            format!("{}: a stage is not an object literal", self.what),
                        );
                    };
                    let r = Reader {
                        obj: Some(o),
                        unknown: None,
                        what: format!("{}: a stage", self.what),
                    };
                    let d = match r.duration("duration") {
                        V::Set(d, _) => d,
                        V::Unset => Duration::ZERO,
                        V::Unknown(at, why) => return V::Unknown(at, why),
                    };
                    let t = match r.count("target") {
                        V::Set(t, _) => t,
                        V::Unset => 0,
                        V::Unknown(at, why) => return V::Unknown(at, why),
                    };
                    out.push((d, t, item.at));
                }
                if out.is_empty() {
                    V::Unset
                } else {
                    V::Set(out, Some(at))
                }
            }
            Ok(Some((_, at))) => V::Unknown(
                Some(at),
                format!("{}: `{key}` is not an array literal", self.what),
            ),
        }
    }
}

/// A k6 duration: a string (`1m30s`) or a number of milliseconds. `Some(None)`: not set.
fn duration_of(c: &Const) -> Option<Option<Duration>> {
    match c {
        Const::Num(n) if n.is_finite() && *n >= 0.0 => {
            Some(Some(Duration::from_secs_f64((n / 1000.0).min(1e10))))
        }
        Const::Null | Const::Undefined => Some(None),
        Const::Str(_) => {
            let s = c.as_str()?;
            // Go's units below milliseconds round up to one.
            let t = s.trim();
            if let Some(v) = ["ns", "us", "µs"].iter().find_map(|u| t.strip_suffix(u)) {
                return v
                    .parse::<f64>()
                    .ok()
                    .map(|_| Some(Duration::from_millis(1)));
            }
            parse_duration(t).ok().map(Some)
        }
        _ => None,
    }
}

fn unknown<T>(v: &V<T>) -> Option<Plan> {
    match v {
        V::Unknown(at, why) => Some(Plan::Unknown {
            at: *at,
            why: why.clone(),
        }),
        _ => None,
    }
}

fn at<T>(v: &V<T>) -> Option<usize> {
    match v {
        V::Set(_, at) | V::Unknown(at, _) => *at,
        V::Unset => None,
    }
}

/// What k6 will run for a test with `load` (or none) and a script with `options`.
pub fn plan(script: &ScriptOptions, load: Option<&Load>) -> Plan {
    let reader = match script {
        ScriptOptions::Absent => Reader {
            obj: None,
            unknown: None,
            what: "options".into(),
        },
        ScriptOptions::Literal(obj) => Reader {
            obj: Some(obj),
            unknown: None,
            what: "options".into(),
        },
        ScriptOptions::Unknown { at, why } => Reader {
            obj: None,
            unknown: Some((Some(*at), why.clone())),
            what: "options".into(),
        },
    };
    let load_vus = load
        .and_then(|l| l.vus)
        .map_or(V::Unset, |v| V::Set(u64::from(v), None));
    let load_duration = load
        .and_then(|l| l.duration)
        .map_or(V::Unset, |d| V::Set(d.0, None));
    let load_stages = match load {
        Some(l) if !l.stages.is_empty() => V::Set(
            l.stages
                .iter()
                .map(|s| (s.duration.0, u64::from(s.target), 0))
                .collect::<Vec<_>>(),
            None,
        ),
        _ => V::Unset,
    };
    let cli_shortcut = !matches!(load_duration, V::Unset) || !matches!(load_stages, V::Unset);
    let vus = load_vus.or(reader.count("vus"));
    let duration = load_duration.or(reader.duration("duration"));
    let stages = load_stages.or(reader.stages("stages"));
    let iterations = reader.count("iterations");
    // The VUs of a shortcut (default one), once `vus` is known not to be unknown.
    let vus_or_one = |what: &str| match &vus {
        V::Set(v, at) => (*v, *at, format!("{what} with {v} VUs")),
        _ => (1, None, format!("{what} with 1 VU")),
    };
    if let Some(p) = unknown(&iterations) {
        return p;
    }
    if let V::Set(n, _) = iterations {
        if let Some(p) = unknown(&vus) {
            return p;
        }
        let (v, v_at, why) = vus_or_one(&format!("{n} shared iterations"));
        if let Some(p) = unknown(&duration) {
            return p;
        }
        let d = match &duration {
            V::Set(d, _) => Some(*d),
            _ => None,
        };
        return Plan::Known(Extent {
            vus: v,
            vus_at: v_at,
            vus_why: why.clone(),
            duration: d,
            duration_at: at(&duration),
            duration_why: why,
        });
    }
    if let Some(p) = unknown(&duration) {
        return p;
    }
    if let V::Set(d, d_at) = duration {
        if let Some(p) = unknown(&vus) {
            return p;
        }
        let (v, v_at, why) = vus_or_one(&format!("{} of constant load", format_duration(d)));
        return Plan::Known(Extent {
            vus: v,
            vus_at: v_at,
            vus_why: why.clone(),
            duration: Some(d),
            duration_at: d_at,
            duration_why: why,
        });
    }
    if let Some(p) = unknown(&stages) {
        return p;
    }
    if let V::Set(st, st_at) = &stages {
        if let Some(p) = unknown(&vus) {
            return p;
        }
        let start = match &vus {
            V::Set(v, _) => *v,
            _ => 1,
        };
        let (peak_stage, peak_at) = st
            .iter()
            .map(|s| (s.1, s.2))
            .max_by_key(|s| s.0)
            .unwrap_or((0, 0));
        let total: Duration = st.iter().map(|s| s.0).sum();
        let (vus_n, vus_at, vus_why) = if start > peak_stage {
            (
                start,
                at(&vus),
                format!("stages starting at {start} VUs (`vus`)"),
            )
        } else {
            (
                peak_stage,
                st_at.map(|_| peak_at),
                format!("a stage ramping to {peak_stage} VUs"),
            )
        };
        return Plan::Known(Extent {
            vus: vus_n,
            vus_at,
            vus_why,
            duration: Some(total),
            duration_at: *st_at,
            duration_why: format!("stages lasting {}", format_duration(total)),
        });
    }
    if !cli_shortcut {
        match reader.field("scenarios") {
            Err((at, why)) => return Plan::Unknown { at, why },
            Ok(Some((Const::Null | Const::Undefined, _))) | Ok(None) => {}
            Ok(Some((Const::Obj(scenarios), at))) => return plan_scenarios(scenarios, at),
            Ok(Some((_, at))) => {
                return Plan::Unknown {
                    at: Some(at),
                    why: "`scenarios` is not an object literal".into(),
                }
            }
        }
    }
    // Nothing but (maybe) `vus`: k6 runs one iteration on one VU and warns that `vus` alone
    // is ignored. Counted all the same: a `duration` added on the command line or in the
    // environment makes it real.
    match &vus {
        V::Unknown(at, why) => Plan::Unknown {
            at: *at,
            why: why.clone(),
        },
        V::Set(v, v_at) => Plan::Known(Extent {
            vus: *v,
            vus_at: *v_at,
            vus_why: format!("`vus: {v}`"),
            duration: None,
            duration_at: None,
            duration_why: String::new(),
        }),
        V::Unset => Plan::Known(Extent {
            vus: 1,
            vus_at: None,
            vus_why: "k6's default of one VU".into(),
            duration: None,
            duration_at: None,
            duration_why: String::new(),
        }),
    }
}

struct Scenario {
    name: String,
    vus: u64,
    vus_at: usize,
    start: Duration,
    planned: Option<Duration>,
    planned_at: usize,
    graceful: Duration,
    executor: String,
}

fn plan_scenarios(scenarios: &Obj, scenarios_at: usize) -> Plan {
    if let Some((_, at)) = scenarios.open {
        return Plan::Unknown {
            at: Some(at),
            why: "`scenarios` holds a spread or a computed name".into(),
        };
    }
    let mut list = Vec::new();
    for p in &scenarios.props {
        let Const::Obj(o) = &p.value else {
            return Plan::Unknown {
                at: Some(p.at),
                why: format!("scenario `{}` is not an object literal", p.key),
            };
        };
        match scenario(&p.key, o, p.at) {
            Ok(s) => list.push(s),
            Err(plan) => return plan,
        }
    }
    if list.is_empty() {
        return Plan::Known(Extent {
            vus: 0,
            vus_at: None,
            vus_why: "no scenario".into(),
            duration: None,
            duration_at: None,
            duration_why: String::new(),
        });
    }
    // The most VUs at once: scenarios overlap from their start to the end of their graceful
    // stop (an iteration-based one without maxDuration counts for k6's 10 minutes).
    let end = |s: &Scenario| s.start + s.planned.unwrap_or(ITERATIONS_MAX_DURATION) + s.graceful;
    let mut best: (u64, Vec<&Scenario>) = (0, Vec::new());
    for s in &list {
        let together: Vec<&Scenario> = list
            .iter()
            .filter(|o| o.start <= s.start && s.start < end(o))
            .collect();
        let sum = together.iter().map(|o| o.vus).sum::<u64>();
        if sum > best.0 {
            best = (sum, together);
        }
    }
    let (vus_at, vus_why) = match best.1.as_slice() {
        [one] => (
            one.vus_at,
            format!(
                "scenario `{}` ({}) with {} VUs",
                one.name, one.executor, one.vus
            ),
        ),
        many => (
            scenarios_at,
            format!(
                "scenarios {} running at once",
                many.iter()
                    .map(|s| format!("`{}` ({} VUs)", s.name, s.vus))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    let longest = list
        .iter()
        .filter_map(|s| s.planned.map(|p| (s.start + p, s)))
        .max_by_key(|(d, _)| *d);
    Plan::Known(Extent {
        vus: best.0,
        vus_at: Some(vus_at),
        vus_why,
        duration: longest.map(|(d, _)| d),
        duration_at: longest.map(|(_, s)| s.planned_at),
        duration_why: longest.map_or(String::new(), |(d, s)| {
            format!(
                "scenario `{}` ({}) ends after {}",
                s.name,
                s.executor,
                format_duration(d)
            )
        }),
    })
}

fn scenario(name: &str, o: &Obj, at: usize) -> Result<Scenario, Plan> {
    let r = Reader {
        obj: Some(o),
        unknown: None,
        what: format!("scenario `{name}`"),
    };
    let known = |v: V<u64>, default: u64| -> Result<(u64, usize), Plan> {
        match v {
            V::Set(n, a) => Ok((n, a.unwrap_or(at))),
            V::Unset => Ok((default, at)),
            V::Unknown(a, why) => Err(Plan::Unknown { at: a, why }),
        }
    };
    let known_d =
        |v: V<Duration>, default: Option<Duration>| -> Result<(Option<Duration>, usize), Plan> {
            match v {
                V::Set(d, a) => Ok((Some(d), a.unwrap_or(at))),
                V::Unset => Ok((default, at)),
                V::Unknown(a, why) => Err(Plan::Unknown { at: a, why }),
            }
        };
    let executor = match r.field("executor") {
        Ok(Some((c, _))) => c.as_str(),
        Ok(None) => None,
        Err((a, why)) => return Err(Plan::Unknown { at: a, why }),
    };
    let Some(executor) = executor else {
        return Err(Plan::Unknown {
            at: Some(at),
            why: format!("scenario `{name}` names no executor known before the run"),
        });
    };
    let (start, _) = known_d(r.duration("startTime"), Some(Duration::ZERO))?;
    let (graceful, _) = known_d(r.duration("gracefulStop"), Some(GRACEFUL_STOP))?;
    let ((vus, vus_at), (planned, planned_at)) = match executor.as_str() {
        "shared-iterations" | "per-vu-iterations" => (
            known(r.count("vus"), 1)?,
            known_d(r.duration("maxDuration"), None)?,
        ),
        "constant-vus" => (
            known(r.count("vus"), 1)?,
            known_d(r.duration("duration"), None)?,
        ),
        "ramping-vus" => {
            let (start_vus, start_at) = known(r.count("startVUs"), 1)?;
            let (peak, peak_at, total, st_at) = stages_extent(&r)?;
            let vus = if start_vus >= peak {
                (start_vus, start_at)
            } else {
                (peak, peak_at)
            };
            (vus, (Some(total), st_at))
        }
        "constant-arrival-rate" | "ramping-arrival-rate" => {
            let pre = known(r.count("preAllocatedVUs"), 0)?;
            let max = match r.count("maxVUs") {
                V::Unset => pre,
                v => known(v, 0)?,
            };
            let vus = if max.0 >= pre.0 { max } else { pre };
            let planned = if executor == "constant-arrival-rate" {
                known_d(r.duration("duration"), None)?
            } else {
                let (_, _, total, st_at) = stages_extent(&r)?;
                (Some(total), st_at)
            };
            (vus, planned)
        }
        "externally-controlled" => {
            let v = known(r.count("vus"), 0)?;
            let max = match r.count("maxVUs") {
                V::Unset => v,
                m => known(m, 0)?,
            };
            let vus = if max.0 >= v.0 { max } else { v };
            let (d, d_at) = known_d(r.duration("duration"), None)?;
            if d.is_none_or(|d| d.is_zero()) {
                return Err(Plan::Unknown {
                    at: Some(d_at),
                    why: format!(
                        "scenario `{name}` (externally-controlled) runs until it is stopped (no `duration`)"
                    ),
                });
            }
            (vus, (d, d_at))
        }
        other => {
            return Err(Plan::Unknown {
                at: Some(at),
                why: format!("scenario `{name}` uses executor `{other}`, which k6 does not have"),
            })
        }
    };
    Ok(Scenario {
        name: name.to_string(),
        vus,
        vus_at,
        start: start.unwrap_or_default(),
        planned: planned.map(|p| p.max(Duration::ZERO)),
        planned_at,
        graceful: graceful.unwrap_or(GRACEFUL_STOP),
        executor,
    })
}

/// Peak target, where, total duration and where of a scenario's `stages`.
fn stages_extent(r: &Reader) -> Result<(u64, usize, Duration, usize), Plan> {
    match r.stages("stages") {
        V::Set(st, at) => {
            let (peak, peak_at) = st
                .iter()
                .map(|s| (s.1, s.2))
                .max_by_key(|s| s.0)
                .unwrap_or((0, 0));
            let total = st.iter().map(|s| s.0).sum();
            Ok((peak, peak_at, total, at.unwrap_or(peak_at)))
        }
        V::Unset => Err(Plan::Unknown {
            at: None,
            why: format!("{} has no `stages`", r.what),
        }),
        V::Unknown(at, why) => Err(Plan::Unknown { at, why }),
    }
}

/// The extent from `k6 inspect --execution-requirements` output: the options k6 put together
/// (read the same way as a script's) and its own `maxVUs`, whichever is higher.
pub fn from_inspect(stdout: &str) -> Result<Extent, InspectError> {
    let start = stdout
        .find('{')
        .ok_or_else(|| InspectError::NotJson("no `{`".into()))?;
    let end = stdout
        .rfind('}')
        .ok_or_else(|| InspectError::NotJson("no `}`".into()))?;
    let json: serde_json::Value = serde_json::from_str(&stdout[start..=end.max(start)])
        .map_err(|e| InspectError::NotJson(e.to_string()))?;
    let max_vus = json
        .get("maxVUs")
        .and_then(serde_json::Value::as_u64)
        .ok_or(InspectError::Missing("maxVUs"))?;
    let Const::Obj(obj) = from_json(&json) else {
        return Err(InspectError::NotJson("not an object".into()));
    };
    let mut extent = match plan(&ScriptOptions::Literal(obj), None) {
        Plan::Known(e) => e,
        Plan::Unknown { why, .. } => return Err(InspectError::Options(why)),
    };
    if max_vus > extent.vus {
        extent.vus = max_vus;
        extent.vus_why = format!("k6's own count of {max_vus} VUs");
    }
    extent.vus_at = None;
    extent.duration_at = None;
    Ok(extent)
}

fn from_json(v: &serde_json::Value) -> Const {
    use serde_json::Value as J;
    match v {
        J::Null => Const::Null,
        J::Bool(b) => Const::Bool(*b),
        J::Number(n) => n.as_f64().map_or(Const::Unknown, Const::Num),
        J::String(s) => Const::text(s.as_str(), None),
        J::Array(a) => Const::Arr(
            a.iter()
                .map(|x| super::value::Item {
                    value: from_json(x),
                    at: 0,
                })
                .collect(),
        ),
        J::Object(m) => Const::Obj(Obj {
            props: m
                .iter()
                .map(|(k, x)| super::value::Prop {
                    key: k.clone(),
                    value: from_json(x),
                    at: 0,
                })
                .collect(),
            open: None,
            at: 0,
        }),
    }
}
