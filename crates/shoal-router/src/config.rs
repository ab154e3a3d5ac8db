//! The router's settings. Each default is documented in the README; keep the two in step.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

/// How an instance is chosen for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Power of two choices: two random ready instances, the one with fewer requests in flight.
    #[default]
    P2c,
    /// Each ready instance in turn.
    RoundRobin,
    /// A random ready instance.
    Random,
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "p2c" => Ok(Balance::P2c),
            "round-robin" => Ok(Balance::RoundRobin),
            "random" => Ok(Balance::Random),
            other => Err(format!(
                "`{other}` is not a balancing policy; expected `p2c`, `round-robin` or `random`"
            )),
        }
    }
}

/// Everything the router needs to know.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Where the public port listens.
    pub listen: SocketAddr,
    /// The process type whose ready instances get traffic.
    pub process_type: String,
    pub balance: Balance,
    /// Time a client has to send a complete request head, counted from the connection opening
    /// or from the end of the previous response (so it is also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Longest a client may leave its request body without sending a byte, once the router
    /// waits for it; then 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Largest request head accepted; a larger one gets 431.
    pub max_header_bytes: usize,
    /// Time from sending a request to an instance to its response head; then 504. Retries
    /// happen within this time.
    pub first_byte_timeout: Duration,
    /// Time to open a TCP connection to an instance.
    pub connect_timeout: Duration,
    /// How long a request waits for a ready instance when there is none; then 503.
    pub ready_wait: Duration,
    /// Client connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Largest body an idempotent request may have and still be retried after its instance
    /// died (it is buffered to be sent again).
    pub retry_body_limit: usize,
    /// Requests each instance is sent at once, at most; `None`: no limit. With a limit, a
    /// request that finds every instance at it waits in the router's queue.
    pub max_in_flight: Option<NonZeroUsize>,
    /// Longest a request waits in the queue for a free slot; then 503 `queue_timeout`.
    pub queue_timeout: Duration,
    /// Requests waiting in the queue, at most; beyond, 503 `queue_full` at once. `None`:
    /// [`QUEUE_PER_SLOT`] for each slot of the formation's instances of the routed type (its
    /// instances, ready or not, times `max_in_flight`), so that the queue holds about the
    /// same time's worth of work however many instances serve it.
    pub max_queue: Option<usize>,
    /// Instances tried per request, at most.
    pub max_attempts: usize,
    /// Connect failures in a row that take an instance out of rotation.
    pub eject_after: u32,
    /// How long an ejected instance stays out of rotation.
    pub eject_for: Duration,
    /// Idle connections kept open to each instance.
    pub idle_per_instance: usize,
}

/// Requests that may wait for each slot when `--max-queue` is not given: with 4 instances of
/// one slot each, 128 requests, about a third of a second of work at 10 ms a request. A queue
/// of a few times the formation's capacity absorbs a burst; a deeper one only makes every
/// request of an overload wait longer and delays the recovery after it.
pub const QUEUE_PER_SLOT: usize = 32;

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            process_type: shoal_procfile::plan::WEB.into(),
            balance: Balance::P2c,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(15),
            max_header_bytes: 64 * 1024,
            first_byte_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ready_wait: Duration::from_secs(5),
            max_connections: 10_000,
            retry_body_limit: 64 * 1024,
            max_in_flight: None,
            queue_timeout: Duration::from_secs(10),
            max_queue: None,
            max_attempts: 3,
            eject_after: 3,
            eject_for: Duration::from_secs(5),
            idle_per_instance: 64,
        }
    }
}
