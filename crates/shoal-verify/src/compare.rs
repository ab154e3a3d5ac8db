//! Learning noise from the two baseline answers to one request, and comparing a shuffled
//! answer with the first baseline answer, beyond that noise.
//!
//! Compared: the status; `Location`; `Content-Type`; the names of the cookies set (their
//! values are session ids and change anyway); the body (see [`crate::lines`] and
//! [`crate::json_diff`]). When the status differs, the bodies are answers to different
//! situations and are not compared further.
//!
//! A request whose two baseline answers differ in status (or of which one got no answer) is
//! *unstable*: it is not compared, and the report says so — usually the scenario is not
//! repeatable (it signs up the same user twice, say).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::json_diff::JsonNoise;
use crate::lines::{Hunk, LineTemplate};
use crate::observe::{Body, Observation};

/// The most differences listed for one answer.
const MAX_DIFFERENCES: usize = 12;

/// What changes by itself in the answers to one request.
#[derive(Debug, Clone)]
pub struct Noise {
    /// Why the request is not compared, when its baseline answers disagree on the status.
    pub unstable: Option<String>,
    location: Option<LineTemplate>,
    content_type: bool,
    cookies: BTreeSet<String>,
    body: BodyNoise,
}

#[derive(Debug, Clone)]
enum BodyNoise {
    Json(JsonNoise),
    Text(LineTemplate),
    /// The baseline bodies differ in kind, or are binary and differ: not compared.
    Any,
    Same,
}

/// One way a shuffled answer differs from the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `status`, `Location`, `Content-Type`, `Set-Cookie`, `answer`, `body`, or `body $.path`.
    pub what: String,
    pub baseline: String,
    pub shuffled: String,
    /// For text bodies: `-` baseline lines and `+` shuffled lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
}

impl Difference {
    fn new(what: &str, baseline: impl Into<String>, shuffled: impl Into<String>) -> Self {
        Difference {
            what: what.to_owned(),
            baseline: baseline.into(),
            shuffled: shuffled.into(),
            diff: Vec::new(),
        }
    }
}

impl Noise {
    /// Learns from the two baseline answers to one request.
    pub fn learn(first: &Observation, second: &Observation) -> Noise {
        let unstable = match (first.status, second.status) {
            (Some(a), Some(b)) if a != b => Some(format!(
                "its two baseline answers differ in status ({a} and {b})"
            )),
            (Some(_), Some(_)) => None,
            _ => Some(format!(
                "it got no answer in a baseline run: {}",
                first
                    .error
                    .as_deref()
                    .or(second.error.as_deref())
                    .unwrap_or("no answer")
            )),
        };
        let location = match (&first.location, &second.location) {
            (Some(a), Some(b)) => Some(LineTemplate::learn(
                std::slice::from_ref(a),
                std::slice::from_ref(b),
            )),
            _ => None,
        };
        let cookies = first
            .cookies
            .symmetric_difference(&second.cookies)
            .cloned()
            .collect();
        let body = match (&first.body, &second.body) {
            (a, b) if a == b => BodyNoise::Same,
            (Body::Json(a), Body::Json(b)) => BodyNoise::Json(JsonNoise::learn(a, b)),
            (Body::Text(a), Body::Text(b)) => BodyNoise::Text(LineTemplate::learn(a, b)),
            (Body::Empty, Body::Text(b)) => BodyNoise::Text(LineTemplate::learn(&[], b)),
            (Body::Text(a), Body::Empty) => BodyNoise::Text(LineTemplate::learn(a, &[])),
            _ => BodyNoise::Any,
        };
        Noise {
            unstable,
            location,
            content_type: first.content_type != second.content_type,
            cookies,
            body,
        }
    }

    /// What was learned, in words, for the report.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(template) = &self.location
            && !template.noisy_lines().is_empty()
        {
            out.push("Location".to_owned());
        }
        if self.content_type {
            out.push("Content-Type".to_owned());
        }
        for cookie in &self.cookies {
            out.push(format!("cookie `{cookie}`"));
        }
        match &self.body {
            BodyNoise::Json(noise) => out.extend(noise.paths().map(|p| format!("body {p}"))),
            BodyNoise::Text(template) => {
                for (line, text) in template.noisy_lines() {
                    out.push(format!(
                        "body line {line}: {}",
                        crate::report::clip(text.trim(), 80)
                    ));
                }
                if template.has_gaps() {
                    out.push("body: lines added in places".to_owned());
                }
            }
            BodyNoise::Any => out.push("body (differs as a whole)".to_owned()),
            BodyNoise::Same => {}
        }
        out
    }

    /// How `shuffled` differs from `baseline` (the first baseline answer), beyond the noise.
    pub fn compare(&self, baseline: &Observation, shuffled: &Observation) -> Vec<Difference> {
        let mut found = Vec::new();
        if self.unstable.is_some() {
            return found;
        }
        let (Some(expected), actual) = (baseline.status, shuffled.status) else {
            return found;
        };
        let Some(actual) = actual else {
            found.push(Difference::new(
                "answer",
                format!("status {expected}"),
                format!(
                    "no answer: {}",
                    shuffled.error.as_deref().unwrap_or("unknown error")
                ),
            ));
            return found;
        };
        if expected != actual {
            let mut difference =
                Difference::new("status", expected.to_string(), actual.to_string());
            difference.diff = excerpt(&baseline.body, &shuffled.body);
            found.push(difference);
            if baseline.location != shuffled.location {
                found.push(Difference::new(
                    "Location",
                    baseline.location.clone().unwrap_or_else(|| "(none)".into()),
                    shuffled.location.clone().unwrap_or_else(|| "(none)".into()),
                ));
            }
            return found;
        }
        match (&baseline.location, &shuffled.location, &self.location) {
            (Some(a), Some(b), Some(template))
                if !template.compare(std::slice::from_ref(b)).is_empty() =>
            {
                found.push(Difference::new("Location", a.clone(), b.clone()));
            }
            (Some(_), Some(_), Some(_)) => {}
            (a, b, _) if a != b => found.push(Difference::new(
                "Location",
                a.clone().unwrap_or_else(|| "(none)".into()),
                b.clone().unwrap_or_else(|| "(none)".into()),
            )),
            _ => {}
        }
        if !self.content_type && baseline.content_type != shuffled.content_type {
            found.push(Difference::new(
                "Content-Type",
                baseline
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
                shuffled
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
            ));
        }
        let expected_cookies: BTreeSet<&String> =
            baseline.cookies.difference(&self.cookies).collect();
        let actual_cookies: BTreeSet<&String> =
            shuffled.cookies.difference(&self.cookies).collect();
        if expected_cookies != actual_cookies {
            let list = |set: &BTreeSet<&String>| {
                if set.is_empty() {
                    "(none)".to_owned()
                } else {
                    set.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            found.push(Difference::new(
                "Set-Cookie",
                list(&expected_cookies),
                list(&actual_cookies),
            ));
        }
        self.compare_bodies(&baseline.body, &shuffled.body, &mut found);
        found.truncate(MAX_DIFFERENCES);
        found
    }

    fn compare_bodies(&self, baseline: &Body, shuffled: &Body, found: &mut Vec<Difference>) {
        match (&self.body, baseline, shuffled) {
            (BodyNoise::Any, _, _) => {}
            (_, a, b) if a == b => {}
            (BodyNoise::Json(noise), Body::Json(a), Body::Json(b)) => {
                for d in noise.compare(a, b, MAX_DIFFERENCES) {
                    found.push(Difference::new(
                        &format!("body {}", d.path),
                        d.baseline.unwrap_or_else(|| "(missing)".into()),
                        d.shuffled.unwrap_or_else(|| "(missing)".into()),
                    ));
                }
            }
            (BodyNoise::Same, Body::Json(a), Body::Json(b)) => {
                for d in JsonNoise::default().compare(a, b, MAX_DIFFERENCES) {
                    found.push(Difference::new(
                        &format!("body {}", d.path),
                        d.baseline.unwrap_or_else(|| "(missing)".into()),
                        d.shuffled.unwrap_or_else(|| "(missing)".into()),
                    ));
                }
            }
            (noise, a, b) => {
                let lines = |body: &Body| match body {
                    Body::Text(lines) => Some(lines.clone()),
                    Body::Empty => Some(Vec::new()),
                    _ => None,
                };
                match (noise, lines(a), lines(b)) {
                    (BodyNoise::Text(template), Some(_), Some(b_lines)) => {
                        let hunks = template.compare(&b_lines);
                        if !hunks.is_empty() {
                            found.push(body_difference(&hunks));
                        }
                    }
                    (BodyNoise::Same, Some(a_lines), Some(b_lines)) => {
                        let hunks = LineTemplate::learn(&a_lines, &a_lines).compare(&b_lines);
                        if !hunks.is_empty() {
                            found.push(body_difference(&hunks));
                        }
                    }
                    _ => found.push(Difference::new("body", describe_body(a), describe_body(b))),
                }
            }
        }
    }
}

fn body_difference(hunks: &[Hunk]) -> Difference {
    let mut diff = Vec::new();
    let (mut removed, mut added) = (0, 0);
    for hunk in hunks {
        removed += hunk.removed.len();
        added += hunk.added.len();
        if diff.len() < 16 {
            diff.push(format!("@@ line {}", hunk.line));
            diff.extend(
                hunk.removed
                    .iter()
                    .take(4)
                    .map(|l| format!("-{}", crate::report::clip(l, 160))),
            );
            diff.extend(
                hunk.added
                    .iter()
                    .take(4)
                    .map(|l| format!("+{}", crate::report::clip(l, 160))),
            );
        }
    }
    Difference {
        what: "body".into(),
        baseline: format!("{removed} line(s) not found"),
        shuffled: format!("{added} line(s) not expected"),
        diff,
    }
}

fn describe_body(body: &Body) -> String {
    match body {
        Body::Empty => "empty".into(),
        Body::Json(value) => crate::report::clip(&value.to_string(), 120),
        Body::Text(lines) => format!(
            "text, {} line(s): {}",
            lines.len(),
            crate::report::clip(lines.first().map_or("", |l| l.trim()), 100)
        ),
        Body::Binary { len, .. } => format!("{len} bytes"),
    }
}

/// The first lines of two bodies, to show next to a status that differs.
fn excerpt(baseline: &Body, shuffled: &Body) -> Vec<String> {
    let first = |body: &Body| -> Vec<String> {
        match body {
            Body::Text(lines) => lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .map(|l| crate::report::clip(l.trim(), 160))
                .collect(),
            other => vec![describe_body(other)],
        }
    };
    let mut out: Vec<String> = first(baseline)
        .into_iter()
        .map(|l| format!("-{l}"))
        .collect();
    out.extend(first(shuffled).into_iter().map(|l| format!("+{l}")));
    out
}
