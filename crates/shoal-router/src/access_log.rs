//! One logfmt line per request, written as a `router` line once its response has been sent
//! (Heroku's router log is the model):
//!
//! ```text
//! method=GET path="/cart?id=1" status=200 bytes=5120 instance=web.2 connect=0ms queue=0ms service=12ms request_id=5f0c… retries=0 client=127.0.0.1
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

use shoal_supervisor::Log;

use crate::backends::{Counters, RouterStats};
use crate::body::BodyOutcome;
use crate::metrics::Ended;
use shoal_supervisor::output::Source;

/// Where access lines go.
#[derive(Clone)]
pub(crate) struct AccessLog {
    log: Log,
    source: Arc<Source>,
    /// Where each ended request is counted for the metrics.
    pub(crate) stats: Arc<RouterStats>,
}

impl AccessLog {
    pub(crate) fn new(log: Log, stats: Arc<RouterStats>) -> Self {
        let source = log.named("router");
        AccessLog { log, source, stats }
    }

    /// Writes the access line of a request that the HTTP/1 parser refused before the router
    /// saw it: it answered `status` itself (400, 414 or 431).
    pub(crate) fn refused(&self, client: &HeaderValue, status: u16, error: &'static str) {
        let mut line = String::with_capacity(160);
        line.push_str("method=- path=- status=");
        line.push_str(itoa::Buffer::new().format(status));
        line.push_str(
            " bytes=0 instance=- connect=0ms queue=0ms service=0ms request_id=- retries=0 client=",
        );
        push_value(&mut line, client.to_str().unwrap_or("-"));
        line.push_str(" error=");
        line.push_str(error);
        self.stats.count_error(error);
        self.log.access(&self.source, line);
    }

    /// Writes one of the router's own lines (not an access line).
    pub(crate) fn event(&self, message: String) {
        self.log.line_now(&self.source, message);
    }
}

/// What is known about a request once its response head is chosen; finished when the body
/// has been sent.
pub(crate) struct Pending {
    pub(crate) log: AccessLog,
    pub(crate) method: Method,
    pub(crate) path: PathAndQuery,
    pub(crate) status: u16,
    pub(crate) instance: Option<Arc<str>>,
    /// The counters of the instance the request last reached.
    pub(crate) counters: Option<Arc<Counters>>,
    /// The request's body, as far as it was received.
    pub(crate) request_body: Option<Arc<BodyOutcome>>,
    /// When the instance's response head arrived, from the request's start.
    pub(crate) to_head: Option<Duration>,
    pub(crate) connect: Duration,
    /// Time spent waiting in the router's queue for a free slot.
    pub(crate) queue: Duration,
    pub(crate) started: Instant,
    pub(crate) request_id: HeaderValue,
    pub(crate) retries: u32,
    /// The client's address (see `headers::client_address`).
    pub(crate) client: HeaderValue,
    pub(crate) error: Option<&'static str>,
}

impl Pending {
    /// Writes the line: `bytes` of body were sent; `error` names what cut it short.
    pub(crate) fn finish(self, bytes: u64, error: Option<&'static str>) {
        let stats = &self.log.stats;
        stats.record(&Ended {
            counters: self.counters.as_deref(),
            status: self.status,
            bytes_in: self.request_body.as_ref().map_or(0, |body| body.bytes()),
            bytes_out: bytes,
            duration: self.started.elapsed(),
            to_head: self.to_head,
            queue: stats.limit().map(|_| self.queue),
            retries: self.retries,
            error: self.error,
        });
        // One line per request, on the hot path: numbers are written with itoa, not fmt.
        let mut numbers = itoa::Buffer::new();
        let mut line = String::with_capacity(200);
        line.push_str("method=");
        push_value(&mut line, self.method.as_str());
        line.push_str(" path=");
        push_value(&mut line, self.path.as_str());
        line.push_str(" status=");
        line.push_str(numbers.format(self.status));
        line.push_str(" bytes=");
        line.push_str(numbers.format(bytes));
        line.push_str(" instance=");
        line.push_str(self.instance.as_deref().unwrap_or("-"));
        line.push_str(" connect=");
        line.push_str(numbers.format(self.connect.as_millis()));
        line.push_str("ms queue=");
        line.push_str(numbers.format(self.queue.as_millis()));
        line.push_str("ms service=");
        line.push_str(numbers.format(self.started.elapsed().as_millis()));
        line.push_str("ms request_id=");
        // Both are checked header values: no quoting needed, but never trust that blindly.
        push_value(&mut line, self.request_id.to_str().unwrap_or("-"));
        line.push_str(" retries=");
        line.push_str(numbers.format(self.retries));
        line.push_str(" client=");
        push_value(&mut line, self.client.to_str().unwrap_or("-"));
        if let Some(error) = error.or(self.error) {
            line.push_str(" error=");
            line.push_str(error);
        }
        // Dropped (and counted) rather than waited for when the output is behind.
        self.log.log.access(&self.log.source, line);
    }
}

/// Appends a logfmt value, quoted when it has to be, with control characters escaped so that
/// a hostile path cannot forge log lines.
fn push_value(line: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> String {
        let mut s = String::new();
        push_value(&mut s, v);
        s
    }

    #[test]
    fn values_are_quoted_and_escaped_when_needed() {
        assert_eq!(value("/plain/path?x=1"), "\"/plain/path?x=1\"");
        assert_eq!(value("/plain/path"), "/plain/path");
        assert_eq!(value("a b"), "\"a b\"");
        assert_eq!(value("x\ny=\"z\""), "\"x\\u{a}y=\\\"z\\\"\"");
        assert_eq!(value(""), "\"\"");
    }
}
