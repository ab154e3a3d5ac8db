//! Body types: what the router sends to instances and what it sends back to clients.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::access_log::Pending;
use std::sync::Arc;

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
