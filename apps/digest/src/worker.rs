//! The `worker` process: takes URL jobs from the queue one at a time, downloads each into a
//! fresh scratch directory while hashing it, writes progress and keeps the lease alive as it
//! goes, stores the report, and removes the directory.
//!
//! - An idle worker looks at the queue with a growing pause (100 ms doubling up to
//!   `DIGEST_POLL_MAX_MS`, with jitter): no busy loop, one query per look.
//! - SIGTERM/SIGINT: the download in progress is abandoned, the job is released at once (it
//!   goes back to the queue without counting as an attempt), scratch is removed, and the
//!   process exits 0.
//! - A worker killed outright leaves its lease to run out; another worker then takes the job.
//!   A job whose attempts (including such takeovers) exceed `DIGEST_MAX_ATTEMPTS` fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_kit::Scratch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{Db, now_ms, schema};
use crate::fetch::{FetchPolicy, Fetcher};
use crate::intake::{self, Progress};
use crate::pipeline::PipelineError;
use crate::queue::{self, Claim, Outcome};

/// How often progress is written (when it changed) while a job runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// The first pause after finding the queue empty.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Runs the worker until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let db = Db::connect(&config.database).await?;
    schema::migrate(&db)
        .await
        .context("cannot bring the database schema up to date")?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shoal_kit::shutdown_signal().await;
            stop.cancel();
        });
    }
    let worker = Worker::new(db.clone(), config)?;
    eprintln!(
        "digest worker {}: waiting for jobs in `{}`",
        worker.config.instance,
        worker.config.database.masked()
    );
    worker.run(&stop).await;
    db.close().await;
    Ok(())
}

/// A worker's loop and what it needs.
pub struct Worker {
    db: Db,
    config: Arc<Config>,
    fetcher: Fetcher,
}

impl Worker {
    /// A worker on `db`, fetching as `config` allows.
    pub fn new(db: Db, config: Config) -> anyhow::Result<Worker> {
        let fetcher = Fetcher::new(FetchPolicy {
            allow_loopback: config.allow_loopback,
            max_bytes: config.max_bytes,
            ..FetchPolicy::default()
        })
        .context("cannot set up the URL fetcher")?;
        Ok(Worker {
            db,
            config: Arc::new(config),
            fetcher,
        })
    }

    /// Takes and runs jobs until `stop` is cancelled.
    pub async fn run(&self, stop: &CancellationToken) {
        let mut pause = MIN_POLL;
        while !stop.is_cancelled() {
            match queue::claim(&self.db, &self.config.instance, self.config.lease, now_ms()).await {
                Ok(Some(claim)) => {
                    pause = MIN_POLL;
                    self.process(claim, stop).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => eprintln!("digest worker: cannot look at the queue: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(jitter(pause)) => {}
                () = stop.cancelled() => {}
            }
            pause = (pause * 2).min(self.config.poll_max);
        }
    }

    async fn process(&self, claim: Claim, stop: &CancellationToken) {
        let id = claim.job_id;
        let max = self.config.max_attempts;
        if claim.attempts > i64::from(max) {
            let mut reason = format!(
                "gave up after {max} attempts: the worker running it stopped before finishing"
            );
            if let Some(last) = &claim.last_error {
                reason.push_str(&format!(" (last error: {last})"));
            }
            self.record_failure(&claim, &reason, false).await;
            return;
        }
        eprintln!(
            "job {id}: claimed (attempt {}, pid {})",
            claim.attempts,
            std::process::id()
        );
        let scratch = match Scratch::new() {
            Ok(s) => s,
            Err(e) => {
                let reason = format!("cannot create a scratch directory: {e}");
                self.record_failure(&claim, &reason, true).await;
                return;
            }
        };
        let dest = scratch.path().join("download");
        let progress = Progress::new();
        let lost = CancellationToken::new();
        // The download (and its open file) ends with this block, before scratch is removed.
        let result = {
            let download = intake::download(&self.fetcher, &claim.url, &dest, &progress);
            let keep_alive = self.keep_alive(&claim, &progress, &lost);
            tokio::select! {
                result = download => Some(result),
                () = keep_alive => None,
                () = stop.cancelled() => None,
            }
        };
        drop(scratch);
        match result {
            Some(Ok(report)) => match queue::complete(&self.db, &claim, &report, now_ms()).await {
                Ok(true) => eprintln!("job {id}: done ({} bytes)", report.size),
                Ok(false) => {
                    eprintln!("job {id}: finished, but its lease had passed to another worker")
                }
                Err(e) => eprintln!("job {id}: cannot store the report: {e}"),
            },
            Some(Err(e)) => {
                if let PipelineError::Fetch(fetch) = &e
                    && let Some(detail) = fetch.detail()
                {
                    eprintln!("job {id}: {detail}");
                }
                self.record_failure(&claim, &e.to_string(), e.is_retryable())
                    .await
            }
            None if lost.is_cancelled() => {
                eprintln!("job {id}: abandoned: its lease passed to another worker");
            }
            None => match queue::release(&self.db, &claim, now_ms()).await {
                Ok(_) => eprintln!("job {id}: released (stopping)"),
                Err(e) => eprintln!("job {id}: cannot release it ({e}); its lease will run out"),
            },
        }
    }

    /// Writes progress and extends the lease until the lease is lost (then cancels `lost` and
    /// returns); runs forever otherwise.
    async fn keep_alive(&self, claim: &Claim, progress: &Progress, lost: &CancellationToken) {
        let lease = self.config.lease;
        let extend_every = lease / 3;
        let mut written = (u64::MAX, None);
        let mut extended = Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_progress = progress.get();
            if now_progress == written && extended.elapsed() < extend_every {
                continue;
            }
            let (done, total) = now_progress;
            let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            match queue::heartbeat(
                &self.db,
                claim,
                lease,
                to_i64(done),
                total.map(to_i64),
                now_ms(),
            )
            .await
            {
                Ok(true) => {
                    written = now_progress;
                    extended = Instant::now();
                }
                Ok(false) => {
                    lost.cancel();
                    return;
                }
                // The lease stays valid for a while: try again at the next tick.
                Err(e) => eprintln!("job {}: cannot write progress: {e}", claim.job_id),
            }
        }
    }

    async fn record_failure(&self, claim: &Claim, reason: &str, retryable: bool) {
        let id = claim.job_id;
        let result = queue::fail(
            &self.db,
            claim,
            reason,
            retryable,
            self.config.max_attempts,
            now_ms(),
        )
        .await;
        match result {
            Ok(Outcome::Retry { at }) => eprintln!(
                "job {id}: attempt {} failed, retrying in {} ms: {reason}",
                claim.attempts,
                at - now_ms()
            ),
            Ok(Outcome::Failed) => eprintln!("job {id}: failed: {reason}"),
            Ok(Outcome::LostLease) => eprintln!("job {id}: failed, but its lease had passed on"),
            Err(e) => eprintln!("job {id}: cannot record its failure ({e}): {reason}"),
        }
    }
}

/// `d` ± 20 %, so that idle workers do not look at the queue in lockstep.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    d.mul_f64(0.8 + f64::from(b[0]) / 255.0 * 0.4)
}
