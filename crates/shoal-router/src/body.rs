//! Body types: what the router sends to instances and what it sends back to clients.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::access_log::Pending;

use crate::backends::InFlight;
use crate::direct::DirectBody;
use crate::pool::{Pool, Sender};

/// The body of an instance's response, as it is read.
pub(crate) enum Upstream {
    /// Read by hyper's client; the connection goes back to its pool once the body has ended.
    Hyper {
        body: Incoming,
        reuse: Option<(Arc<Pool>, Sender)>,
    },
    /// Read by the router's own client, which gives its connection back itself.
    Direct(DirectBody),
}

impl Upstream {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Upstream::Hyper { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(Into::into))),
            Upstream::Direct(direct) => direct
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Upstream::Hyper { body, .. } => body.is_end_stream(),
            Upstream::Direct(direct) => direct.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Upstream::Hyper { body, .. } => body.size_hint(),
            Upstream::Direct(direct) => direct.size_hint(),
        }
    }

    /// Gives the connection back to its pool when the body has ended (else it is closed).
    fn release(&mut self) {
        match self {
            Upstream::Hyper { body, reuse } => {
                if let (true, Some((pool, sender))) = (body.is_end_stream(), reuse.take()) {
                    pool.put(sender);
                }
            }
            Upstream::Direct(direct) => direct.release(),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: an instance's, streamed (counting bytes for the access log and keeping
/// the request counted as in flight until it ends), or one the router made.
pub(crate) enum ResponseBody {
    Proxied {
        inner: Upstream,
        bytes: u64,
        log: Option<Box<Pending>>,
        _in_flight: Option<InFlight>,
    },
    Local(Full<Bytes>),
}

impl ResponseBody {
    pub(crate) fn proxied(inner: Upstream, log: Pending, in_flight: InFlight) -> Self {
        ResponseBody::Proxied {
            inner,
            bytes: 0,
            log: Some(Box::new(log)),
            _in_flight: Some(in_flight),
        }
    }

    pub(crate) fn local(text: impl Into<Bytes>) -> Self {
        ResponseBody::Local(Full::new(text.into()))
    }

    pub(crate) fn empty() -> Self {
        ResponseBody::Local(Full::new(Bytes::new()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::Proxied {
                inner, bytes, log, ..
            } => {
                let polled = inner.poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            *bytes += data.len() as u64;
                        }
                    }
                    Poll::Ready(None) => {
                        inner.release();
                        if let Some(log) = log.take() {
                            log.finish(*bytes, None);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(log) = log.take() {
                            log.finish(*bytes, Some("instance_closed_mid_response"));
                        }
                    }
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(full) => full.is_end_stream(),
            ResponseBody::Proxied { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(full) => full.size_hint(),
            ResponseBody::Proxied { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let ResponseBody::Proxied {
            inner, bytes, log, ..
        } = self
        {
            // Dropped before its end was read: the client went away, unless there was
            // nothing to read (then the connection can carry another request).
            let ended = inner.is_end_stream();
            inner.release();
            if let Some(log) = log.take() {
                log.finish(*bytes, (!ended).then_some("client_closed"));
            }
        }
    }
}

/// A client's request body, read with an idle deadline: when no byte of it arrives for
/// `body_timeout`, it fails, so that a client that announces a body and sends nothing cannot hold
/// its connection (and a `max_connections` slot) for ever. Only time the router spends waiting for
/// the client counts: while the instance is not reading, the body is not polled and the deadline
/// does not run.
pub(crate) struct ClientBody {
    inner: Incoming,
    idle: Duration,
    /// When a byte last came (or the body was first polled).
    progress: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    outcome: Arc<BodyOutcome>,
}

/// How a client's body ended, for the response the router makes when forwarding it failed.
#[derive(Debug, Default)]
pub(crate) struct BodyOutcome {
    end: AtomicU8,
    /// Bytes of the body received so far.
    bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Read to its end, or not (yet) failed.
    Fine,
    /// No byte came within the body timeout.
    TimedOut,
    /// The client went away mid-body, or its framing was malformed (a bad chunk).
    Broken,
}

impl BodyOutcome {
    pub(crate) fn get(&self) -> BodyEnd {
        match self.end.load(Ordering::Acquire) {
            1 => BodyEnd::TimedOut,
            2 => BodyEnd::Broken,
            _ => BodyEnd::Fine,
        }
    }

    fn set(&self, end: BodyEnd) {
        let value = match end {
            BodyEnd::Fine => 0,
            BodyEnd::TimedOut => 1,
            BodyEnd::Broken => 2,
        };
        self.end.store(value, Ordering::Release);
    }

    /// Bytes of the body received so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// The error a timed-out client body reports to whoever reads it.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no byte of its request body for {0:?}")]
pub(crate) struct BodyTimedOut(Duration);

impl ClientBody {
    pub(crate) fn new(inner: Incoming, idle: Duration) -> Self {
        ClientBody {
            inner,
            idle,
            progress: None,
            timer: None,
            outcome: Arc::default(),
        }
    }

    /// Where the body's end is recorded; readable after the body was handed on.
    pub(crate) fn outcome(&self) -> Arc<BodyOutcome> {
        self.outcome.clone()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // The timer is not moved per frame (that costs a timer-wheel update): it is
                // only checked against the last progress when it fires.
                this.progress = Some(Instant::now());
                if let Some(data) = frame.data_ref() {
                    this.outcome
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.outcome.set(BodyEnd::Broken);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.progress.get_or_insert(now);
                let deadline = since + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.outcome.set(BodyEnd::TimedOut);
                        Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
