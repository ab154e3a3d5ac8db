//! The connection as hyper sees it while it sends a request and reads the answer's head: its
//! reads stop at the end of the answer's (final, non-`1xx`) head, so that the body's bytes
//! are still here when hyper has the head. A body that `Content-Length` delimits can then be
//! read by the caller straight into its own buffers ([`Gated::take_body`]), with neither hyper's
//! read buffer nor a copy out of it; any other body is left to hyper ([`Gated::open`]).
//!
//! hyper still parses and checks every head: this module only finds where a head ends, by the
//! same rule as hyper's parser (httparse): the first empty line, each line ending in `\n` or
//! `\r\n`. A head that does not end within [`MAX_HEAD`] bytes is left to hyper as it is.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes looked through for the end of a head; hyper refuses far smaller heads
/// than this by default.
pub(super) const MAX_HEAD: usize = 512 * 1024;

/// How much is read from the connection at a time while looking for the end of the head.
const READ: usize = 16 * 1024;

/// A connection shared by hyper (which gets a clone) and the fetcher.
pub(super) struct Gated<T>(Arc<Mutex<Gate<T>>>);

impl<T> Clone for Gated<T> {
    fn clone(&self) -> Self {
        Gated(Arc::clone(&self.0))
    }
}

struct Gate<T> {
    /// `None` once [`Gated::take_body`] took it.
    io: Option<T>,
    /// Read from the connection and not yet handed on.
    buffered: Vec<u8>,
    /// How many leading bytes of `buffered` hyper may read: heads found whole, or everything
    /// once the gate is open.
    ready: usize,
    state: State,
    /// The read that [`State::Found`] held back.
    waiting: Option<Waker>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Looking for the end of the final head.
    Head,
    /// The final head is found: hyper reads it and then waits, until [`Gated::open`].
    Found,
    /// hyper reads what is buffered, then from the connection.
    Open,
}

impl<T> Gated<T> {
    pub(super) fn new(io: T) -> Gated<T> {
        Gated(Arc::new(Mutex::new(Gate {
            io: Some(io),
            buffered: Vec::new(),
            ready: 0,
            state: State::Head,
            waiting: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Gate<T>> {
        // Nothing is left half-done by a panic while locked.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection and the body's bytes read so far, when hyper has read the final head
    /// and nothing after it; `None` otherwise, and then the gate is open for hyper instead.
    /// hyper's next read waits for ever: drop its connection task.
    pub(super) fn take_body(&self) -> Option<(T, Vec<u8>)> {
        let mut gate = self.lock();
        if gate.state == State::Found && gate.ready == 0 {
            let io = gate.io.take()?;
            return Some((io, std::mem::take(&mut gate.buffered)));
        }
        drop(gate);
        self.open();
        None
    }

    /// Lets hyper read on: what is buffered, then the connection.
    pub(super) fn open(&self) {
        let mut gate = self.lock();
        gate.state = State::Open;
        gate.ready = gate.buffered.len();
        let waiting = gate.waiting.take();
        drop(gate);
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

impl<T> Gate<T> {
    /// Marks the heads that `buffered` holds whole as ready for hyper, up to the final one.
    fn find_heads(&mut self) {
        while self.state == State::Head {
            let rest = &self.buffered[self.ready..];
            // Empty lines before a status line are skipped, as hyper's parser does: they are
            // not a head of their own.
            let skipped = empty_lines(rest);
            let rest = &rest[skipped..];
            match head_end(rest) {
                Some(end) => {
                    if !is_informational(&rest[..end]) {
                        self.state = State::Found;
                    }
                    self.ready += skipped + end;
                }
                None => {
                    if rest.len() > MAX_HEAD {
                        // Not a head this module understands: hyper judges it.
                        self.state = State::Open;
                        self.ready = self.buffered.len();
                    }
                    return;
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gated<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let gate = &mut *guard;
        loop {
            if gate.ready > 0 {
                let n = gate.ready.min(buf.remaining());
                buf.put_slice(&gate.buffered[..n]);
                gate.buffered.drain(..n);
                gate.ready -= n;
                return Poll::Ready(Ok(()));
            }
            let Some(io) = gate.io.as_mut() else {
                // Taken: hyper is dropped with its task.
                gate.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            };
            match gate.state {
                State::Found => {
                    gate.waiting = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                State::Open => return Pin::new(io).poll_read(cx, buf),
                State::Head => {
                    let start = gate.buffered.len();
                    gate.buffered.resize(start + READ, 0);
                    let mut read = ReadBuf::new(&mut gate.buffered[start..]);
                    let polled = Pin::new(io).poll_read(cx, &mut read);
                    let n = read.filled().len();
                    gate.buffered.truncate(start + n);
                    match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Ready(Ok(())) if n == 0 => {
                            // The connection ended within a head: hyper says what that means.
                            gate.state = State::Open;
                            gate.ready = gate.buffered.len();
                            if gate.ready == 0 {
                                return Poll::Ready(Ok(()));
                            }
                        }
                        Poll::Ready(Ok(())) => gate.find_heads(),
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gated<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Where the first head in `bytes` ends (just after its empty line), if it does.
pub(super) fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'\n') {
        let line_end = at + offset + 1;
        match bytes.get(line_end) {
            Some(b'\n') => return Some(line_end + 1),
            Some(b'\r') => match bytes.get(line_end + 1) {
                Some(b'\n') => return Some(line_end + 2),
                Some(_) => {}
                None => return None,
            },
            Some(_) => {}
            None => return None,
        }
        at = line_end;
    }
    None
}

/// How many bytes of whole empty lines (`\r\n` or `\n`) `bytes` starts with.
pub(super) fn empty_lines(bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &bytes[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return at,
        }
    }
}

/// Whether a head is an informational (`1xx`) answer, which another head follows.
pub(super) fn is_informational(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.") && head.get(8) == Some(&b' ') && head.get(9) == Some(&b'1')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn empty_lines_before_a_status_line_are_counted_whole() {
        assert_eq!(empty_lines(b"\r\n\nHTTP/1.1 200 OK"), 3);
        assert_eq!(empty_lines(b"HTTP/1.1 200 OK\r\n"), 0);
        // A `\r` whose `\n` has not arrived yet is not a whole empty line.
        assert_eq!(empty_lines(b"\r\n\r"), 2);
    }

    #[test]
    fn a_head_ends_at_its_first_empty_line_with_either_line_ending() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"), Some(25));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\nA: b\n\nbody"), Some(22));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\nB"), None);
        assert_eq!(head_end(b""), None);
        assert!(is_informational(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(is_informational(b"HTTP/1.1 103 Early Hints\r\n\r\n"));
        assert!(!is_informational(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!is_informational(b"HTTP/1.1 201 Created\r\n\r\n"));
        assert!(!is_informational(b"HTTP/1.1 "));
    }

    /// hyper's reads get the heads and stop; the body stays for `take`, byte for byte,
    /// whichever way the connection's reads split the answer.
    #[tokio::test]
    async fn reads_stop_after_the_final_head_and_the_body_stays() {
        let answer: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let head_len = answer.len() - 5;
        for split in [1, 7, 26, 30, head_len, answer.len()] {
            let (mut server, client) = tokio::io::duplex(64);
            let gated = Gated::new(client);
            let mut reader = gated.clone();
            let writer = tokio::spawn(async move {
                server.write_all(&answer[..split]).await.unwrap();
                tokio::task::yield_now().await;
                server.write_all(&answer[split..]).await.unwrap();
                server
            });
            let mut seen = Vec::new();
            while seen.len() < head_len {
                let mut buf = [0u8; 8];
                let n = reader.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            assert_eq!(seen, &answer[..head_len], "split at {split}");
            let _server = writer.await.unwrap();
            let (mut io, early) = gated.take_body().expect("the final head was read");
            let mut body = early;
            while body.len() < 5 {
                let mut buf = [0u8; 8];
                let n = io.read(&mut buf).await.unwrap();
                body.extend_from_slice(&buf[..n]);
            }
            assert_eq!(body, b"hello", "split at {split}");
        }
    }

    /// Opened, the gate hands hyper the rest: what it buffered, then the connection.
    #[tokio::test]
    async fn an_open_gate_reads_on() {
        let (mut server, client) = tokio::io::duplex(1024);
        let gated = Gated::new(client);
        let mut reader = gated.clone();
        server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nchunk one ")
            .await
            .unwrap();
        let mut head = [0u8; 19];
        reader.read_exact(&mut head).await.unwrap();
        gated.open();
        server.write_all(b"chunk two").await.unwrap();
        drop(server);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"chunk one chunk two");
        // Not taken once hyper may have read past the head.
        assert!(gated.take_body().is_none());
    }
}
