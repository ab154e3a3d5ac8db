//! The app's two ways into the streaming [`pipeline`](crate::pipeline): an upload (a
//! multipart field, in the web process) and a download (a URL through the SSRF-safe fetcher,
//! in the worker). Progress goes into atomics that the caller reads at its own pace (the
//! worker writes it to the database every 250 ms); the result is the report as the database
//! stores it.
//!
//! A worker runs one job at a time, so one pipeline. The web process runs one per upload in
//! progress, and each holds a pool of blocks (about 6 MiB), three threads and a scratch file
//! of up to the size limit: [`Pipelines`] bounds how many run at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::multipart::Field;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::jobs::Report;
use crate::fetch::Fetcher;
use crate::inspect;
use crate::pipeline::{self, PipelineError};

/// Bytes done and expected so far, written by the pipeline, read by whoever reports them.
#[derive(Debug)]
pub struct Progress {
    done: AtomicU64,
    /// `u64::MAX` while unknown.
    total: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// Nothing done, total unknown.
    pub fn new() -> Progress {
        Progress {
            done: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
        }
    }

    fn set(&self, done: u64, total: Option<u64>) {
        self.done.store(done, Ordering::Relaxed);
        self.total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// `(bytes done, bytes expected)`.
    pub fn get(&self) -> (u64, Option<u64>) {
        let total = self.total.load(Ordering::Relaxed);
        (
            self.done.load(Ordering::Relaxed),
            (total != u64::MAX).then_some(total),
        )
    }
}

/// The bound on the pipelines a process runs at once: a pipeline waits for a turn at most a
/// given time, then is refused, so that a burst of uploads queues briefly and is then turned
/// away (the web process answers 503 with `Retry-After`) instead of each one taking its
/// memory, threads and disk space at once.
#[derive(Debug)]
pub struct Pipelines {
    turns: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
}

/// A turn to run a pipeline; it ends when this is dropped.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl Pipelines {
    /// At most `limit` pipelines at once (at least one); one waits at most `wait` for a turn.
    pub fn new(limit: usize, wait: Duration) -> Pipelines {
        let limit = limit.max(1);
        Pipelines {
            turns: Arc::new(Semaphore::new(limit)),
            limit,
            wait,
        }
    }

    /// A turn, or `None` when none came free within the wait.
    pub async fn enter(&self) -> Option<Turn> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.turns).acquire_owned()).await {
            Ok(Ok(permit)) => Some(Turn { _permit: permit }),
            // The semaphore is never closed: only the timeout leads here.
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// How many turns are taken now.
    pub fn running(&self) -> usize {
        self.limit - self.turns.available_permits()
    }
}

/// The stored form of the inspector's report (`details` keeps all of it as JSON).
pub fn to_stored(report: &inspect::Report) -> Report {
    Report {
        size: i64::try_from(report.size).unwrap_or(i64::MAX),
        sha256: report.sha256.clone(),
        blake3: report.blake3.clone(),
        mime: report.file_type.mime().to_owned(),
        description: report.file_type.label().to_owned(),
        text_lines: report
            .text
            .map(|t| i64::try_from(t.lines).unwrap_or(i64::MAX)),
        text_encoding: report.text.map(|t| t.encoding.label().to_owned()),
        details: serde_json::to_string(report).unwrap_or_else(|_| "{}".to_owned()),
    }
}

/// Digests an uploaded multipart field into `dest`, refusing more than `max_bytes`. (The
/// upload's progress is the browser's to show: the job exists only once it is digested.)
/// The web process takes a [`Turn`] of its [`Pipelines`] first.
pub async fn upload(
    field: Field<'_>,
    dest: &Path,
    max_bytes: u64,
) -> Result<Report, PipelineError> {
    let report = pipeline::digest_stream(field, dest, max_bytes, |_| {}).await?;
    Ok(to_stored(&report))
}

/// Downloads `url` into `dest` and digests it.
pub async fn download(
    fetcher: &Fetcher,
    url: &str,
    dest: &Path,
    progress: &Progress,
) -> Result<Report, PipelineError> {
    let report =
        pipeline::digest_url(fetcher, url, dest, |p| progress.set(p.done, p.total)).await?;
    Ok(to_stored(&report))
}
