//! The gate in front of password hashing: an argon2 hash takes 19 MiB and tens of
//! milliseconds of a CPU, so at most as many run at once as the gate has permits (the CPUs,
//! `DIGEST_HASH_CONCURRENCY`). A request waits for a permit at most `DIGEST_HASH_WAIT_MS`, then
//! gets 503 with `Retry-After`: a flood of sign-ins queues briefly and is then turned away,
//! instead of every request starting a hash at once and the process running out of memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::AppError;

/// The hashing gate of one web process. Cheap to share through [`Arc`].
#[derive(Debug)]
pub(crate) struct Hashing {
    permits: Arc<Semaphore>,
    wait: Duration,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Hashing {
    /// At most `limit` hashes at once (at least one); a request waits at most `wait` for its turn.
    pub(crate) fn new(limit: usize, wait: Duration) -> Arc<Hashing> {
        Arc::new(Hashing {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            wait,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Runs `hash` on the blocking pool once a permit is free, or [`AppError::Busy`] when none
    /// was within the wait. The permit goes with the work: a request given up by its client
    /// still counts until its hash has finished.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        hash: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; a timeout is the only way here.
                Ok(Err(_)) | Err(_) => return Err(AppError::Busy("sign-ins")),
            };
        let gate = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let now = gate.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            gate.peak.fetch_max(now, Ordering::SeqCst);
            let result = hash();
            gate.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            result
        })
        .await
        .map_err(|e| AppError::internal("password hashing task", &e))
    }

    /// The most hashes that have run at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}
