//! Body types: what the router sends to instances and what it sends back to clients.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::access_log::Pending;
use std::sync::Arc;

use crate::backends::InFlight;
use crate::pool::{Pool, Sender};

/// A request body: the client's, streamed, or a buffered copy that can be sent again.
pub(crate) type RequestBody = Either<Incoming, Full<Bytes>>;

/// A response body: an instance's, streamed (counting bytes for the access log and keeping
/// the request counted as in flight until it ends), or one the router made.
pub(crate) enum ResponseBody {
    Proxied {
        inner: Incoming,
        bytes: u64,
        log: Option<Box<Pending>>,
        /// The connection the response came on, back to its pool once the body has ended.
        reuse: Option<(Arc<Pool>, Sender)>,
        _in_flight: Option<InFlight>,
    },
    Local(Full<Bytes>),
}

impl ResponseBody {
    pub(crate) fn proxied(
        inner: Incoming,
        log: Pending,
        in_flight: InFlight,
        reuse: Option<(Arc<Pool>, Sender)>,
    ) -> Self {
        ResponseBody::Proxied {
            inner,
            bytes: 0,
            log: Some(Box::new(log)),
            reuse,
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::Proxied {
                inner,
                bytes,
                log,
                reuse,
                ..
            } => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            *bytes += data.len() as u64;
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some((pool, sender)) = reuse.take() {
                            pool.put(sender);
                        }
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
            inner,
            bytes,
            log,
            reuse,
            ..
        } = self
        {
            // Dropped before its end was read: the client went away, unless there was
            // nothing to read (then the connection can carry another request).
            let ended = inner.is_end_stream();
            if let (true, Some((pool, sender))) = (ended, reuse.take()) {
                pool.put(sender);
            }
            if let Some(log) = log.take() {
                log.finish(*bytes, (!ended).then_some("client_closed"));
            }
        }
    }
}
