//! The log multiplexer: every instance's output and shoal's own events, one line at a time, as
//! `HH:MM:SS web.1  | line`.
//!
//! Readers send whole lines (several at a time when a child writes fast) over a bounded channel
//! to one writer thread, which prefixes them and writes them out in large batches. When the
//! writer falls behind, the channel fills and nothing grows without bound:
//! - instance output waits: the readers stop reading and the children block on their pipes;
//! - shoal's own lines cannot wait (a stop must never wait for stdout): they queue behind the
//!   channel in order, up to [`OVERFLOW`] lines, forwarded by one task; beyond that they are
//!   dropped and counted;
//! - the router's access lines are dropped and counted.
//!
//! The writer reports what was dropped (`dropped N access lines`) as soon as it has written the
//! batch that made room again.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// Colours given to process types in Procfile order (ANSI SGR codes).
const PALETTE: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];
/// The colour of shoal's own lines.
const SYSTEM_COLOR: &str = "1";
/// How many of shoal's own lines may wait behind a full channel. They come from events
/// (starts, exits, restarts), not from traffic, so this is only reached when stdout has been
/// stalled for a long time.
pub const OVERFLOW: usize = 1024;

/// How lines are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Whether to colour the prefix (on a terminal, unless `NO_COLOR` or `--no-color`).
    pub color: bool,
}

/// Who a line comes from.
#[derive(Debug)]
pub struct Source {
    label: String,
    color: &'static str,
}

struct Record {
    source: Arc<Source>,
    /// One or more complete lines, each ending in `\n`.
    lines: Vec<u8>,
}

/// A cheap, cloneable handle that sends lines to the writer.
#[derive(Clone)]
pub struct Log {
    tx: mpsc::Sender<Record>,
    width: Arc<AtomicUsize>,
    system: Arc<Source>,
    behind: Arc<Behind>,
}

/// What happens to lines that cannot wait while the writer is behind; shared by every [`Log`]
/// and the writer thread.
#[derive(Default)]
struct Behind {
    overflow: Mutex<Overflow>,
    dropped_access: AtomicU64,
    dropped_own: AtomicU64,
}

/// shoal's own lines that found the channel full, oldest first.
#[derive(Default)]
struct Overflow {
    records: VecDeque<Record>,
    /// A task is sending `records` into the channel. While it is, later lines queue behind
    /// them rather than overtake them.
    forwarding: bool,
}

impl Behind {
    fn overflow(&self) -> std::sync::MutexGuard<'_, Overflow> {
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notices for lines dropped since the last call, as lines of `system`, if any.
    fn take_notices(&self, system: &Arc<Source>) -> Option<Record> {
        let access = self.dropped_access.swap(0, Ordering::Relaxed);
        let own = self.dropped_own.swap(0, Ordering::Relaxed);
        let mut notices = String::new();
        if access > 0 {
            notices.push_str(&format!(
                "dropped {access} access line{} (the output is too slow)\n",
                if access == 1 { "" } else { "s" }
            ));
        }
        if own > 0 {
            notices.push_str(&format!(
                "dropped {own} of shoal's own line{} (the output is too slow)\n",
                if own == 1 { "" } else { "s" }
            ));
        }
        (!notices.is_empty()).then(|| Record {
            source: system.clone(),
            lines: notices.into_bytes(),
        })
    }
}

/// Sends the overflow into the channel in order, waiting for room; ends when it is empty.
async fn forward(tx: mpsc::Sender<Record>, behind: Arc<Behind>) {
    loop {
        let record = {
            let mut overflow = behind.overflow();
            match overflow.records.pop_front() {
                Some(record) => record,
                None => {
                    overflow.forwarding = false;
                    return;
                }
            }
        };
        if tx.send(record).await.is_err() {
            let mut overflow = behind.overflow();
            overflow.records.clear();
            overflow.forwarding = false;
            return;
        }
    }
}

/// The thread that writes the log; join it after the last [`Log`] is dropped to be sure every
/// line was written.
pub struct LogWriter {
    thread: JoinHandle<()>,
}

impl LogWriter {
    /// Waits until every line sent before the last [`Log`] was dropped has been written.
    pub fn finish(self) {
        let _ = self.thread.join();
    }

    /// Like [`finish`](Self::finish), but gives up after `limit`: shoal must exit even if a
    /// stray task still holds a [`Log`].
    pub fn finish_within(self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

impl Log {
    /// Starts the writer thread on `out`. `width` is the initial label width; longer labels
    /// widen it.
    pub fn start(out: Box<dyn Write + Send>, style: Style, width: usize) -> (Log, LogWriter) {
        // Records hold at most one read of a pipe (16 KiB), so the queue holds at most ~4 MiB.
        let (tx, rx) = mpsc::channel::<Record>(256);
        let width = Arc::new(AtomicUsize::new(width.max("system".len())));
        let behind = Arc::new(Behind::default());
        let system = Arc::new(Source {
            label: "system".into(),
            color: SYSTEM_COLOR,
        });
        let thread = {
            let width = width.clone();
            let behind = behind.clone();
            let system = system.clone();
            std::thread::Builder::new()
                .name("shoal-log".into())
                .spawn(move || write_loop(rx, out, style, &width, &behind, &system))
                .expect("the log thread starts")
        };
        let log = Log {
            tx,
            width,
            system,
            behind,
        };
        (log, LogWriter { thread })
    }

    /// A source for lines of `label`; `kind` (the process type's position) picks its colour.
    pub fn source(&self, label: String, kind: usize) -> Arc<Source> {
        self.width.fetch_max(label.len(), Ordering::Relaxed);
        Arc::new(Source {
            label,
            color: PALETTE[kind % PALETTE.len()],
        })
    }

    /// A source for shoal's own lines under another label (`router`, `chaos`…).
    pub fn named(&self, label: &str) -> Arc<Source> {
        self.width.fetch_max(label.len(), Ordering::Relaxed);
        Arc::new(Source {
            label: label.to_owned(),
            color: SYSTEM_COLOR,
        })
    }

    /// Sends complete lines (each ending in `\n`) from `source`; waits while the writer is
    /// behind.
    pub async fn lines(&self, source: &Arc<Source>, lines: Vec<u8>) {
        debug_assert!(lines.ends_with(b"\n"));
        let _ = self
            .tx
            .send(Record {
                source: source.clone(),
                lines,
            })
            .await;
    }

    /// Writes one line from `source` without waiting: for callers that cannot wait (a body
    /// being dropped, a stop). When the writer is behind, the line waits in order behind the
    /// channel, up to [`OVERFLOW`] lines; past that it is dropped and counted.
    pub fn line_now(&self, source: &Arc<Source>, message: String) {
        let record = Record {
            source: source.clone(),
            lines: line(message),
        };
        let mut overflow = self.behind.overflow();
        if overflow.forwarding {
            if overflow.records.len() < OVERFLOW {
                overflow.records.push_back(record);
            } else {
                self.behind.dropped_own.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let Err(mpsc::error::TrySendError::Full(record)) = self.tx.try_send(record) else {
            return;
        };
        // One task forwards the whole overflow, however long: a task per line was memory
        // without bound.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                overflow.records.push_back(record);
                overflow.forwarding = true;
                runtime.spawn(forward(self.tx.clone(), self.behind.clone()));
            }
            Err(_) => {
                self.behind.dropped_own.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes one access line from `source` without waiting; when the writer is behind, the
    /// line is dropped and counted, and the writer reports the count once it has room again.
    /// A busy router makes lines faster than a slow stdout takes them: keeping them all would
    /// be memory without bound, and waiting would slow the requests down.
    pub fn access(&self, source: &Arc<Source>, message: String) {
        let record = Record {
            source: source.clone(),
            lines: line(message),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(record) {
            self.behind.dropped_access.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes one of shoal's own `system` lines, without waiting for the writer: shoal's own
    /// work (stopping the formation, above all) never waits for a slow or stalled stdout.
    pub fn system(&self, message: impl Into<String>) {
        self.line_now(&self.system, message.into());
    }
}

fn line(message: String) -> Vec<u8> {
    let mut lines = message.into_bytes();
    lines.push(b'\n');
    lines
}

/// How long the writer pauses after writing what was waiting, so that lines arriving in a
/// steady stream are written in batches rather than one write (and one wake-up) each.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

fn write_loop(
    mut rx: mpsc::Receiver<Record>,
    mut out: Box<dyn Write + Send>,
    style: Style,
    width: &AtomicUsize,
    behind: &Behind,
    system: &Arc<Source>,
) {
    const BATCH: usize = 64 * 1024;
    let mut buffer = Vec::with_capacity(BATCH * 2);
    let mut clock = Clock::default();
    let mut prefix = Prefix::default();
    let mut broken = false;
    while let Some(record) = rx.blocking_recv() {
        let time = clock.now();
        let width = width.load(Ordering::Relaxed);
        format_record(
            &mut buffer,
            &record,
            prefix.get(&record, style, width, time),
        );
        // Take whatever else is already waiting, so a busy log is written in large batches
        // while a quiet one is written line by line without delay.
        while buffer.len() < BATCH {
            match rx.try_recv() {
                Ok(record) => {
                    format_record(
                        &mut buffer,
                        &record,
                        prefix.get(&record, style, width, time),
                    );
                }
                Err(_) => break,
            }
        }
        // Taking this batch made room in the channel: say what was dropped while it was full.
        if let Some(notices) = behind.take_notices(system) {
            format_record(
                &mut buffer,
                &notices,
                prefix.get(&notices, style, width, time),
            );
        }
        if !broken {
            // A closed stdout (`shoal start | head`) must not stop the formation: keep
            // supervising and drop the log.
            broken = out.write_all(&buffer).and_then(|()| out.flush()).is_err();
        }
        let drained = buffer.len() < BATCH;
        buffer.clear();
        if drained {
            // Many small lines (a router's access log under load) would otherwise wake this
            // thread and cost a write each. Pausing after a write that emptied the queue lets
            // the next lines gather: a steady stream is written in batches at most every
            // `COALESCE`, while a line after a quiet moment is still written at once.
            std::thread::sleep(COALESCE);
        }
    }
    // A line dropped just as the last batch was taken is still reported.
    if let Some(notices) = behind.take_notices(system)
        && !broken
    {
        let width = width.load(Ordering::Relaxed);
        let prefix = prefix.get(&notices, style, width, clock.now());
        format_record(&mut buffer, &notices, prefix);
        let _ = out.write_all(&buffer);
    }
    let _ = out.flush();
}

fn format_record(buffer: &mut Vec<u8>, record: &Record, prefix: &[u8]) {
    for line in record.lines.split_inclusive(|&b| b == b'\n') {
        buffer.extend_from_slice(prefix);
        // Checking is quicker than converting: most lines are valid UTF-8.
        if std::str::from_utf8(line).is_ok() {
            buffer.extend_from_slice(line);
        } else {
            buffer.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
        }
    }
}

/// The `HH:MM:SS name | ` prefix of the last source written, made again only when the source,
/// the second or the column width changes: a busy router writes thousands of lines a second
/// from one source.
#[derive(Default)]
struct Prefix {
    source: Option<Arc<Source>>,
    width: usize,
    time: String,
    bytes: Vec<u8>,
}

impl Prefix {
    fn get(&mut self, record: &Record, style: Style, width: usize, time: &str) -> &[u8] {
        let same = self
            .source
            .as_ref()
            .is_some_and(|source| Arc::ptr_eq(source, &record.source))
            && self.width == width
            && self.time == time;
        if !same {
            let source = &record.source;
            self.bytes.clear();
            if style.color {
                let _ = write!(
                    self.bytes,
                    "\x1b[{}m{time} {:<width$} |\x1b[0m ",
                    source.color, source.label
                );
            } else {
                let _ = write!(self.bytes, "{time} {:<width$} | ", source.label);
            }
            self.source = Some(source.clone());
            self.width = width;
            time.clone_into(&mut self.time);
        }
        &self.bytes
    }
}

/// Local wall-clock time as `HH:MM:SS`, formatted once per second.
#[derive(Default)]
struct Clock {
    second: u64,
    text: String,
}

impl Clock {
    fn now(&mut self) -> &str {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = local_hms(second);
        }
        &self.text
    }
}

fn local_hms(epoch_seconds: u64) -> String {
    let time = epoch_seconds as libc::time_t;
    // SAFETY: localtime_r only writes into the `tm` we pass; a zeroed `tm` is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if ok {
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    } else {
        let s = epoch_seconds % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

/// A writer that appends to a shared buffer, for tests of anything that logs.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct MemoryOut(pub Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for MemoryOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_time(text: &str) -> String {
        text.lines()
            .map(|l| l.get(9..).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn prefixes_and_aligns_lines() {
        let out = MemoryOut::default();
        let (log, writer) = Log::start(Box::new(out.clone()), Style { color: false }, 5);
        let web = log.source("web.1".into(), 0);
        let worker = log.source("worker.1".into(), 1);
        log.lines(&web, b"one\ntwo\n".to_vec()).await;
        log.lines(&worker, b"bad \xff utf8\n".to_vec()).await;
        log.system("web.1 started");
        drop((log, web, worker));
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            strip_time(&text),
            "web.1    | one\nweb.1    | two\nworker.1 | bad \u{fffd} utf8\nsystem   | web.1 started"
        );
        assert!(text.as_bytes()[2] == b':' && text.as_bytes()[5] == b':');
    }

    #[tokio::test]
    async fn colours_only_when_asked() {
        let out = MemoryOut::default();
        let (log, writer) = Log::start(Box::new(out.clone()), Style { color: true }, 5);
        let web = log.source("web.1".into(), 0);
        log.line_now(&web, "hi".into());
        drop((log, web));
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("\x1b[36m"), "{text:?}");
        assert!(text.ends_with("|\x1b[0m hi\n"), "{text:?}");
    }
}
