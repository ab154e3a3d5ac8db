//! The responses the router makes itself: a status, a short plain-text body and a stable error
//! code in `X-Shoal-Error`, so that scripts can tell a router failure from an app's answer.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ResponseBody;
use crate::headers::X_REQUEST_ID;

/// Why the router answered instead of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No instance is ready (503 `no_ready_instance`).
    NoReadyInstance,
    /// Every instance tried refused the connection (502 `instance_unreachable`).
    InstanceUnreachable,
    /// The instance failed after the request reached it, and it could not safely be
    /// retried (502 `instance_failed`).
    InstanceFailed,
    /// Every instance was at its concurrency limit and the queue was full (503 `queue_full`).
    QueueFull,
    /// The request waited in the queue for a free slot until the queue timeout (503
    /// `queue_timeout`).
    QueueTimeout,
    /// No response head within the first-byte timeout (504 `instance_timeout`).
    InstanceTimeout,
    /// The client announced a body and stopped sending it for the body timeout (408
    /// `body_timeout`).
    BodyTimeout,
    /// The request itself is not acceptable (400, with the reason as code).
    BadRequest(&'static str),
    /// `CONNECT`: the router forwards requests, it does not open tunnels (501
    /// `method_not_supported`).
    MethodNotSupported,
}

impl Failure {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Failure::NoReadyInstance | Failure::QueueFull | Failure::QueueTimeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Failure::InstanceUnreachable | Failure::InstanceFailed => StatusCode::BAD_GATEWAY,
            Failure::InstanceTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::MethodNotSupported => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Failure::NoReadyInstance => "no_ready_instance",
            Failure::InstanceUnreachable => "instance_unreachable",
            Failure::InstanceFailed => "instance_failed",
            Failure::InstanceTimeout => "instance_timeout",
            Failure::QueueFull => "queue_full",
            Failure::QueueTimeout => "queue_timeout",
            Failure::BodyTimeout => "body_timeout",
            Failure::BadRequest(code) => code,
            Failure::MethodNotSupported => "method_not_supported",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Failure::NoReadyInstance => "no instance is ready to take the request",
            Failure::InstanceUnreachable => "no instance accepted a connection",
            Failure::InstanceFailed => "the instance failed before it answered",
            Failure::InstanceTimeout => "the instance did not answer in time",
            Failure::QueueFull => "every instance is busy and the queue is full",
            Failure::QueueTimeout => "every instance stayed busy while the request waited",
            Failure::BodyTimeout => "the client stopped sending its request body",
            Failure::BadRequest(_) => "the request's framing is ambiguous or not supported",
            Failure::MethodNotSupported => "the router does not open tunnels (CONNECT)",
        }
    }

    /// The response sent to the client.
    pub(crate) fn response(self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let status = self.status();
        let body = format!(
            "{} {}: {} (shoal router error `{}`, request id {})\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.explanation(),
            self.code(),
            request_id.to_str().unwrap_or("-")
        );
        let mut response = Response::new(ResponseBody::local(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert("x-shoal-error", HeaderValue::from_static(self.code()));
        headers.insert(X_REQUEST_ID, request_id.clone());
        if matches!(self, Failure::QueueFull | Failure::QueueTimeout) {
            // Load is shed: a client may try again shortly.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(
            self,
            Failure::BadRequest(_) | Failure::MethodNotSupported | Failure::BodyTimeout
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
