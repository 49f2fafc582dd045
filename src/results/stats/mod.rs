//! Regression statistics (issue 13), pure: no I/O, no clock, no database.
//!
//! - [`series`]: which runs belong together ([`series_key`]) and where a series starts
//!   ([`series_starts`]).
//! - [`gate`]: a new run's metric against the last K accepted runs of its series
//!   ([`gate_run`] → [`GateResult`]: regressed, improved, unchanged, inconclusive).
//! - [`changepoint`]: shifts over a series' history, E-divisive means with a t-test as
//!   Hunter/Apache Otava do ([`change_points`], or a [`Detector`] kept up to date run by run).
//!
//! Use, per series and tracked metric (p50/p95/p99 of `http_req_duration` and custom Trends
//! with [`MetricRule::latency`], `http_req_failed` with [`MetricRule::error_rate`],
//! `http_reqs` with [`MetricRule::request_rate`], `checks` with [`MetricRule::checks_rate`]):
//!
//! ```ignore
//! let key = series_key(&SeriesInputs { test, content_digest, load, parallelism, .. });
//! // The gate, when a run ends: earlier runs of the same key whose `joinsBaseline` was true
//! // (or acknowledged), oldest first; `UpperBound` for an `approximate` percentile.
//! let verdict = gate_run(&Observation { run_id, value, bound }, &accepted, &rule, &config)?;
//! // Change points after every run: the series' values oldest first (one series only —
//! // split the history at `series_starts`), kept in a `Detector` or computed whole.
//! let points = change_points(&values, &ChangePointConfig::default())?;
//! ```
//!
//! The distributions (`dist`) are written here: Student's t through the regularized
//! incomplete beta, the normal through the incomplete gamma.

pub mod changepoint;
mod dist;
mod edivisive;
pub mod gate;
mod moments;
mod sample;
pub mod series;
mod significance;

pub use changepoint::{change_points, ChangePoint, ChangePointConfig, ChangePointError, Detector};
pub use gate::{
    gate, gate_run, Direction, EffectUnit, ErrorBound, GateConfig, GateError, GateResult,
    InconclusiveReason, Method, MetricRule, Observation, Scale, Verdict,
};
pub use series::{
    series_key, series_starts, LoadProfile, LoadStage, SeriesInputs, SeriesKey, SeriesStart,
};

/// Student's t two-sided tail and the normal's, for callers that report their own tests.
pub use dist::{normal_two_sided, t_two_sided};
