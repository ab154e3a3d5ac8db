//! A byte stream (an upload or a download) through the hashers into a scratch file.
//!
//! [`digest_stream`] takes any stream of chunks (the web process passes a multipart field),
//! [`digest_url`] downloads with a [`Fetcher`] first (the worker).
//!
//! # How the bytes flow
//! A download is read straight from the connection into blocks of [`BLOCK`] bytes taken
//! from a pool of [`BLOCKS`] (when `Content-Length` delimits it; hyper's chunks of any other
//! body, and a stream's chunks, are copied into the blocks). Each full block goes, shared and never copied again, to three threads: SHA-256
//! (the slowest stage: a core of its own when one is free); BLAKE3 plus the type and text
//! scan; the writer of the scratch file. A block goes back to the pool when the last of them
//! is done with it, and the stream waits only when every block is in use, so memory stays
//! constant whatever the size, and the download goes on while the hashes work. Large blocks
//! keep the hand-offs between threads few (three per MiB) and the writes large.
//!
//! # The scratch file
//! - It is written with direct I/O where the file system allows it: the kernel takes the
//!   bytes from the pipeline's own blocks to the disk instead of copying them into the page
//!   cache. Scratch is written once and never read back by the pipeline, so caching it would
//!   cost a copy of every byte and push a file's worth of other data out of the cache. Where
//!   direct I/O is refused (tmpfs on older kernels, a device), and for the last partial
//!   block, the writes are ordinary buffered writes.
//! - On success `dest` holds the whole file (written, not synced: it is scratch).
//! - On an error (size limit, a failed download or upload, a full disk) `dest` is removed and
//!   every thread has ended before the error is returned.
//! - When the future is dropped (the job is cancelled, SIGTERM), the threads see their
//!   channels close and end on their own after at most [`BLOCKS`] blocks; nothing is joined
//!   and `dest` is left as far as it got. The caller removes it: the worker empties its
//!   scratch directory after every job and when it starts.
//!
//! # Progress
//! The callback runs on the task driving the future, once per read (a download's reads are a
//! few KiB to 1 MiB: thousands of calls per GiB), with the byte count so far.
//! Keep it cheap: store the number (e.g. in an atomic, or with
//! `tokio::sync::watch::Sender::send_replace`) and let another task write it to the database
//! at its own pace, or wrap the callback in [`throttle`].

use std::fs::File;
use std::future::poll_fn;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::fetch::{Download, FetchError, Fetcher};
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
    let stream = pin!(stream);
    let source = Chunks {
        stream,
        rest: Bytes::new(),
    };
    run(
        source,
        dest,
        max_bytes,
        None,
        progress,
        &mut Stages::default(),
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
    progress: impl FnMut(Progress),
) -> Result<Report, PipelineError> {
    digest_url_measured(fetcher, url, dest, progress, &mut Stages::default()).await
}

/// [`digest_url`], also telling where the time went (for benchmarks).
pub async fn digest_url_measured(
    fetcher: &Fetcher,
    url: &str,
    dest: &Path,
    mut progress: impl FnMut(Progress),
    stages: &mut Stages,
) -> Result<Report, PipelineError> {
    let download = fetcher.get(url).await?;
    let total = download.content_length();
    progress(Progress { done: 0, total });
    run(
        download,
        dest,
        fetcher.policy().max_bytes,
        total,
        |done| progress(Progress { done, total }),
        stages,
    )
    .await
}

/// Where a pipeline's time went: what the stream delivered, how long the task feeding the
/// threads waited, and how long each thread worked. A thread's idle time is the run's time
/// less its busy time.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stages {
    /// Reads from the source: for a download, one per read from the connection; for a
    /// stream, one per chunk (a chunk that spans two blocks counts twice).
    pub chunks: u64,
    /// Blocks handed to the threads.
    pub blocks: u64,
    /// Time spent waiting for the source's next bytes (the network, the upload), the reads
    /// themselves included.
    pub stream_wait: Duration,
    /// Time spent waiting for a free block (the threads were behind).
    pub block_wait: Duration,
    /// The SHA-256 thread's time hashing.
    pub sha256: Duration,
    /// The SHA-256 thread's time waiting for its next block: the time the slowest stage had
    /// nothing to do, which is what holds a pipeline below the speed of SHA-256.
    pub sha256_wait: Duration,
    /// The BLAKE3 thread's time hashing and scanning.
    pub blake3: Duration,
    /// The writer's time in system calls.
    pub write: Duration,
    /// CPU time (user + system) of the SHA-256 thread.
    pub sha256_cpu: Duration,
    /// CPU time of the BLAKE3 and type-scan thread.
    pub blake3_cpu: Duration,
    /// CPU time of the writer thread (mostly the kernel's, in its system calls).
    pub write_cpu: Duration,
    /// Bytes written to the scratch file with direct I/O (the rest went through the page
    /// cache).
    pub direct_bytes: u64,
    /// The writer's system calls (several blocks go in one when they queued up).
    pub writes: u64,
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

/// Where a pipeline's bytes come from.
trait Source {
    /// Puts the next bytes into `space` (never empty) and says how many; 0 at the end.
    async fn fill(&mut self, space: &mut [u8]) -> Result<usize, PipelineError>;
}

impl Source for Download {
    async fn fill(&mut self, space: &mut [u8]) -> Result<usize, PipelineError> {
        Ok(self.read_into(space).await?)
    }
}

/// A stream of chunks, copied into the blocks.
struct Chunks<'a, S> {
    stream: Pin<&'a mut S>,
    /// What the last chunk has left.
    rest: Bytes,
}

impl<S, E> Source for Chunks<'_, S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    async fn fill(&mut self, space: &mut [u8]) -> Result<usize, PipelineError> {
        while self.rest.is_empty() {
            match poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await {
                None => return Ok(0),
                Some(Err(error)) => {
                    return Err(PipelineError::Input {
                        cause: error.to_string(),
                    });
                }
                Some(Ok(chunk)) => self.rest = chunk,
            }
        }
        let n = space.len().min(self.rest.len());
        space[..n].copy_from_slice(&self.rest[..n]);
        self.rest.advance(n);
        Ok(n)
    }
}

async fn run(
    mut source: impl Source,
    dest: &Path,
    max_bytes: u64,
    expected: Option<u64>,
    mut progress: impl FnMut(u64),
    stages: &mut Stages,
) -> Result<Report, PipelineError> {
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
    let mut lanes = match Lanes::start(file) {
        Ok(lanes) => lanes,
        Err(error) => {
            remove_scratch(dest);
            return Err(PipelineError::Internal(format!(
                "cannot start a hashing thread: {error}"
            )));
        }
    };
    let mut done = 0u64;
    // The block being filled and how many of its bytes are filled.
    let mut filling: Option<(Buffer, usize)> = None;
    let fed = async {
        loop {
            let (buffer, filled) = match &mut filling {
                Some(block) => block,
                None => {
                    let waiting = Instant::now();
                    let buffer = lanes.buffer().await;
                    stages.block_wait += waiting.elapsed();
                    filling.insert((buffer, 0))
                }
            };
            let waiting = Instant::now();
            let read = source.fill(&mut buffer.bytes_mut()[*filled..]).await?;
            stages.stream_wait += waiting.elapsed();
            if read == 0 {
                break;
            }
            stages.chunks += 1;
            done += read as u64;
            if done > max_bytes {
                return Err(PipelineError::TooLarge { limit: max_bytes });
            }
            *filled += read;
            if *filled == BLOCK {
                let (buffer, filled) = filling.take().expect("the block just filled");
                stages.blocks += 1;
                if !lanes.send(buffer, filled).await {
                    // A lane stopped early (the writer, on an I/O error): `finish` tells why.
                    return Ok(());
                }
            }
            progress(done);
        }
        if let Some((buffer, filled)) = filling.take()
            && filled > 0
        {
            stages.blocks += 1;
            lanes.send(buffer, filled).await;
        }
        Ok(())
    }
    .await;
    let finished = lanes.finish(stages).await;
    let result = match (fed, finished) {
        (Err(error), _) => Err(error),
        (Ok(()), Err(LaneError::Write(error))) => Err(scratch_error(error)),
        (Ok(()), Err(LaneError::Stopped)) => Err(PipelineError::Internal(
            "a hashing thread stopped unexpectedly".to_owned(),
        )),
        (Ok(()), Ok((sha256, blake3, sniffed))) => Ok(Report::assemble(sha256, blake3, sniffed)),
    };
    if result.is_err() {
        remove_scratch(dest);
    }
    result
}

/// Reserves disk space for the `size` bytes announced, without changing the file's length:
/// a disk too full for the file fails now rather than part-way, and the file system
/// allocates the blocks once instead of write by write. File systems that cannot reserve
/// space write as before.
fn reserve(file: &File, size: u64) -> io::Result<()> {
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

/// The size of a block: large enough that handing it to three threads costs nothing next to
/// hashing it, and that each write is one large request to the disk; small enough that the
/// blocks in use stay in the CPU's last-level cache between the three readers.
const BLOCK: usize = 1 << 20;

/// How many blocks a pipeline may use: what its memory is bounded by, whatever the file
/// size. The stream fills one while each of the three threads works on another, and the
/// two spare ones absorb a slow moment of the disk or the scheduler (with four the stream
/// waited longer for a free block, and a GiB took 3-36 % longer in pairs of runs).
const BLOCKS: usize = 6;

/// Direct I/O wants buffer addresses, file offsets and lengths that are multiples of the
/// device's logical block size; 4096 is a multiple of every common one.
const ALIGN: usize = 4096;

/// [`BLOCK`] bytes starting at an [`ALIGN`] boundary.
struct Buffer {
    memory: Box<[u8]>,
    start: usize,
}

impl Buffer {
    fn new() -> Buffer {
        let memory = vec![0u8; BLOCK + ALIGN].into_boxed_slice();
        let start = memory.as_ptr().align_offset(ALIGN);
        Buffer { memory, start }
    }

    fn bytes(&self) -> &[u8] {
        &self.memory[self.start..self.start + BLOCK]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.memory[self.start..self.start + BLOCK]
    }
}

/// A filled block shared by the three threads; its buffer goes back to the pool when the
/// last of them drops it.
struct Block {
    buffer: Option<Buffer>,
    len: usize,
    pool: mpsc::UnboundedSender<Buffer>,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        &self.buffer.as_ref().expect("present until dropped").bytes()[..self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            // The pipeline may be gone (cancelled): the buffer is then freed here.
            let _ = self.pool.send(buffer);
        }
    }
}

/// The three threads a stream fans out to, and the pool of blocks they share.
struct Lanes {
    pool: mpsc::UnboundedSender<Buffer>,
    free: mpsc::UnboundedReceiver<Buffer>,
    allocated: usize,
    senders: [Queue; 3],
    sha256: oneshot::Receiver<Finished<Hashed>>,
    blake3: oneshot::Receiver<Finished<([u8; 32], Sniffed, Duration)>>,
    write: oneshot::Receiver<Finished<Written>>,
}

/// The sending end of a lane's queue of blocks.
type Queue = mpsc::Sender<Arc<Block>>;

/// What a lane's thread returns, with the CPU time it used.
struct Finished<T> {
    outcome: T,
    cpu: Duration,
}

/// How the SHA-256 thread ended.
struct Hashed {
    sha256: [u8; 32],
    busy: Duration,
    /// Time waiting for the next block.
    wait: Duration,
}

/// How the writer thread ended.
struct Written {
    result: io::Result<()>,
    busy: Duration,
    direct_bytes: u64,
    writes: u64,
}

enum LaneError {
    Write(io::Error),
    Stopped,
}

impl Lanes {
    fn start(file: File) -> io::Result<Lanes> {
        let (sha256_tx, sha256) = lane("digest-sha256", |mut blocks| {
            let mut hasher = Sha256::new();
            let mut busy = Duration::ZERO;
            let mut wait = Duration::ZERO;
            loop {
                let waiting = Instant::now();
                let Some(block) = blocks.blocking_recv() else {
                    break;
                };
                let started = Instant::now();
                wait += started - waiting;
                hasher.update(block.bytes());
                busy += started.elapsed();
            }
            Hashed {
                sha256: hasher.finalize().into(),
                busy,
                wait,
            }
        })?;
        let (blake3_tx, blake3) = lane("digest-blake3", |mut blocks| {
            let mut hasher = blake3::Hasher::new();
            let mut sniffer = Sniffer::default();
            let mut busy = Duration::ZERO;
            while let Some(block) = blocks.blocking_recv() {
                let started = Instant::now();
                hasher.update(block.bytes());
                sniffer.update(block.bytes());
                busy += started.elapsed();
            }
            (*hasher.finalize().as_bytes(), sniffer.finish(), busy)
        })?;
        let (write_tx, write) = lane("digest-write", move |mut blocks| {
            let mut writer = ScratchWriter::new(file);
            let mut busy = Duration::ZERO;
            let mut batch = Vec::with_capacity(BLOCKS);
            while let Some(block) = blocks.blocking_recv() {
                // The blocks that queued up while the last write waited for the disk go to it
                // in one request: when the disk is what holds the pipeline back, fewer and
                // larger requests get more through.
                batch.push(block);
                while let Ok(block) = blocks.try_recv() {
                    batch.push(block);
                }
                let parts: Vec<&[u8]> = batch.iter().map(|block| block.bytes()).collect();
                let started = Instant::now();
                let written = writer.write_parts(&parts);
                busy += started.elapsed();
                drop(parts);
                batch.clear();
                if written.is_err() {
                    return writer.outcome(written, busy);
                }
            }
            writer.outcome(Ok(()), busy)
        })?;
        let (pool, free) = mpsc::unbounded_channel();
        Ok(Lanes {
            pool,
            free,
            allocated: 0,
            senders: [sha256_tx, blake3_tx, write_tx],
            sha256,
            blake3,
            write,
        })
    }

    /// A free buffer: a returned one, a new one while fewer than [`BLOCKS`] exist, or else
    /// the next one returned.
    async fn buffer(&mut self) -> Buffer {
        if let Ok(buffer) = self.free.try_recv() {
            return buffer;
        }
        if self.allocated < BLOCKS {
            self.allocated += 1;
            return Buffer::new();
        }
        self.free
            .recv()
            .await
            .expect("the pool's sender lives in `self`")
    }

    /// Hands the first `len` bytes of `buffer` to every thread. False when a thread has
    /// stopped.
    async fn send(&self, buffer: Buffer, len: usize) -> bool {
        let block = Arc::new(Block {
            buffer: Some(buffer),
            len,
            pool: self.pool.clone(),
        });
        for sender in &self.senders {
            if sender.send(block.clone()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Closes the queues and waits for the threads' results; notes their busy times.
    async fn finish(self, stages: &mut Stages) -> Result<([u8; 32], [u8; 32], Sniffed), LaneError> {
        drop(self.senders);
        let write = self.write.await;
        let sha256 = self.sha256.await;
        let blake3 = self.blake3.await;
        if let Ok(Finished { outcome, cpu }) = &write {
            stages.write = outcome.busy;
            stages.write_cpu = *cpu;
            stages.direct_bytes = outcome.direct_bytes;
            stages.writes = outcome.writes;
        }
        if let Ok(Finished { outcome, cpu }) = &sha256 {
            stages.sha256 = outcome.busy;
            stages.sha256_wait = outcome.wait;
            stages.sha256_cpu = *cpu;
        }
        if let Ok(Finished { outcome, cpu }) = &blake3 {
            stages.blake3 = outcome.2;
            stages.blake3_cpu = *cpu;
        }
        let (write, sha256, blake3) = (
            write.map(|f| f.outcome),
            sha256.map(|f| f.outcome),
            blake3.map(|f| f.outcome),
        );
        match (write, sha256, blake3) {
            (
                Ok(Written {
                    result: Err(error), ..
                }),
                _,
                _,
            ) => Err(LaneError::Write(error)),
            (
                Ok(Written { result: Ok(()), .. }),
                Ok(Hashed { sha256, .. }),
                Ok((blake3, sniffed, _)),
            ) => Ok((sha256, blake3, sniffed)),
            _ => Err(LaneError::Stopped),
        }
    }
}

/// Starts a named thread that consumes a queue of blocks and sends back its result and the
/// CPU time it used.
fn lane<T: Send + 'static>(
    name: &str,
    work: impl FnOnce(mpsc::Receiver<Arc<Block>>) -> T + Send + 'static,
) -> io::Result<(Queue, oneshot::Receiver<Finished<T>>)> {
    // Never more blocks than exist: sending never waits.
    let (sender, blocks) = mpsc::channel(BLOCKS);
    let (result_tx, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let outcome = work(blocks);
            let _ = result_tx.send(Finished {
                outcome,
                cpu: thread_cpu(),
            });
        })?;
    Ok((sender, result))
}

/// The CPU time (user + system) the calling thread has used so far; zero if the clock is
/// not available.
pub fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer, which points to one.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Writes the scratch file: with direct I/O while the file system allows it and the data is
/// aligned (every block but the last is), with ordinary writes otherwise.
struct ScratchWriter {
    file: File,
    direct: bool,
    written: u64,
    direct_bytes: u64,
    /// Write system calls that wrote something.
    writes: u64,
}

impl ScratchWriter {
    fn new(file: File) -> ScratchWriter {
        let direct = file.metadata().is_ok_and(|m| m.is_file()) && set_direct(&file, true).is_ok();
        ScratchWriter {
            file,
            direct,
            written: 0,
            direct_bytes: 0,
            writes: 0,
        }
    }

    /// Writes `parts` one after the other; the leading parts that direct I/O can take in one
    /// request (whole multiples of [`ALIGN`] at aligned addresses) go in one `writev`.
    fn write_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let aligned = |part: &&[u8]| {
            !part.is_empty()
                && part.len().is_multiple_of(ALIGN)
                && (part.as_ptr() as usize).is_multiple_of(ALIGN)
        };
        let together = if self.direct && self.written.is_multiple_of(ALIGN as u64) {
            parts.iter().take_while(|part| aligned(part)).count()
        } else {
            0
        };
        let mut rest = parts;
        if together > 1 {
            let slices: Vec<IoSlice<'_>> =
                parts[..together].iter().map(|p| IoSlice::new(p)).collect();
            match self.file.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    self.writes += 1;
                    self.written += n as u64;
                    self.direct_bytes += n as u64;
                    // What a short write left of these parts is written part by part.
                    for part in &parts[..together] {
                        if n >= part.len() {
                            n -= part.len();
                        } else {
                            self.write(&part[n..])?;
                            n = 0;
                        }
                    }
                    rest = &parts[together..];
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => self.stop_direct()?,
                Err(error) => return Err(error),
            }
        }
        for part in rest {
            self.write(part)?;
        }
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let aligned = data.len() / ALIGN * ALIGN;
            let direct = self.direct
                && aligned > 0
                && (data.as_ptr() as usize).is_multiple_of(ALIGN)
                && self.written.is_multiple_of(ALIGN as u64);
            if !direct && self.direct {
                self.stop_direct()?;
            }
            let part = if direct { &data[..aligned] } else { data };
            match self.file.write(part) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.writes += 1;
                    data = &data[n..];
                    self.written += n as u64;
                    if direct {
                        self.direct_bytes += n as u64;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A file system may accept the flag and still refuse the write.
                Err(error) if direct && error.raw_os_error() == Some(libc::EINVAL) => {
                    self.stop_direct()?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn outcome(&self, result: io::Result<()>, busy: Duration) -> Written {
        Written {
            result,
            busy,
            direct_bytes: self.direct_bytes,
            writes: self.writes,
        }
    }

    fn stop_direct(&mut self) -> io::Result<()> {
        self.direct = false;
        set_direct(&self.file, false)
    }
}

/// Turns direct I/O on or off for `file`'s open file description.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL only read and set the descriptor's status flags; `fd` is
    // open for as long as `file` is borrowed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_uses_direct_io_for_whole_blocks_and_writes_the_rest_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch");
        let file = File::create(&path).unwrap();
        let mut writer = ScratchWriter::new(file);
        if !writer.direct {
            eprintln!("NOT RUN: the file system of the temporary directory refuses direct I/O");
            return;
        }
        let data: Vec<u8> = (0..3 * BLOCK + 4096 + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut buffers: Vec<Buffer> = (0..4).map(|_| Buffer::new()).collect();
        let mut parts = Vec::new();
        for (part, buffer) in data.chunks(BLOCK).zip(&mut buffers) {
            buffer.bytes_mut()[..part.len()].copy_from_slice(part);
            parts.push(part.len());
        }
        let parts: Vec<&[u8]> = buffers
            .iter()
            .zip(&parts)
            .map(|(b, &len)| &b.bytes()[..len])
            .collect();
        // One block alone, then two whole blocks in one request with the partial one after.
        writer.write_parts(&parts[..1]).unwrap();
        writer.write_parts(&parts[1..]).unwrap();
        // The three whole blocks and the aligned part of the last one went direct, the 17
        // bytes after it through the page cache.
        assert_eq!(writer.direct_bytes, (3 * BLOCK + 4096) as u64);
        assert_eq!(writer.writes, 4);
        assert!(!writer.direct);
        drop(writer);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_device_is_written_without_direct_io() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            eprintln!("NOT RUN: no /dev/null");
            return;
        };
        let mut writer = ScratchWriter::new(file);
        assert!(!writer.direct);
        writer.write(&Buffer::new().bytes()[..5000]).unwrap();
        assert_eq!(writer.direct_bytes, 0);
    }

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
