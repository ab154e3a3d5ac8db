//! Scenarios: what a client does to the app, as a list of requests. Read from `.http` files
//! (the VS Code REST Client / JetBrains HTTP Client format, see [`http_file`]) or from HAR
//! files exported by a browser ([`har`]), then checked as a whole before anything starts
//! ([`check`]): every variable must be defined before it is used, and every absolute URL must
//! point at the app under test. Included files are read only when they are regular files of a
//! bounded size ([`include`]).
//!
//! A scenario only describes requests; `resolve` turns one into bytes to send, within one
//! replay.

pub mod check;
pub mod har;
pub mod http_file;
pub mod include;
#[cfg(test)]
mod properties;
pub mod template;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

pub use template::{BodyPath, Expr, Piece, Side, Source, System, Template};

use crate::error::ScenarioError;
use crate::jsonpath::JsonPath;

/// One scenario file, parsed.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file, as the user named it (for messages).
    pub path: PathBuf,
    /// File variables (`@name = value`), in file order.
    pub variables: Vec<Variable>,
    /// The requests, in order.
    pub requests: Vec<RequestSpec>,
    /// What was left out of the file, to tell the user (HAR entries to other hosts).
    pub notes: Vec<String>,
}

/// `@name = value`.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub value: Template,
    pub line: usize,
}

/// One request of a scenario, before variables are substituted.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// 1-based position in the scenario.
    pub index: usize,
    /// Where it starts: the request line of a `.http` file, the entry number of a HAR file.
    pub line: usize,
    /// `# @name NAME`: later requests refer to its request and response by this name.
    pub name: Option<String>,
    /// Text after `###` (JetBrains' request title), for display.
    pub title: Option<String>,
    pub method: String,
    /// The URL or path, with query continuation lines appended.
    pub target: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Vec<BodyLine>,
    /// `# @capture` directives: values taken from the response for later requests.
    pub captures: Vec<Capture>,
    /// `# @until`: re-send until the answer meets a condition (for work done in the background).
    pub until: Option<Until>,
    /// `# @timeout`: how long to wait for the answer (and for `@until`).
    pub timeout: Option<Duration>,
    /// `# @no-cookie-jar`: send no cookies and keep none from the answer.
    pub no_cookie_jar: bool,
}

impl RequestSpec {
    /// `GET /cart` as written (variables not substituted), for messages and reports.
    pub fn summary(&self) -> String {
        format!("{} {}", self.method, self.target.display())
    }

    /// The value of header `name` as written, if the request sets it.
    pub fn header(&self, name: &str) -> Option<&Template> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// One line of a request body.
#[derive(Debug, Clone)]
pub enum BodyLine {
    /// Text, with `{{…}}` substituted.
    Text(Template),
    /// `< ./file` (sent as is) or `<@ ./file` (with `{{…}}` substituted in it).
    Include {
        path: PathBuf,
        substitute: bool,
        line: usize,
    },
}

/// `# @capture NAME = body REGEX` and its siblings.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub from: CaptureFrom,
    pub line: usize,
}

/// Where a capture looks.
#[derive(Debug, Clone)]
pub enum CaptureFrom {
    /// The body: the first group of the first match (the whole match without a group).
    Body(Regex),
    /// A response header; with a regex, its first group (or whole match).
    Header(String, Option<Regex>),
    /// A JSON body, at a path.
    Json(JsonPath),
}

/// `# @until …`: the condition an answer must meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    Status(u16),
    Contains(String),
    Lacks(String),
}

impl Until {
    pub fn describe(&self) -> String {
        match self {
            Until::Status(status) => format!("status {status}"),
            Until::Contains(text) => format!("a body containing `{text}`"),
            Until::Lacks(text) => format!("a body without `{text}`"),
        }
    }
}

/// Reads a scenario: a `.har` file as HAR, anything else as an `.http` file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(text).map_err(|_| ScenarioError::NotText {
        path: path.to_path_buf(),
    })?;
    let is_har = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("har"));
    if is_har {
        har::parse(path, &text)
    } else {
        http_file::parse(path, &text)
    }
}
