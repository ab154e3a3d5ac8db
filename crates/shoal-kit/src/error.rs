//! The crate's error types: connecting to a store, talking to it, and using a [`Session`].
//!
//! [`Session`]: crate::Session

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// Connecting to the session store named by a URL failed (at startup).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not one the kit understands. `url` has its password masked.
    #[error("session store URL `{url}` is not valid: expected {expected}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// The namespace (key prefix or table name) is not usable.
    #[error(
        "session namespace `{0}` is not valid: expected 1 to 63 characters of `[A-Za-z0-9_]`, not starting with a digit"
    )]
    InvalidNamespace(String),
    /// The store did not answer, refused the connection or the credentials.
    #[error("cannot reach the session store at `{url}`")]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// What went wrong.
        #[source]
        source: StoreError,
    },
}

/// A session store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or the connection failed.
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    /// The SQL database answered with an error or the connection failed.
    #[error("sql query failed")]
    Sql(#[from] sqlx::Error),
    /// Reading from or writing to memcached failed.
    #[error("memcached connection failed")]
    Io(#[from] std::io::Error),
    /// Memcached answered something the kit did not expect.
    #[error("memcached answered `{0}`")]
    Protocol(String),
    /// A stored value does not have the shape the kit writes.
    #[error("stored session value is malformed: {0}")]
    Malformed(&'static str),
    /// The store did not answer in time.
    #[error("the session store did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored record is not a session record the kit wrote.
    #[error("stored session record is corrupt")]
    Corrupt(#[source] serde_json::Error),
    /// Every compare-and-set attempt met a newer version.
    #[error("gave up saving the session after {0} conflicting concurrent updates")]
    Contention(u32),
    /// The operating system's random number generator failed.
    #[error("cannot generate a session id")]
    Random(#[from] getrandom::Error),
}

/// Using a [`Session`](crate::Session) failed. As a handler error it becomes a 500 response.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The value at `key` does not have the requested type.
    #[error("session value `{key}` has an unexpected type")]
    Decode {
        /// The key read.
        key: String,
        /// Why it did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The value given for `key` cannot be written as JSON.
    #[error("session value `{key}` cannot be serialised")]
    Encode {
        /// The key written.
        key: String,
        /// Why it did not encode.
        #[source]
        source: serde_json::Error,
    },
    /// The request did not go through a [`SessionLayer`](crate::SessionLayer).
    #[error("no session in this request: is the `SessionLayer` installed?")]
    MissingLayer,
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        log_error("session error", &self);
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

/// Writes `err` and its causes to stderr, on one line: the detail stays in the log, never in
/// a response.
pub(crate) fn log_error(what: &str, err: &dyn std::error::Error) {
    let mut line = format!("shoal-kit: {what}: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        // Some errors (redis) already include their cause in their own message.
        let text = s.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    eprintln!("{line}");
}
