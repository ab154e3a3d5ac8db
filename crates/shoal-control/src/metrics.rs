//! `shoal start --metrics ADDR`: `GET /metrics` in the Prometheus text exposition format, for
//! an operator's Prometheus to scrape. Everything is computed when scraped — the router's
//! counters are read, the supervisor's snapshot is taken and `/proc` is read once — so a
//! formation nobody scrapes does no work for its metrics.
//!
//! Labels are `type` and `instance` (`web.2`), a state, a status class or a router error code:
//! never paths or client data, so the number of series is bounded by the formation's size.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shoal_router::RouterStats;
use shoal_supervisor::{Cause, Handle, Snapshot, State};
use tokio::net::TcpListener;

/// The text format's content type (Prometheus' version 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the metrics listener cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on `{addr}`; is another program using the port?")]
pub struct MetricsBindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// A bound metrics listener.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsBindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsBindError { addr, source })?;
        Ok(MetricsServer { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers scrapes until `shutdown` resolves.
    pub async fn serve(
        self,
        handle: Handle,
        stats: Option<Arc<RouterStats>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, typically: a scrape is worth no busy loop.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let (handle, stats) = (handle.clone(), stats.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (handle, stats) = (handle.clone(), stats.clone());
                    let (method, path) =
                        (request.method().clone(), request.uri().path().to_owned());
                    async move {
                        // The exposition reads `/proc`: not on a thread that serves the router.
                        let answer = tokio::task::spawn_blocking(move || {
                            answer(&method, &path, &handle.snapshot(), stats.as_deref())
                        })
                        .await
                        .unwrap_or_else(|_| {
                            plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal error\n".to_owned(),
                                "text/plain",
                            )
                        });
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

fn answer(
    method: &Method,
    path: &str,
    snapshot: &Snapshot,
    stats: Option<&RouterStats>,
) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".to_owned(),
            "text/plain",
        )
    } else if method != Method::GET && method != Method::HEAD {
        plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".to_owned(),
            "text/plain",
        )
    } else {
        plain(StatusCode::OK, render(snapshot, stats), CONTENT_TYPE)
    }
}

fn plain(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The whole exposition: shoal's build, the supervisor's instances, the router's counters.
pub fn render(snapshot: &Snapshot, stats: Option<&RouterStats>) -> String {
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "shoal_build_info",
        "gauge",
        "The running shoal's version.",
    );
    let _ = writeln!(
        out,
        "shoal_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    header(
        &mut out,
        "shoal_instances",
        "gauge",
        "Instances by process type and state.",
    );
    let mut by_state: std::collections::BTreeMap<(&str, &str), u32> = Default::default();
    for info in &snapshot.instances {
        *by_state
            .entry((info.name.kind.as_str(), info.state.as_str()))
            .or_default() += 1;
    }
    for ((kind, state), count) in by_state {
        let _ = writeln!(
            out,
            "shoal_instances{{type=\"{kind}\",state=\"{state}\"}} {count}"
        );
    }

    let usage = shoal_supervisor::process::usage_by_group();
    let live = || {
        snapshot
            .instances
            .iter()
            .filter(|i| !matches!(i.state, State::Stopped | State::Crashed))
    };
    header(
        &mut out,
        "shoal_instance_restarts_total",
        "counter",
        "Times an instance was restarted, by the cause of the end of the run before.",
    );
    // Every cause of every instance, at 0 until it happens: a counter that appears with its
    // first increment would hide that increment from rate().
    for info in &snapshot.instances {
        for (cause, count) in Cause::LABELS.iter().zip(info.restarts_by_cause) {
            let _ = writeln!(
                out,
                "shoal_instance_restarts_total{{{},cause=\"{cause}\"}} {count}",
                labels(info),
            );
        }
    }
    header(
        &mut out,
        "shoal_instance_uptime_seconds",
        "gauge",
        "Time since the instance's current run started.",
    );
    for info in live() {
        if let Some(started) = info.started_at {
            let _ = writeln!(
                out,
                "shoal_instance_uptime_seconds{{{}}} {}",
                labels(info),
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Each instance is a process group of its own, led by its main process.
    let group = |info: &shoal_supervisor::InstanceInfo| info.pid.and_then(|pid| usage.get(&pid));
    header(
        &mut out,
        "shoal_instance_resident_memory_bytes",
        "gauge",
        "Resident memory of the instance's whole process group.",
    );
    for info in live() {
        if let Some(usage) = group(info) {
            let _ = writeln!(
                out,
                "shoal_instance_resident_memory_bytes{{{}}} {}",
                labels(info),
                usage.resident_bytes
            );
        }
    }
    header(
        &mut out,
        "shoal_instance_memory_limit_bytes",
        "gauge",
        "The instance's memory limit (--memory-limit): a warning above it, a restart at twice it.",
    );
    for info in &snapshot.instances {
        if let Some(limit) = info.memory_limit {
            let _ = writeln!(
                out,
                "shoal_instance_memory_limit_bytes{{{}}} {limit}",
                labels(info)
            );
        }
    }
    header(
        &mut out,
        "shoal_instance_cpu_seconds_total",
        "counter",
        "CPU time of the instance's process group in its current run (its live processes and the children they waited for).",
    );
    for info in live() {
        if let Some(usage) = group(info) {
            let _ = writeln!(
                out,
                "shoal_instance_cpu_seconds_total{{{}}} {}",
                labels(info),
                usage.cpu_seconds
            );
        }
    }
    if let Some(stats) = stats {
        stats.write_metrics(&mut out);
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(info: &shoal_supervisor::InstanceInfo) -> String {
    format!("type=\"{}\",instance=\"{}\"", info.name.kind, info.name)
}
