//! `shoal verify`: proves that an app is stateless, by differential replay. A scenario (an
//! `.http` file or a HAR file) is replayed twice against a formation with one long-lived
//! `web` instance — the baseline, whose two runs tell which parts of the answers change by
//! themselves — and then in rounds against a formation of several `web` instances (and two
//! of every other type), each request sent to another instance than the one before and
//! instances of every type restarted in between — workers also while a job runs — every
//! instance in a private copy of the app directory. Every answer that differs from the
//! baseline, beyond the learned noise, is a divergence: the app kept state in a process.
//!
//! This crate talks to the supervisor (through its handle and snapshots) and to the instances
//! (over HTTP); the `shoal` binary only parses the flags, draws the progress and writes the
//! reports.
//!
//! # Layout
//! - [`scenario`]: `.http` and HAR parsing, and the checks made before anything starts.
//! - [`jsonpath`]: the JSON paths of captures and `{{name.response.body.$.…}}`.
//! - `resolve`: one client's replay state: variables, captures, named requests, cookies.
//! - `cookies`, `client`: the cookie jar and the HTTP client.
//! - `observe`: an answer as compared, normalised (the instance's identity, generated values).
//! - `tokens`, `lines`, `json_diff`, [`compare`]: noise learning and comparison.
//! - [`schedule`]: the seeded plan of the shuffled rounds.
//! - `copies`, `formation`: private copies of the app (copy-on-write where the kernel allows,
//!   else plain), and one formation per run.
//! - [`isolate`]: the same private copies for `shoal start --isolate`, the mount namespace
//!   and the overlay mounts of both, and the report of each instance's first writes.
//! - `shown`: file names the app chose, escaped for a line of text.
//! - [`run`]: the whole run; [`reading`]: what a divergence most likely means.
//! - [`report`]: the outcome as text, JSON and JUnit XML.

mod client;
mod clock;
pub mod compare;
mod cookies;
mod copies;
pub mod error;
mod formation;
pub mod isolate;
mod json_diff;
pub mod jsonpath;
mod lines;
pub mod observe;
pub mod reading;
pub mod report;
mod resolve;
pub mod run;
pub mod scenario;
pub mod schedule;
mod shown;
mod tokens;

pub use copies::{CopiesMade, LocalWrite};
pub use error::{ScenarioError, VerifyError};
pub use report::{Report, Verdict};
pub use run::{Event, Options, Phase, Progress, verify};
