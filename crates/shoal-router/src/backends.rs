//! The instances that get traffic: the ready instances of the routed process type in the
//! supervisor's latest snapshot, with what the router knows about each (requests in flight,
//! connect failures, ejection, idle connections). The list is rebuilt lazily whenever the
//! snapshot changes; an instance keeps its state for as long as the same process (address and
//! pid) stays ready. An instance is reached only at the address the supervisor verified it
//! serves; one without such an address gets no traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shoal_supervisor::{Snapshot, State};
use tokio::sync::watch;

use crate::admission::{Admitted, Queue};
use crate::config::{Balance, RouterConfig};
use crate::metrics::Totals;
use crate::pool::Pool;

/// Requests per instance, kept while the instance leaves the rotation (so that a draining
/// instance's requests in flight can still be counted) and read by `shoal ps`.
#[derive(Debug, Default)]
pub struct RouterStats {
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    /// Latencies, retries, router errors and connections, for the metrics.
    pub(crate) totals: Totals,
    /// The queue, when instances have a concurrency limit.
    queue: OnceLock<Arc<Queue>>,
}

/// What the router counts per instance.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) in_flight: AtomicUsize,
    served: AtomicU64,
    /// Answers by status class, 1xx to 5xx.
    pub(crate) by_class: [AtomicU64; 5],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Woken when `in_flight` drops to zero (a draining instance's last request ended).
    idle: tokio::sync::Notify,
}

impl RouterStats {
    fn counters(&self, name: &str) -> Arc<Counters> {
        self.counters
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Every instance counted so far, by name.
    pub(crate) fn each_instance(&self) -> Vec<(String, Arc<Counters>)> {
        let mut all: Vec<(String, Arc<Counters>)> = self
            .counters
            .lock()
            .unwrap()
            .iter()
            .map(|(name, counters)| (name.clone(), counters.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Requests instance `name` (`web.1`) is working on now.
    pub fn in_flight(&self, name: &str) -> usize {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.in_flight.load(Ordering::SeqCst))
    }

    /// The most requests an instance is sent at once; `None`: no limit.
    pub fn limit(&self) -> Option<usize> {
        self.queue.get().map(|queue| queue.limit)
    }

    /// Requests waiting in the router's queue for a free slot now.
    pub fn queued(&self) -> usize {
        self.queue.get().map_or(0, |queue| queue.len())
    }

    /// Requests that may wait in the queue now (`--max-queue`, or its default for the
    /// formation's size); `None` without a limit.
    pub fn max_queue(&self) -> Option<usize> {
        self.queue.get().map(|queue| queue.max_len())
    }

    /// Resolves once instance `name` has no request in flight (at once if it has none): the
    /// last request ending wakes it, nothing polls.
    pub async fn until_idle(&self, name: &str) {
        let counters = self.counters(name);
        loop {
            let notified = counters.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a request ending in between still wakes
            // this waiter.
            notified.as_mut().enable();
            if counters.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Requests sent to instance `name` so far.
    pub fn served(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.served.load(Ordering::Relaxed))
    }
}

/// One ready instance.
pub(crate) struct Backend {
    /// `web.2`; shared with every access line that names it.
    pub(crate) name: Arc<str>,
    /// Where the instance's own listener was verified to serve its port.
    pub(crate) addr: SocketAddr,
    pid: Option<u32>,
    pub(crate) counters: Arc<Counters>,
    connect_failures: AtomicU32,
    /// Out of rotation until this many nanoseconds after `epoch`; 0 when it never was.
    ejected_until: AtomicU64,
    epoch: Instant,
    pub(crate) pool: Arc<Pool>,
    /// Under a concurrency limit: where this instance's freed slots go.
    queue: Option<Arc<Queue>>,
    /// The instance has left the rotation (not ready any more, or replaced).
    retired: AtomicBool,
}

impl Backend {
    /// Whether the instance is out of rotation now; asks the clock only if it ever was.
    fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > nanos_since(self.epoch)
    }

    /// Counts a failed connect; returns `true` when this failure takes the instance out of
    /// rotation (which the router still ignores while every other instance is out too).
    pub(crate) fn connect_failed(&self, config: &RouterConfig) -> bool {
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= config.eject_after {
            self.connect_failures.store(0, Ordering::Relaxed);
            let until = nanos_since(self.epoch).saturating_add(nanos(config.eject_for));
            self.ejected_until.store(until.max(1), Ordering::Relaxed);
            return true;
        }
        false
    }

    pub(crate) fn connect_succeeded(&self) {
        self.connect_failures.store(0, Ordering::Relaxed);
    }

    /// Marks a request in flight on this instance until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight::handed(self.clone())
    }

    /// A request in flight has ended.
    pub(crate) fn end(&self) {
        if self.counters.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.counters.idle.notify_waiters();
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.counters.in_flight.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos_since(epoch: Instant) -> u64 {
    nanos(epoch.elapsed())
}

/// A request in flight on a backend, from the moment the backend was picked for it: one of
/// its slots when it has a concurrency limit.
pub(crate) struct InFlight(Option<Arc<Backend>>);

impl InFlight {
    /// A slot already counted in flight, for a new request.
    pub(crate) fn handed(backend: Arc<Backend>) -> Self {
        backend.counters.served.fetch_add(1, Ordering::Relaxed);
        InFlight(Some(backend))
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        self.0.as_ref().expect("set until dropped")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(backend) = self.0.take() else { return };
        match backend.queue.clone() {
            Some(queue) => {
                let usable = !backend.retired.load(Ordering::Relaxed) && !backend.is_ejected();
                queue.release(backend, usable);
            }
            None => backend.end(),
        }
    }
}

/// What picking an instance for an attempt came to.
pub(crate) enum Pick {
    Ready(Arc<Backend>, InFlight),
    /// No instance that the request has not tried is ready.
    NoneReady,
    /// Every instance is at its limit and the queue is full.
    QueueFull,
    /// The request waited in the queue until its deadline.
    QueueTimeout,
}

struct Cache {
    snapshot: Arc<Snapshot>,
    list: Arc<Vec<Arc<Backend>>>,
}

/// The ready instances and the balancing policy.
pub(crate) struct Backends {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cache: Mutex<Cache>,
    process_type: String,
    balance: Balance,
    idle_per_instance: usize,
    next: AtomicUsize,
    stats: Arc<RouterStats>,
    queue: Option<Arc<Queue>>,
}

impl Backends {
    pub(crate) fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        config: &RouterConfig,
        stats: Arc<RouterStats>,
    ) -> Self {
        let queue = config
            .max_in_flight
            .map(|limit| Arc::new(Queue::new(limit.get(), config.max_queue)));
        if let Some(queue) = &queue {
            let _ = stats.queue.set(queue.clone());
        }
        Backends {
            queue,
            cache: Mutex::new(Cache {
                snapshot: Arc::new(Snapshot::default()),
                list: Arc::new(Vec::new()),
            }),
            snapshots,
            process_type: config.process_type.clone(),
            balance: config.balance,
            idle_per_instance: config.idle_per_instance,
            next: AtomicUsize::new(0),
            stats,
        }
    }

    /// The ready instances now.
    pub(crate) fn current(&self) -> Arc<Vec<Arc<Backend>>> {
        let snapshot = self.snapshots.borrow().clone();
        let mut cache = self.cache.lock().unwrap();
        let mut joined = Vec::new();
        if !Arc::ptr_eq(&cache.snapshot, &snapshot) {
            let list = snapshot
                .ready(&self.process_type)
                .filter_map(|info| Some((info, info.addr?)))
                .map(|(info, addr)| {
                    cache
                        .list
                        .iter()
                        .find(|b| {
                            b.addr == addr && b.pid == info.pid && *b.name == info.name.to_string()
                        })
                        .cloned()
                        .unwrap_or_else(|| {
                            let backend = Arc::new(Backend {
                                name: info.name.to_string().into(),
                                addr,
                                pid: info.pid,
                                counters: self.stats.counters(&info.name.to_string()),
                                connect_failures: AtomicU32::new(0),
                                ejected_until: AtomicU64::new(0),
                                epoch: Instant::now(),
                                pool: Arc::new(Pool::new(addr, self.idle_per_instance)),
                                queue: self.queue.clone(),
                                retired: AtomicBool::new(false),
                            });
                            joined.push(backend.clone());
                            backend
                        })
                })
                .collect::<Vec<_>>();
            for old in cache.list.iter() {
                if !list.iter().any(|b| Arc::ptr_eq(b, old)) {
                    old.retired.store(true, Ordering::Relaxed);
                }
            }
            if let Some(queue) = &self.queue {
                let instances = snapshot
                    .instances
                    .iter()
                    .filter(|i| i.name.kind == self.process_type && i.state != State::Stopped)
                    .count();
                queue.set_instances(instances);
            }
            cache.list = Arc::new(list);
            cache.snapshot = snapshot;
        }
        let list = cache.list.clone();
        drop(cache);
        if let Some(queue) = &self.queue {
            for backend in &joined {
                queue.offer(backend);
            }
        }
        list
    }

    /// Chooses an instance for the next attempt of a request, never one in `tried`. Ejected
    /// instances are skipped, unless every instance left is ejected: the router never takes
    /// all of them out of rotation at once.
    /// The request counts as in flight on the chosen instance from this moment, so that an
    /// instance being drained is never stopped between being picked and being sent a request.
    ///
    /// Under a concurrency limit, only an instance with a free slot is chosen — the least busy
    /// — and the request waits in the queue until `queue_deadline` when there is none.
    pub(crate) async fn pick(
        &self,
        tried: &[Arc<Backend>],
        queue_deadline: tokio::time::Instant,
    ) -> Pick {
        let Some(queue) = &self.queue else {
            return match self.choose(tried) {
                Some(backend) => {
                    let in_flight = backend.begin();
                    Pick::Ready(backend, in_flight)
                }
                None => Pick::NoneReady,
            };
        };
        let mut snapshots = self.snapshots.clone();
        snapshots.borrow_and_update();
        let list = self.current();
        let untried: Vec<&Arc<Backend>> = list
            .iter()
            .filter(|b| !tried.iter().any(|t| Arc::ptr_eq(t, b)))
            .collect();
        let healthy: Vec<&Arc<Backend>> = untried
            .iter()
            .copied()
            .filter(|b| !b.is_ejected())
            .collect();
        let candidates = if healthy.is_empty() { untried } else { healthy };
        if candidates.is_empty() {
            return Pick::NoneReady;
        }
        let mut slot = match queue.admit(&candidates, tried) {
            Admitted::Now(backend, in_flight) => return Pick::Ready(backend, in_flight),
            Admitted::Refused => return Pick::QueueFull,
            Admitted::Queued(slot) => slot,
        };
        loop {
            tokio::select! {
                handed = &mut slot => return match handed {
                    Ok(in_flight) => Pick::Ready(in_flight.backend().clone(), in_flight),
                    // Only if the queue itself went away.
                    Err(_) => Pick::QueueTimeout,
                },
                () = tokio::time::sleep_until(queue_deadline) => return Pick::QueueTimeout,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Pick::QueueTimeout;
                    }
                    // Rebuilding the list offers newly ready instances' slots to the queue.
                    self.current();
                }
            }
        }
    }

    fn choose(&self, tried: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let list = self.current();
        let untried = |b: &&Arc<Backend>| !tried.iter().any(|t| Arc::ptr_eq(t, b));
        let healthy = |b: &&Arc<Backend>| untried(b) && !b.is_ejected();
        // Counted and indexed in place rather than collected: this runs for every request.
        let mut n = list.iter().filter(healthy).count();
        let eligible: &dyn Fn(&&Arc<Backend>) -> bool = if n > 0 {
            &healthy
        } else {
            n = list.iter().filter(untried).count();
            &untried
        };
        // An instance ejected between the count and the pick shortens the list; any untried
        // one then does rather than none.
        let nth = |i: usize| {
            list.iter()
                .filter(eligible)
                .nth(i)
                .or_else(|| list.iter().find(|b| untried(b)))
                .cloned()
        };
        match n {
            0 => None,
            1 => nth(0),
            n => match self.balance {
                Balance::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed) % n),
                Balance::Random => nth(fastrand::usize(..n)),
                Balance::P2c => {
                    let a = fastrand::usize(..n);
                    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                    let (a, b) = (nth(a)?, nth(b)?);
                    Some(if b.in_flight() < a.in_flight() { b } else { a })
                }
            },
        }
    }

    /// Whether every ready instance is out of rotation: then the router sends requests to them
    /// anyway (it never takes the last ones out).
    pub(crate) fn all_ejected(&self) -> bool {
        self.current().iter().all(|b| b.is_ejected())
    }

    /// Waits until some instance is ready, or `limit` passed; returns whether one is.
    pub(crate) async fn wait_for_ready(&self, limit: Duration) -> bool {
        let mut snapshots = self.snapshots.clone();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.current().is_empty() {
                return true;
            }
            match tokio::time::timeout_at(deadline, snapshots.changed()).await {
                Ok(Ok(())) => continue,
                _ => return !self.current().is_empty(),
            }
        }
    }
}
