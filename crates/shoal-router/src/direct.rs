//! The router's own HTTP/1.1 client, for the common request: one whose body is empty or small
//! enough to be held in memory. The request is written to the instance in one go and the
//! response is read by the request's own task, straight from the socket: no connection task and
//! no channels between tasks, which is most of what hyper's client costs per request. Streamed
//! uploads and protocol upgrades go through hyper's client instead (see `proxy`).
//!
//! The bytes themselves are [`crate::codec`]'s: this module only moves them.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// The proxy encodes its requests through this module.
pub(crate) use crate::codec::encode_request;
use crate::codec::{Chunk, Decoded, Framing, Head, MAX_HEAD_BYTES, decode, invalid, parse_head};
use crate::pool::Pool;

/// Room made in the read buffer before reading a response head.
const HEAD_READ: usize = 8 * 1024;
/// Most read from an instance at once while its body streams.
const BODY_READ: usize = 256 * 1024;

/// An open HTTP/1.1 connection to an instance, idle between requests.
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read from the instance and not consumed yet.
    buf: BytesMut,
    /// Part of an answer to the current request (an interim response) has come.
    answered: bool,
}

/// Why an exchange (a request written, its response head read) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeError {
    /// Not a byte of the request was written: it can go anywhere.
    NotSent,
    /// The request was written, then the connection ended before a byte of an answer came:
    /// on a connection that was idle in the pool, most likely because the instance closed it
    /// just as the request went out.
    Closed,
    /// Anything else: the instance may have received the request, and it failed.
    Failed,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            answered: false,
        }
    }

    /// Whether an idle connection can still carry a request: the instance has not closed it
    /// and no byte from it is waiting (a stray byte would be read as the next request's
    /// response). Asks the kernel, with one non-blocking `recv(MSG_PEEK)`: tokio's `try_read`
    /// answers from the reactor's readiness, which says "would block" until the reactor has
    /// polled the socket, however long ago the bytes or the FIN came. A byte that comes after
    /// this check cannot be told from the response; hence no connection is pooled after a
    /// response whose body the instance might still be sending (see [`crate::codec`]).
    pub(crate) fn is_usable(&self) -> bool {
        let mut probe = 0u8;
        // SAFETY: the descriptor stays open while `self.stream` is borrowed, and `probe` is a
        // writable buffer of the one byte asked for. MSG_PEEK leaves any byte in the socket.
        let peeked = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&raw mut probe).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        peeked < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Writes a request whose head is already encoded (see [`encode_request`]) and reads the
    /// head of its response.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        method: &Method,
    ) -> Result<Head, ExchangeError> {
        self.answered = false;
        let mut written = 0;
        while written < request.len() {
            match self.stream.write(&request[written..]).await {
                Ok(n) if n > 0 => written += n,
                _ if written == 0 => return Err(ExchangeError::NotSent),
                _ => return Err(ExchangeError::Failed),
            }
        }
        self.read_head(method).await.map_err(|error| {
            let ended = matches!(
                error.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            );
            if ended && self.buf.is_empty() && !self.answered {
                ExchangeError::Closed
            } else {
                ExchangeError::Failed
            }
        })
    }

    /// Reads the response head to a request made with `method`, skipping interim responses.
    async fn read_head(&mut self, method: &Method) -> io::Result<Head> {
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf, method)? {
                    Some((len, head)) => {
                        self.buf.advance(len);
                        self.answered = true;
                        match head {
                            Some(head) => return Ok(head),
                            None => continue,
                        }
                    }
                    None if self.buf.len() >= MAX_HEAD_BYTES => {
                        return Err(invalid("the instance's response head is too large"));
                    }
                    None => {}
                }
            }
            self.buf.reserve(HEAD_READ);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the instance closed the connection before its response head ended",
                ));
            }
        }
    }
}

/// A response body read straight from the instance's connection; the connection goes back to
/// its pool when the body has ended cleanly.
pub(crate) struct DirectBody {
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes once the body has ended, when it can carry another request.
    reuse: Option<Arc<Pool>>,
    /// The instance closed the connection before the body ended; reported on the next poll,
    /// once what came before has been sent on.
    cut_short: bool,
}

impl DirectBody {
    pub(crate) fn new(conn: Conn, head: &Head, pool: Arc<Pool>) -> Self {
        DirectBody {
            conn: Some(conn),
            framing: head.framing,
            reuse: head.keep_alive.then_some(pool),
            cut_short: false,
        }
    }

    /// Whether what already arrived with the head can be decoded: a chunked body that is
    /// malformed from its first bytes is then refused while the client can still be given a
    /// 502, instead of the response being cut after its head was sent. Decodes a copy, so
    /// nothing is consumed.
    pub(crate) fn starts_well(&self) -> bool {
        let Some(conn) = &self.conn else { return true };
        if !matches!(self.framing, Framing::Chunked(_)) || conn.buf.is_empty() {
            return true;
        }
        let mut framing = self.framing;
        let mut ahead = conn.buf.clone();
        loop {
            match decode(&mut framing, &mut ahead) {
                Ok(Decoded::Frame(_)) => {}
                Ok(Decoded::End | Decoded::NeedMore) => return true,
                Err(_) => return false,
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(
            self.framing,
            Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunk::Done)
        )
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Chunked(Chunk::Done) => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }

    /// Gives the connection back to its pool if the body has ended and nothing unexpected
    /// followed it; otherwise it is closed when dropped.
    pub(crate) fn release(&mut self) {
        if self.is_end_stream()
            && let (Some(pool), Some(conn)) = (self.reuse.take(), self.conn.take())
            && conn.buf.is_empty()
        {
            pool.put_conn(conn);
        }
        self.conn = None;
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.cut_short {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the instance closed the connection before the response body ended",
            ))));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut self.framing, &mut conn.buf)? {
                Decoded::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Decoded::End => {
                    self.release();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => {}
            }
            let want = match self.framing {
                Framing::Length(n) => usize::try_from(n).unwrap_or(BODY_READ).min(BODY_READ),
                _ => BODY_READ,
            };
            if conn.buf.capacity() - conn.buf.len() < want.min(4096) {
                conn.buf.reserve(want.max(4096));
            }
            let read = ready!(pin!(conn.stream.read_buf(&mut conn.buf)).poll(cx))?;
            if read == 0 {
                if self.framing == Framing::UntilClose {
                    self.framing = Framing::Empty;
                    self.conn = None;
                    return Poll::Ready(None);
                }
                // An error now would make hyper drop the connection with the body read so
                // far still unsent: let it send that first.
                self.cut_short = true;
                self.conn = None;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};

    use super::*;

    /// Blocks until the kernel has something to read on `stream`, without reading it and
    /// without letting the runtime's reactor run.
    fn wait_readable(stream: &TcpStream) {
        let mut poll = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for a descriptor `stream` keeps open.
        let ready = unsafe { libc::poll(&raw mut poll, 1, 30_000) };
        assert_eq!(ready, 1, "nothing came within 30 s");
    }

    async fn pair() -> (Conn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        (Conn::new(stream), peer)
    }

    // The current-thread runtime does not poll its reactor between the peer's write and the
    // check, so readiness that tokio caches has not seen the byte or the FIN: the check must
    // ask the kernel.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stray_byte_makes_an_idle_connection_unusable_at_once() {
        let (conn, mut peer) = pair().await;
        assert!(conn.is_usable());
        peer.write_all(b"x").unwrap();
        wait_readable(&conn.stream);
        assert!(!conn.is_usable());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_connection_is_unusable_at_once() {
        let (conn, peer) = pair().await;
        peer.shutdown(Shutdown::Write).unwrap();
        wait_readable(&conn.stream);
        assert!(!conn.is_usable());
    }
}
