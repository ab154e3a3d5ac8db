//! The app's two ways into the streaming [`pipeline`](crate::pipeline): an upload (a
//! multipart field, in the web process) and a download (a URL through the SSRF-safe fetcher,
//! in the worker). Progress goes into atomics that the caller reads at its own pace (the
//! worker writes it to the database every 250 ms); the result is the report as the database
//! stores it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::multipart::Field;

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
