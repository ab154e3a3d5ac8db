//! A byte stream (an upload or a download) through the hashers into a scratch file.
//!
//! [`digest_stream`] takes any stream of chunks (the web process passes a multipart field),
//! [`digest_url`] downloads with a [`Fetcher`] first (the worker). Each chunk goes, without
//! being copied (`Bytes` is shared), to three threads fed through bounded channels:
//! SHA-256; BLAKE3 plus the type and text scan; the writer of the scratch file. The download
//! keeps going while they work, and waits only when the slowest of them is 1 MiB behind, so
//! memory stays constant whatever the size, and the hashes cost the download no time while a
//! core is free. (A small budget is also faster: a chunk is still in the CPU cache when the
//! second and third thread read it.)
//!
//! # The scratch file
//! - On success `dest` holds the whole file (written, not synced: it is scratch).
//! - On an error (size limit, a failed download or upload, a full disk) `dest` is removed and
//!   every thread has ended before the error is returned.
//! - When the future is dropped (the job is cancelled, SIGTERM), the threads see their
//!   channels close and end on their own after at most 1 MiB of chunks; nothing is joined
//!   and `dest` is left as far as it got. The caller removes it: the worker empties its
//!   scratch directory after every job and when it starts.
//!
//! # Progress
//! The callback runs on the task driving the future, once per chunk received (a download's
//! chunks are a few KiB to 128 KiB: thousands of calls per GiB), with the byte count so far.
//! Keep it cheap: store the number (e.g. `tokio::sync::watch::Sender::send_replace`) and let
//! another task write it to the database at its own pace, or wrap the callback in
//! [`throttle`].

use std::fs::File;
use std::future::poll_fn;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::fetch::{FetchError, Fetcher};
use crate::inspect::{Report, Sniffed, Sniffer};

/// How far a download progressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received so far.
    pub done: u64,
    /// The size the server announced (`Content-Length`), when it did.
    pub total: Option<u64>,
}

/// Why a file could not be digested. `Display` is a readable reason for the user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The download failed (its size limit is reported as [`PipelineError::TooLarge`]).
    #[error(transparent)]
    Fetch(FetchError),
    /// The file is larger than the limit.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The input stream (an upload) failed.
    #[error("reading the upload failed: {cause}")]
    Input { cause: String },
    /// The scratch file could not be created or written.
    #[error("cannot write the scratch file `{}`: {error}", path.display())]
    Scratch { path: PathBuf, error: io::Error },
    /// A worker thread could not be started or stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether the same job may succeed later: failed downloads that
    /// [`FetchError::is_retryable`] says so, and scratch files that could not be written.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Fetch(error) => error.is_retryable(),
            PipelineError::Scratch { .. } => true,
            _ => false,
        }
    }
}

impl From<FetchError> for PipelineError {
    fn from(error: FetchError) -> Self {
        match error {
            FetchError::TooLarge { limit } => PipelineError::TooLarge { limit },
            error => PipelineError::Fetch(error),
        }
    }
}

/// Streams `stream` into the new file `dest` (created or truncated), hashing and inspecting
/// it on the way, and refusing more than `max_bytes`. `progress` gets the byte count after
/// each chunk. See the module documentation for what happens to `dest` on errors and cancel.
pub async fn digest_stream<S, E>(
    stream: S,
    dest: &Path,
    max_bytes: u64,
    progress: impl FnMut(u64),
) -> Result<Report, PipelineError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    run(
        stream,
        dest,
        max_bytes,
        None,
        |error: E| PipelineError::Input {
            cause: error.to_string(),
        },
        progress,
    )
    .await
}

/// Downloads `url` with `fetcher` into `dest` and reports on it, as [`digest_stream`] does
/// (the size limit is the fetcher's). `progress` is called once with `done: 0` as soon as
/// the answer's headers are in (with `total` when the server sent `Content-Length`), then
/// after each chunk.
pub async fn digest_url(
    fetcher: &Fetcher,
    url: &str,
    dest: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<Report, PipelineError> {
    let download = fetcher.get(url).await?;
    let total = download.content_length();
    progress(Progress { done: 0, total });
    run(
        download,
        dest,
        fetcher.policy().max_bytes,
        total,
        PipelineError::from,
        |done| progress(Progress { done, total }),
    )
    .await
}

/// Wraps a progress callback so that it runs at most once per `interval`; the first call
/// always runs, later ones in between are dropped.
pub fn throttle<P>(interval: Duration, mut callback: impl FnMut(P)) -> impl FnMut(P) {
    let mut last: Option<Instant> = None;
    move |progress| {
        let now = Instant::now();
        if last.is_none_or(|last| now.duration_since(last) >= interval) {
            last = Some(now);
            callback(progress);
        }
    }
}

async fn run<S, E>(
    stream: S,
    dest: &Path,
    max_bytes: u64,
    expected: Option<u64>,
    input_error: impl Fn(E) -> PipelineError,
    mut progress: impl FnMut(u64),
) -> Result<Report, PipelineError>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let scratch_error = |error| PipelineError::Scratch {
        path: dest.to_owned(),
        error,
    };
    let file = File::create(dest).map_err(scratch_error)?;
    if let Some(size) = expected.filter(|&size| size <= max_bytes)
        && let Err(error) = reserve(&file, size)
    {
        remove_scratch(dest);
        return Err(scratch_error(error));
    }
    let lanes = match Lanes::start(file) {
        Ok(lanes) => lanes,
        Err(error) => {
            remove_scratch(dest);
            return Err(PipelineError::Internal(format!(
                "cannot start a hashing thread: {error}"
            )));
        }
    };
    let mut stream = pin!(stream);
    let mut done = 0u64;
    let fed = async {
        while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            let chunk = item.map_err(&input_error)?;
            if chunk.is_empty() {
                continue;
            }
            done += chunk.len() as u64;
            if done > max_bytes {
                return Err(PipelineError::TooLarge { limit: max_bytes });
            }
            if !lanes.send(chunk).await {
                // A lane stopped early (the writer, on an I/O error): `finish` tells why.
                break;
            }
            progress(done);
        }
        Ok(())
    }
    .await;
    let finished = lanes.finish().await;
    let result = match (fed, finished) {
        (Err(error), _) => Err(error),
        (Ok(()), Err(LaneError::Write(error))) => Err(scratch_error(error)),
        (Ok(()), Err(LaneError::Stopped)) => Err(PipelineError::Internal(
            "a hashing thread stopped unexpectedly".to_owned(),
        )),
        (Ok(()), Ok((sha256, (blake3, sniffed)))) => Ok(Report::assemble(sha256, blake3, sniffed)),
    };
    if result.is_err() {
        remove_scratch(dest);
    }
    result
}

/// Reserves disk space for the `size` bytes announced, without changing the file's length:
/// a disk too full for the file fails now rather than part-way, and the file system
/// allocates the blocks once instead of write by write (about half the kernel time of
/// writing a GiB to ext4). File systems that cannot reserve space write as before.
fn reserve(file: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(size) else {
        return Ok(());
    };
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate only reads its integer arguments; the descriptor is open for writing.
    let done = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if done == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => Err(error),
        _ => Ok(()),
    }
}

/// Removes a failed scratch file; only a regular file, never what a caller may have passed
/// by mistake (a device, a symbolic link's target).
fn remove_scratch(dest: &Path) {
    if std::fs::symlink_metadata(dest).is_ok_and(|metadata| metadata.is_file()) {
        let _ = std::fs::remove_file(dest);
    }
}

/// How many bytes may be on their way between the stream and the slowest thread: what the
/// pipeline's memory use is bounded by, whatever the file size.
const IN_FLIGHT_BYTES: usize = 1 << 20;

/// How many chunks may wait for each thread (a bound for streams of tiny chunks).
const LANE_DEPTH: usize = 64;

/// A chunk shared by the three threads; its share of the in-flight budget is returned when
/// the last of them drops it.
struct Chunk {
    bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// The three threads a stream fans out to.
struct Lanes {
    budget: Arc<Semaphore>,
    senders: [mpsc::Sender<Arc<Chunk>>; 3],
    sha256: oneshot::Receiver<[u8; 32]>,
    blake3: oneshot::Receiver<([u8; 32], Sniffed)>,
    write: oneshot::Receiver<io::Result<()>>,
}

enum LaneError {
    Write(io::Error),
    Stopped,
}

impl Lanes {
    fn start(file: File) -> io::Result<Lanes> {
        let (sha256_tx, sha256) = lane("digest-sha256", |mut chunks| {
            let mut hasher = Sha256::new();
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk.bytes);
            }
            hasher.finalize().into()
        })?;
        let (blake3_tx, blake3) = lane("digest-blake3", |mut chunks| {
            let mut hasher = blake3::Hasher::new();
            let mut sniffer = Sniffer::default();
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk.bytes);
                sniffer.update(&chunk.bytes);
            }
            (*hasher.finalize().as_bytes(), sniffer.finish())
        })?;
        let (write_tx, write) = lane("digest-write", move |mut chunks| {
            let mut file = file;
            while let Some(chunk) = chunks.blocking_recv() {
                file.write_all(&chunk.bytes)?;
            }
            file.flush()
        })?;
        Ok(Lanes {
            budget: Arc::new(Semaphore::new(IN_FLIGHT_BYTES)),
            senders: [sha256_tx, blake3_tx, write_tx],
            sha256,
            blake3,
            write,
        })
    }

    /// Hands `bytes` to every thread, waiting while the in-flight budget is spent or a queue
    /// is full. False when a thread has stopped.
    async fn send(&self, bytes: Bytes) -> bool {
        // A chunk larger than the whole budget waits for all the others and goes alone.
        let share = bytes.len().min(IN_FLIGHT_BYTES) as u32;
        let Ok(budget) = self.budget.clone().acquire_many_owned(share).await else {
            return false;
        };
        let chunk = Arc::new(Chunk {
            bytes,
            _budget: budget,
        });
        for sender in &self.senders {
            if sender.send(chunk.clone()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Closes the queues and waits for the threads' results.
    async fn finish(self) -> Result<([u8; 32], ([u8; 32], Sniffed)), LaneError> {
        drop(self.senders);
        let write = self.write.await;
        let sha256 = self.sha256.await;
        let blake3 = self.blake3.await;
        match (write, sha256, blake3) {
            (Ok(Err(error)), _, _) => Err(LaneError::Write(error)),
            (Ok(Ok(())), Ok(sha256), Ok(blake3)) => Ok((sha256, blake3)),
            _ => Err(LaneError::Stopped),
        }
    }
}

/// Starts a named thread that consumes a bounded queue of chunks and sends back its result.
fn lane<T: Send + 'static>(
    name: &str,
    work: impl FnOnce(mpsc::Receiver<Arc<Chunk>>) -> T + Send + 'static,
) -> io::Result<(mpsc::Sender<Arc<Chunk>>, oneshot::Receiver<T>)> {
    let (sender, chunks) = mpsc::channel(LANE_DEPTH);
    let (result_tx, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = result_tx.send(work(chunks));
        })?;
    Ok((sender, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_passes_the_first_call_and_drops_calls_within_the_interval() {
        let mut seen = Vec::new();
        {
            let mut callback = throttle(Duration::from_secs(3600), |n: u64| seen.push(n));
            callback(1);
            callback(2);
            callback(3);
        }
        assert_eq!(seen, [1]);
        let mut all = Vec::new();
        {
            let mut callback = throttle(Duration::ZERO, |n: u64| all.push(n));
            callback(1);
            callback(2);
        }
        assert_eq!(all, [1, 2]);
    }
}
