//! Regression statistics (issue 13), pure: no I/O, no clock, no database.
//!
//! - [`series`]: which runs belong together ([`series_key`]) and where a series starts
//!   ([`series_starts`]).
//! - [`gate`]: a new run's metric against the last K accepted runs of its series
//!   ([`gate_run`] → [`GateResult`]: regressed, improved, unchanged, inconclusive).
//! - [`changepoint`]: shifts over a series' history, E-divisive means with a t-test as
//!   Hunter/Apache Otava do ([`change_points`], or a [`Detector`] kept up to date run by run).
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
