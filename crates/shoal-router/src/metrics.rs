//! The router's metrics, counted as requests end (a few atomic additions each) and written in
//! the Prometheus text exposition format only when scraped. Labels are the process type and
//! instance name, a status class or a router error code: never paths or client data, so the
//! number of series stays bounded by the formation's size.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::backends::{Counters, RouterStats};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BUCKETS.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// What the router counts beyond each instance's own counters.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// Whole requests, from the head arriving to the response's end.
    pub(crate) duration: Histogram,
    /// From the head arriving to the instance's response head.
    pub(crate) to_head: Histogram,
    /// Time spent waiting in the queue (under a concurrency limit).
    pub(crate) queue_wait: Histogram,
    /// Requests sent again to another instance.
    pub(crate) retries: AtomicU64,
    /// Answers the router made itself, by their `X-Shoal-Error` code.
    pub(crate) errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Client connections open now.
    pub(crate) connections: AtomicUsize,
}

/// Everything the access line knows of a request that ended, for the metrics.
pub(crate) struct Ended<'a> {
    pub(crate) counters: Option<&'a Counters>,
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    pub(crate) to_head: Option<Duration>,
    pub(crate) queue: Option<Duration>,
    pub(crate) retries: u32,
    /// The code of an answer the router made itself.
    pub(crate) error: Option<&'static str>,
}

impl RouterStats {
    pub(crate) fn record(&self, ended: &Ended<'_>) {
        let totals = &self.totals;
        if let Some(counters) = ended.counters {
            let class = usize::from(ended.status / 100).clamp(1, 5) - 1;
            counters.by_class[class].fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_in
                .fetch_add(ended.bytes_in, Ordering::Relaxed);
            counters
                .bytes_out
                .fetch_add(ended.bytes_out, Ordering::Relaxed);
        }
        totals.duration.observe(ended.duration);
        if let Some(to_head) = ended.to_head {
            totals.to_head.observe(to_head);
        }
        if let Some(queue) = ended.queue {
            totals.queue_wait.observe(queue);
        }
        if ended.retries > 0 {
            totals
                .retries
                .fetch_add(u64::from(ended.retries), Ordering::Relaxed);
        }
        if let Some(code) = ended.error {
            self.count_error(code);
        }
    }

    /// Counts a client connection as open until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> impl Drop + '_ {
        self.totals.connections.fetch_add(1, Ordering::Relaxed);
        Open(&self.totals.connections)
    }

    /// Counts an answer the router made itself (also those of the HTTP/1 parser).
    pub(crate) fn count_error(&self, code: &'static str) {
        *self.totals.errors.lock().unwrap().entry(code).or_default() += 1;
    }

    /// Writes the router's metrics in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        let instances = self.each_instance();
        header(
            out,
            "shoal_router_requests_total",
            "counter",
            "Requests an instance answered (or failed), by status class.",
        );
        for (name, counters) in &instances {
            for (i, count) in counters.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "shoal_router_requests_total{{{},class=\"{}xx\"}} {}",
                    labels(name),
                    i + 1,
                    count.load(Ordering::Relaxed)
                );
            }
        }
        per_instance(
            out,
            &instances,
            "shoal_router_in_flight_requests",
            "gauge",
            "Requests an instance is working on now.",
            |c| c.in_flight.load(Ordering::Relaxed) as u64,
        );
        per_instance(
            out,
            &instances,
            "shoal_router_received_bytes_total",
            "counter",
            "Request body bytes received from clients for an instance.",
            |c| c.bytes_in.load(Ordering::Relaxed),
        );
        per_instance(
            out,
            &instances,
            "shoal_router_sent_bytes_total",
            "counter",
            "Response body bytes sent to clients from an instance.",
            |c| c.bytes_out.load(Ordering::Relaxed),
        );
        let totals = &self.totals;
        totals.duration.write(
            out,
            "shoal_router_request_duration_seconds",
            "Whole requests, from the request head to the end of the response.",
        );
        totals.to_head.write(
            out,
            "shoal_router_response_head_seconds",
            "From the request head to the instance's response head.",
        );
        header(
            out,
            "shoal_router_retries_total",
            "counter",
            "Requests sent again to another instance.",
        );
        let _ = writeln!(
            out,
            "shoal_router_retries_total {}",
            totals.retries.load(Ordering::Relaxed)
        );
        header(
            out,
            "shoal_router_errors_total",
            "counter",
            "Answers the router made itself, by their X-Shoal-Error code.",
        );
        for (code, count) in totals.errors.lock().unwrap().iter() {
            let _ = writeln!(out, "shoal_router_errors_total{{code=\"{code}\"}} {count}");
        }
        header(
            out,
            "shoal_router_client_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "shoal_router_client_connections {}",
            totals.connections.load(Ordering::Relaxed)
        );
        if let Some(limit) = self.limit() {
            header(
                out,
                "shoal_router_max_in_flight",
                "gauge",
                "Requests each instance is sent at once, at most (--max-in-flight).",
            );
            let _ = writeln!(out, "shoal_router_max_in_flight {limit}");
            header(
                out,
                "shoal_router_queued_requests",
                "gauge",
                "Requests waiting in the router's queue for a free slot now.",
            );
            let _ = writeln!(out, "shoal_router_queued_requests {}", self.queued());
            header(
                out,
                "shoal_router_queue_limit",
                "gauge",
                "Requests that may wait in the queue; beyond, 503 queue_full (--max-queue).",
            );
            let _ = writeln!(
                out,
                "shoal_router_queue_limit {}",
                self.max_queue().unwrap_or_default()
            );
            totals.queue_wait.write(
                out,
                "shoal_router_queue_wait_seconds",
                "Time requests waited in the queue for a free slot.",
            );
        }
    }
}

/// A client connection, counted while it is open.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `# HELP` and `# TYPE` lines of a metric.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `type="web",instance="web.2"`: instance names are `TYPE.N` with a checked type name, so
/// they need no escaping.
fn labels(name: &str) -> String {
    let kind = name.split_once('.').map_or(name, |(kind, _)| kind);
    format!("type=\"{kind}\",instance=\"{name}\"")
}

fn per_instance(
    out: &mut String,
    instances: &[(String, std::sync::Arc<Counters>)],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&Counters) -> u64,
) {
    header(out, name, kind, help);
    for (instance, counters) in instances {
        let _ = writeln!(out, "{name}{{{}}} {}", labels(instance), value(counters));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.write(&mut out, "x_seconds", "test");
        assert!(out.contains("x_seconds_bucket{le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 60.006\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }
}
