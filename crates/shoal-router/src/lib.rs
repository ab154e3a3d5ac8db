//! The router: one public port in front of a formation's `web` instances.
//!
//! Every request — not every connection — goes to a ready instance chosen by the balancing
//! policy; nothing is sticky. A request is retried on another instance only when that cannot
//! repeat a side effect: when its connection failed before a byte of it was written, or when it
//! is idempotent with a small buffered body and its instance died before answering. Bodies
//! stream both ways; upgrades (WebSocket) pass through.
//!
//! The router learns which instances exist and are ready from the supervisor's snapshot
//! ([`shoal_supervisor::Handle::watch`]); it never steers the supervisor.
//!
//! # Layout
//! - [`config`]: every limit and timeout, with its default.
//! - [`server`]: the accept loop, connection limit and HTTP/1 server settings.
//! - `proxy`: one request, from the client to an instance and back, with retries.
//! - `backends`: the ready instances, their in-flight counts and passive ejection.
//! - `admission`: per-instance concurrency limits and the router's one queue.
//! - `codec`: the pure HTTP/1.1 response codec (heads, framing, bodies) and request encoding.
//! - `direct`: the router's own HTTP/1.1 client, for requests held in memory.
//! - `pool`: idle keep-alive connections to each instance.
//! - `headers`: hop-by-hop headers, forwarding headers, request ids, smuggling checks.
//! - `upgrade`: HTTP/1.1 Upgrade (WebSocket) passthrough.
//! - `errors`: the responses the router makes itself.
//! - `access_log`: one logfmt line per request.
//! - `metrics`: counters and histograms, written in the Prometheus text format on a scrape.

mod access_log;
mod admission;
mod backends;
mod body;
mod codec;
pub mod config;
mod direct;
mod errors;
mod headers;
mod metrics;
mod pool;
mod proxy;
pub mod server;
mod upgrade;

pub use backends::RouterStats;
pub use config::{Balance, RouterConfig};
pub use server::{Router, RouterError};
