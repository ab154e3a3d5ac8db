//! The wire format: one JSON object per line. A client sends a request line and reads one
//! response line; it may send further requests on the same connection.
//!
//! ```text
//! → {"command":"ps"}
//! ← {"ok":true,"instances":[{"name":"web.1","type":"web","pid":4242,"port":5100,"state":"ready",
//!     "uptime_secs":12.5,"restarts":0,"in_flight":0,"served":17,"last_exit":null}]}
//! → {"command":"scale","counts":{"web":5,"worker":0}}
//! → {"command":"restart","target":"web"}        (target: a type, an instance, or null for all)
//! → {"command":"stop","target":"worker.1"}      (target null: the whole formation)
//! ← {"ok":true,"message":"..."}  or  {"ok":false,"error":"...","usage":true}
//!   (`usage`: the request was wrong, e.g. an unknown process type; absent when the formation
//!   could not carry it out)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_supervisor::Refused;

/// A request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Every instance and its state.
    Ps,
    /// Set the number of instances of some types.
    Scale { counts: BTreeMap<String, u32> },
    /// Rolling restart of a type, an instance, or everything (`None`).
    Restart { target: Option<String> },
    /// Stop a type, an instance, or the whole formation (`None`).
    Stop { target: Option<String> },
}

/// One instance, as `shoal ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub pid: Option<u32>,
    pub port: u16,
    /// `starting`, `running`, `ready`, `draining`, `stopping`, `crashed` or `stopped`.
    pub state: String,
    pub uptime_secs: Option<f64>,
    pub restarts: u32,
    pub in_flight: usize,
    pub served: u64,
    /// The most requests the router sends this instance at once (`--max-in-flight`); absent
    /// without a limit or for a type the router does not serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// With a limit: requests waiting in the router's one queue for a free slot on any web
    /// instance (the same number on each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<usize>,
    /// CPU used by the instance's process group since the previous `ps` (or since it started),
    /// in percent of one CPU.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// CPU time of the instance's process group in its current run.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Resident memory of the instance's process group.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Its memory limit (`--memory-limit`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// With `shoal start --isolate`: how many files the instance created, changed or deleted
    /// in its copies of the app directory (each file once per run of the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_writes: Option<u64>,
    /// How the previous run ended: `code N`, `signal SIGKILL`, or `not started: …`.
    pub last_exit: Option<String>,
}

/// Why a formation did not carry out a request: the asker's mistake or the formation's
/// failure, known where it happened (the supervisor's [`Refused::is_usage`], the server's own
/// checks) and carried on the wire as `usage`, so that the client exits 2 or 1 accordingly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request itself was wrong (an unknown process type, say).
    #[error("{0}")]
    Usage(String),
    /// The formation could not carry it out as it is now.
    #[error("{0}")]
    Failed(String),
}

impl RequestError {
    pub fn is_usage(&self) -> bool {
        matches!(self, RequestError::Usage(_))
    }

    /// The same kind of error with `more` said after it.
    pub fn and(self, more: impl std::fmt::Display) -> RequestError {
        match self {
            RequestError::Usage(text) => RequestError::Usage(format!("{text}; {more}")),
            RequestError::Failed(text) => RequestError::Failed(format!("{text}; {more}")),
        }
    }
}

impl From<Refused> for RequestError {
    fn from(refused: Refused) -> Self {
        if refused.is_usage() {
            RequestError::Usage(refused.to_string())
        } else {
            RequestError::Failed(refused.to_string())
        }
    }
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With an error: `true` when the request itself was wrong (an unknown process type, say),
    /// `false` when the formation could not do it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage: bool,
}

impl Response {
    pub fn message(text: impl Into<String>) -> Self {
        Response {
            ok: true,
            instances: None,
            message: Some(text.into()),
            error: None,
            usage: false,
        }
    }

    /// The response that carries `error`.
    pub fn refused(error: &RequestError) -> Self {
        let (RequestError::Usage(text) | RequestError::Failed(text)) = error;
        Response {
            ok: false,
            instances: None,
            message: None,
            error: Some(text.clone()),
            usage: error.is_usage(),
        }
    }

    /// The response itself when it is `ok`, else the error it carries.
    pub fn into_result(self) -> Result<Response, RequestError> {
        if self.ok {
            return Ok(self);
        }
        let text = self
            .error
            .unwrap_or_else(|| "the formation refused the request".into());
        Err(if self.usage {
            RequestError::Usage(text)
        } else {
            RequestError::Failed(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        for error in [
            RequestError::from(Refused::UnknownType { kind: "wbe".into() }),
            RequestError::from(Refused::Stopping),
        ] {
            let line = serde_json::to_string(&Response::refused(&error)).unwrap();
            let back: Response = serde_json::from_str(&line).unwrap();
            assert_eq!(back.into_result(), Err(error));
        }
        assert_eq!(
            serde_json::to_string(&Response::refused(&RequestError::Usage("no".into()))).unwrap(),
            r#"{"ok":false,"error":"no","usage":true}"#
        );
    }

    #[test]
    fn requests_read_as_documented() {
        let parse = |line: &str| serde_json::from_str::<Request>(line).unwrap();
        assert_eq!(parse(r#"{"command":"ps"}"#), Request::Ps);
        assert_eq!(
            parse(r#"{"command":"scale","counts":{"web":5,"worker":0}}"#),
            Request::Scale {
                counts: BTreeMap::from([("web".into(), 5), ("worker".into(), 0)])
            }
        );
        assert_eq!(
            parse(r#"{"command":"restart","target":null}"#),
            Request::Restart { target: None }
        );
        assert_eq!(
            parse(r#"{"command":"stop","target":"web.1"}"#),
            Request::Stop {
                target: Some("web.1".into())
            }
        );
    }
}
