//! The outcome of a verify run, and its three renderings: text for people ([`text`]), JSON
//! (`--json`, this module's types serialised, stable within `version`) and JUnit XML
//! (`--junit`, [`junit`]) for CI.

pub mod junit;
pub mod text;

use serde::Serialize;

use crate::compare::Difference;
use crate::copies::{CopiesMade, LocalWrite};
use crate::reading::Cause;
use crate::schedule::{Restart, Step};

/// Version of the JSON layout; bumped on any change that is not an added field.
pub const JSON_VERSION: u32 = 1;

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every compared answer matched the baseline.
    Stateless,
    /// At least one answer depended on which process served it, or on a restart.
    Stateful,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub verdict: Verdict,
    pub seed: u64,
    pub rounds: u32,
    /// `web` instances in the shuffled rounds.
    pub web_instances: u32,
    /// The shuffled rounds' formation: every process type that ran, with its instances.
    pub formation: Vec<TypeCount>,
    /// The address requests carry (`Host`), as if they came through the router.
    pub public_address: String,
    /// How the private copies of the app directory were made: copy-on-write, or plain
    /// copies and why.
    pub copies: CopiesMade,
    pub elapsed_secs: f64,
    /// Instance restarts in the shuffled rounds.
    pub restarts: usize,
    /// Of those, restarts of instances of types other than `web` (workers).
    pub worker_restarts: usize,
    /// Of those, restarts while a request polled with `# @until` (while a job ran).
    pub restarts_while_polling: usize,
    pub scenarios: Vec<ScenarioReport>,
    /// Each shuffled round's plan: which `web` instance served each request, and which
    /// instance of which type was restarted before it or while it polled.
    pub schedule: Vec<Vec<Step>>,
    /// Every restart the shuffled rounds made, in order, with when it was made.
    pub restarts_made: Vec<RestartMade>,
    /// Files instances created, changed or deleted in their working directories.
    pub local_writes: Vec<LocalWrite>,
    /// Files instances kept in their scratch directories (`SHOAL_SCRATCH`, `TMPDIR`), seen
    /// between requests and when each start ended, before the directory was emptied.
    pub scratch_writes: Vec<LocalWrite>,
    /// Things the user should know that are not divergences.
    pub notes: Vec<String>,
}

/// A restart a shuffled round made.
#[derive(Debug, Clone, Serialize)]
pub struct RestartMade {
    pub round: u32,
    /// The request before which it was made, or while which it polled: its 1-based position
    /// in the round, across scenarios (the round's `schedule` step before it, plus one).
    pub request: usize,
    #[serde(flatten)]
    pub restart: Restart,
    /// Made while the request polled with `# @until` (while a job ran): after this many tries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_try: Option<u32>,
    /// When the signal was sent, in milliseconds since the Unix epoch: to line up with what
    /// the app and its backing services logged.
    pub at_ms: u64,
}

/// A process type and how many instances of it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub kind: String,
    pub instances: u32,
}

/// One scenario file.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub file: String,
    pub requests: Vec<RequestReport>,
}

/// One request of a scenario, and what became of it in every round.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    /// 1-based position in the scenario.
    pub index: usize,
    /// Its line in the file (a HAR file: its entry number).
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub method: String,
    /// The URL as written.
    pub target: String,
    /// The status of the first baseline answer.
    pub baseline_status: Option<u16>,
    /// Why the request was not compared, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstable: Option<String>,
    /// The parts of its answer learned as noise.
    pub noise: Vec<String>,
    pub divergences: Vec<Divergence>,
}

/// One round in which a request's answer differed from the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub round: u32,
    /// The path as sent in that round.
    pub path: String,
    pub served_by: String,
    /// What happened before it: which instances served the client's earlier requests, and
    /// restarts.
    pub before: Vec<String>,
    pub differences: Vec<Difference>,
    pub cause: Cause,
    pub reading: String,
    /// The first request of the same client that diverged earlier in the round: this one is
    /// probably a consequence of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<usize>,
}

impl Report {
    /// How many requests diverged in at least one round, and how many were compared.
    pub fn counts(&self) -> (usize, usize, usize) {
        let requests = self.scenarios.iter().flat_map(|s| &s.requests);
        let divergent = requests
            .clone()
            .filter(|r| !r.divergences.is_empty())
            .count();
        let unstable = requests.clone().filter(|r| r.unstable.is_some()).count();
        (divergent, unstable, requests.count())
    }
}

/// `text` cut to at most `max` characters, with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
