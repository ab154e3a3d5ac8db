//! Admission under a concurrency limit (`--max-in-flight`): a request attempt goes only to an
//! instance with a free slot, and waits in one first-come, first-served queue in the router
//! when every instance is at its limit (HAProxy's `maxconn` per server with its queue is the
//! model). A slot that frees up is handed straight to the request at the head of the queue
//! that may use it, so nothing polls and a newcomer never overtakes a waiting request; an
//! instance that becomes ready fills its slots from the queue the same way.
//!
//! Every change to a capped instance's count and to the queue happens under the queue's lock,
//! so a slot cannot be freed between a request finding none and joining the queue (no lost
//! wake-up). Without a limit none of this runs: picking is `backends`' policy alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::backends::{Backend, InFlight};
use crate::config::QUEUE_PER_SLOT;

/// The queue and the limit, shared by every instance of the formation.
pub(crate) struct Queue {
    /// Requests in flight per instance, at most.
    pub(crate) limit: usize,
    /// Requests waiting, at most; beyond, a request is refused at once.
    max_len: AtomicUsize,
    /// The bound given by the user (`--max-queue`); without one, the bound follows the number
    /// of instances ([`Queue::set_instances`]).
    fixed: Option<usize>,
    waiters: Mutex<VecDeque<Waiter>>,
}

struct Waiter {
    /// Where a freed slot is sent; closed when the request gave up (timeout, client gone).
    slot: oneshot::Sender<InFlight>,
    /// Instances this request already tried: their slots are not for it.
    tried: Vec<Arc<Backend>>,
}

impl Waiter {
    fn may_use(&self, backend: &Arc<Backend>) -> bool {
        !self.slot.is_closed() && !self.tried.iter().any(|t| Arc::ptr_eq(t, backend))
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("limit", &self.limit)
            .field("max_len", &self.max_len())
            .field("waiting", &self.len())
            .finish()
    }
}

/// What became of a request that asked for a slot.
pub(crate) enum Admitted {
    /// A slot on this instance.
    Now(Arc<Backend>, InFlight),
    /// Every instance it may use is at its limit: it waits for a slot here.
    Queued(oneshot::Receiver<InFlight>),
    /// The queue is full.
    Refused,
}

impl Queue {
    /// A queue for instances of `limit` slots each, bounded at `fixed` requests, or else at
    /// [`QUEUE_PER_SLOT`] for each slot of the instances it is told of.
    pub(crate) fn new(limit: usize, fixed: Option<usize>) -> Self {
        Queue {
            limit,
            max_len: AtomicUsize::new(fixed.unwrap_or(QUEUE_PER_SLOT * limit)),
            fixed,
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// The formation now has `instances` instances of the routed type (ready or not): without
    /// a bound of the user's, the queue's follows, never below one instance's worth, so that a
    /// formation whose instances are all restarting still queues.
    pub(crate) fn set_instances(&self, instances: usize) {
        if self.fixed.is_none() {
            let bound = QUEUE_PER_SLOT * self.limit * instances.max(1);
            self.max_len.store(bound, Ordering::Relaxed);
        }
    }

    /// Requests that may wait now.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len.load(Ordering::Relaxed)
    }

    /// Takes a slot on the least busy of `candidates` (ties broken at random), or joins the
    /// queue. A request only takes a free slot directly when nobody waits before it.
    ///
    /// A free slot found while others wait goes to them first: a slot can be free without
    /// having been released to the queue — an instance back in rotation after its connects
    /// failed, or one whose slot a waiter could not use — and must not stay idle while the
    /// queue is served by the other instances alone.
    pub(crate) fn admit(&self, candidates: &[&Arc<Backend>], tried: &[Arc<Backend>]) -> Admitted {
        let mut handed = Vec::new();
        let admitted = {
            let mut waiters = self.waiters.lock().unwrap();
            waiters.retain(|w| !w.slot.is_closed());
            if !waiters.is_empty() {
                for &backend in candidates {
                    self.fill(backend, &mut waiters, &mut handed);
                }
            }
            if waiters.is_empty()
                && let Some(backend) = self.least_busy(candidates)
            {
                let in_flight = backend.begin();
                Admitted::Now(backend.clone(), in_flight)
            } else if waiters.len() >= self.max_len() {
                Admitted::Refused
            } else {
                let (slot, receiver) = oneshot::channel();
                waiters.push_back(Waiter {
                    slot,
                    tried: tried.to_vec(),
                });
                Admitted::Queued(receiver)
            }
        };
        Self::hand(handed);
        admitted
    }

    /// Gives `backend`'s free slots to the first waiters that may use them.
    fn fill(
        &self,
        backend: &Arc<Backend>,
        waiters: &mut VecDeque<Waiter>,
        handed: &mut Vec<(Waiter, InFlight)>,
    ) {
        while backend.in_flight() < self.limit {
            let Some(i) = waiters.iter().position(|w| w.may_use(backend)) else {
                break;
            };
            let waiter = waiters.remove(i).expect("the position was just found");
            handed.push((waiter, backend.begin()));
        }
    }

    /// Sends slots taken under the lock to their waiters, after it is released. Should a
    /// waiter have given up meanwhile, its slot comes back through `release` when dropped.
    fn hand(handed: Vec<(Waiter, InFlight)>) {
        for (waiter, in_flight) in handed {
            let _ = waiter.slot.send(in_flight);
        }
    }

    fn least_busy<'a>(&self, candidates: &[&'a Arc<Backend>]) -> Option<&'a Arc<Backend>> {
        let mut best: Option<(&Arc<Backend>, usize)> = None;
        let mut ties = 0u32;
        for &backend in candidates {
            let busy = backend.in_flight();
            if busy >= self.limit {
                continue;
            }
            match best {
                Some((_, least)) if busy > least => {}
                Some((_, least)) if busy == least => {
                    // Reservoir sampling: each of the tied instances equally likely.
                    ties += 1;
                    if fastrand::u32(..=ties) == 0 {
                        best = Some((backend, busy));
                    }
                }
                _ => {
                    best = Some((backend, busy));
                    ties = 0;
                }
            }
        }
        best.map(|(backend, _)| backend)
    }

    /// A request on `backend` has ended: its slot goes to the first waiter that may use it,
    /// unless `usable` is false (the instance left the rotation); otherwise it is freed.
    pub(crate) fn release(&self, backend: Arc<Backend>, usable: bool) {
        let waiter = {
            let mut waiters = self.waiters.lock().unwrap();
            let next = if usable {
                waiters
                    .iter()
                    .position(|w| w.may_use(&backend))
                    .and_then(|i| waiters.remove(i))
            } else {
                None
            };
            if next.is_none() {
                backend.end();
            }
            next
        };
        if let Some(waiter) = waiter {
            // The count stays: the slot changes hands. Should the waiter have given up at this
            // very moment, the slot comes back to this function when it is dropped.
            let _ = waiter.slot.send(InFlight::handed(backend));
        }
    }

    /// Fills `backend`'s free slots from the queue (it has just become ready).
    pub(crate) fn offer(&self, backend: &Arc<Backend>) {
        let mut handed = Vec::new();
        self.fill(backend, &mut self.waiters.lock().unwrap(), &mut handed);
        Self::hand(handed);
    }

    /// Requests waiting now.
    pub(crate) fn len(&self) -> usize {
        let waiters = self.waiters.lock().unwrap();
        waiters.iter().filter(|w| !w.slot.is_closed()).count()
    }
}
