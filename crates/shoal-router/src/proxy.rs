//! One request, from the client to an instance and back.
//!
//! Retry rules — a side effect is never repeated:
//! - a connection that could not be opened, or a request that the connection lost before a
//!   byte of it was written (hyper hands such a request back), is tried on another instance,
//!   whatever its method;
//! - an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) whose body is empty or
//!   small enough to be buffered (`retry_body_limit`) is sent once more to another instance
//!   when its instance failed before the response head;
//! - anything else that reached an instance gets 502, and nothing is retried once the
//!   response head was received.
//!
//! Attempts are bounded (`max_attempts`) and all of them happen within `first_byte_timeout`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;

use crate::access_log::{AccessLog, Pending};
use crate::backends::{Backend, Backends, InFlight, Pick};
use crate::body::{BodyEnd, ClientBody, ResponseBody, Upstream};
use crate::config::RouterConfig;
use crate::direct::{self, DirectBody, ExchangeError};
use crate::errors::Failure;
use crate::headers::{self, X_REQUEST_ID};
use crate::pool;
use crate::upgrade;

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) config: RouterConfig,
    /// The public port, as `X-Forwarded-Port` says it.
    pub(crate) forwarded_port: HeaderValue,
    pub(crate) backends: Backends,
    pub(crate) log: AccessLog,
}

/// The request as it will be sent.
enum Payload {
    /// Held in memory (its body is empty or at most `retry_body_limit` bytes) and written in
    /// one go by the router's own client. `resend`: an idempotent request, which may be sent
    /// once more after its instance failed.
    Buffered {
        method: Method,
        wire: Vec<u8>,
        resend: bool,
    },
    /// Streamed through hyper's client (a larger or unsized body, or an upgrade): it may go
    /// elsewhere only while not a byte of it has been written.
    Stream(Option<Box<Request<ClientBody>>>),
}

/// Handles one client request; never fails (router failures are responses).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: HeaderValue,
    mut request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let received = std::time::SystemTime::now();
    let request_id = headers::request_id(request.headers());
    let mut pending = Pending {
        log: shared.log.clone(),
        method: request.method().clone(),
        path: request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        status: 0,
        instance: None,
        counters: None,
        request_body: None,
        to_head: None,
        connect: Duration::ZERO,
        queue: Duration::ZERO,
        started,
        request_id: request_id.clone(),
        retries: 0,
        client,
        error: None,
    };
    if request.method() == Method::CONNECT {
        return Ok(fail(pending, Failure::MethodNotSupported));
    }
    if let Err(code) = headers::check_framing(request.headers()) {
        return Ok(fail(pending, Failure::BadRequest(code)));
    }
    if let Err(code) = headers::check_host(&mut request) {
        return Ok(fail(pending, Failure::BadRequest(code)));
    }

    let upgrade = upgrade::is_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    // The router has already answered `Expect: 100-continue` by reading the body.
    parts.headers.remove(header::EXPECT);
    headers::set_forwarding(
        &mut parts.headers,
        &pending.client,
        &shared.forwarded_port,
        &request_id,
    );
    headers::set_request_start(&mut parts.headers, received);
    let target = pending.path.as_str();

    let limit = shared.config.retry_body_limit as u64;
    let small = body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= limit);
    let body = ClientBody::new(body, shared.config.body_timeout);
    let outcome = body.outcome();
    pending.request_body = Some(outcome.clone());
    let payload = if !upgrade && small {
        let bytes = if body.is_end_stream() {
            Bytes::new()
        } else {
            match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return Ok(fail(pending, client_body_failure(outcome.get()))),
            }
        };
        Payload::Buffered {
            wire: direct::encode_request(&parts.method, target, &parts.headers, &bytes),
            resend: idempotent(&parts.method),
            method: parts.method,
        }
    } else {
        // The framing is the router's to state: the exact length in canonical form (a client's
        // `070000` is not passed on), else chunked — which hyper's client would not use for a
        // GET or HEAD by itself, dropping their body.
        parts.headers.remove(header::CONTENT_LENGTH);
        if let Some(length) = body.size_hint().exact() {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        } else if !upgrade && !body.is_end_stream() {
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        let mut request = Request::new(body);
        *request.method_mut() = parts.method;
        *request.uri_mut() = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = parts.headers;
        Payload::Stream(Some(Box::new(request)))
    };

    match forward(&shared, payload, upgrade, &mut pending).await {
        Ok(answer) => {
            pending.instance = Some(answer.backend.name.clone());
            pending.to_head = Some(started.elapsed());
            Ok(respond(
                answer.response,
                pending,
                answer.in_flight,
                client_upgrade,
                &request_id,
            ))
        }
        // A streamed body that the client stopped sending, or sent malformed, fails the
        // exchange with the instance too: the client is to blame, not the instance.
        Err(failure) => match outcome.get() {
            BodyEnd::Fine => Ok(fail(pending, failure)),
            end => Ok(fail(pending, client_body_failure(end))),
        },
    }
}

/// The answer to a request whose body the client did not deliver whole.
fn client_body_failure(end: BodyEnd) -> Failure {
    match end {
        BodyEnd::TimedOut => Failure::BodyTimeout,
        // The client went away mid-body (then nobody reads this), or its chunked framing was
        // malformed.
        BodyEnd::Broken | BodyEnd::Fine => Failure::BadRequest("incomplete_request_body"),
    }
}

/// Whether repeating the request cannot repeat a side effect (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// An instance's answer: its response head, with the body still to be read.
struct Answer {
    backend: Arc<Backend>,
    response: Response<Upstream>,
    in_flight: InFlight,
}

/// How an attempt on one instance failed.
enum Tried {
    /// No connection could be opened.
    ConnectFailed,
    /// Not a byte of the request was written: safe to send anywhere else.
    NotSent,
    /// The instance failed after (part of) the request reached it.
    Failed,
}

/// Tries instances until one answers with a response head. Every attempt passes admission
/// (`Backends::pick`), so a retry waits for a free slot like a new request; the time spent
/// waiting for one is counted in `pending.queue`. The first-byte timeout runs from the first
/// time the request is sent.
async fn forward(
    shared: &Shared,
    mut payload: Payload,
    upgrade: bool,
    pending: &mut Pending,
) -> Result<Answer, Failure> {
    let config = &shared.config;
    let backends: &Backends = &shared.backends;
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    let mut failure = Failure::NoReadyInstance;
    let mut replayed = false;
    let queue_deadline = tokio::time::Instant::now() + config.queue_timeout;
    let mut deadline: Option<tokio::time::Instant> = None;
    while tried.len() < config.max_attempts {
        let asked = Instant::now();
        let picked = backends.pick(&tried, queue_deadline).await;
        pending.queue += asked.elapsed();
        let (backend, in_flight) = match picked {
            Pick::Ready(backend, in_flight) => (backend, in_flight),
            Pick::QueueFull => return Err(Failure::QueueFull),
            Pick::QueueTimeout => return Err(Failure::QueueTimeout),
            Pick::NoneReady => {
                if tried.is_empty() {
                    let wait = deadline.map_or(config.ready_wait, |deadline| {
                        config
                            .ready_wait
                            .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                    });
                    if backends.wait_for_ready(wait).await {
                        continue;
                    }
                }
                break;
            }
        };
        let deadline = *deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + config.first_byte_timeout);
        tried.push(backend.clone());
        pending.retries = tried.len() as u32 - 1;
        // A failure is logged with the last instance it reached.
        pending.instance = Some(backend.name.clone());
        pending.counters = Some(backend.counters.clone());

        let attempt = attempt(shared, &backend, &mut payload, upgrade, pending);
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_elapsed) => return Err(Failure::InstanceTimeout),
            Ok(Ok(response)) => {
                return Ok(Answer {
                    backend,
                    response,
                    in_flight,
                });
            }
            Ok(Err(Tried::ConnectFailed)) => {
                if backend.connect_failed(config) {
                    // The router never takes the last instances out: say what really happens.
                    shared.log.event(if backends.all_ejected() {
                        format!(
                            "{} failed {} connects in a row; it stays in rotation, as every other instance is out of it too",
                            backend.name, config.eject_after
                        )
                    } else {
                        format!(
                            "taking {} out of rotation for {} s after {} failed connects",
                            backend.name,
                            config.eject_for.as_secs_f64(),
                            config.eject_after
                        )
                    });
                }
                failure = Failure::InstanceUnreachable;
            }
            Ok(Err(Tried::NotSent)) => failure = Failure::InstanceUnreachable,
            Ok(Err(Tried::Failed)) => {
                failure = Failure::InstanceFailed;
                match payload {
                    Payload::Buffered { resend: true, .. } if !replayed => replayed = true,
                    _ => break,
                }
            }
        }
    }
    Err(failure)
}

/// Sends the request to one instance and reads its response head.
async fn attempt(
    shared: &Shared,
    backend: &Arc<Backend>,
    payload: &mut Payload,
    upgrade: bool,
    pending: &mut Pending,
) -> Result<Response<Upstream>, Tried> {
    let config = &shared.config;
    let connect_started = Instant::now();
    match payload {
        Payload::Buffered {
            method,
            wire,
            resend,
        } => {
            let (mut conn, mut reused) = backend
                .pool
                .conn(config.connect_timeout)
                .await
                .map_err(|_| Tried::ConnectFailed)?;
            backend.connect_succeeded();
            pending.connect = connect_started.elapsed();
            let head = loop {
                match conn.exchange(wire, method).await {
                    Ok(head) => break head,
                    // An idle connection the instance closed as the request went out: once
                    // more on a new connection to the same instance, if nothing was written
                    // or the request may be repeated.
                    Err(ExchangeError::NotSent) if reused => {}
                    Err(ExchangeError::Closed) if reused && *resend => {}
                    Err(ExchangeError::NotSent) => return Err(Tried::NotSent),
                    Err(_) => return Err(Tried::Failed),
                }
                conn = backend
                    .pool
                    .fresh(config.connect_timeout)
                    .await
                    .map_err(|_| Tried::ConnectFailed)?;
                reused = false;
            };
            let body = DirectBody::new(conn, &head, backend.pool.clone());
            if !body.starts_well() {
                return Err(Tried::Failed);
            }
            let mut response = Response::new(Upstream::Direct(body));
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            Ok(response)
        }
        Payload::Stream(slot) => {
            let connected = if upgrade {
                match pool::connect(backend.addr, config.connect_timeout).await {
                    Ok(stream) => pool::handshake(stream, true).await,
                    Err(error) => Err(error),
                }
            } else {
                backend.pool.get(config.connect_timeout).await
            };
            let mut sender = connected.map_err(|_| Tried::ConnectFailed)?;
            backend.connect_succeeded();
            pending.connect = connect_started.elapsed();
            let request = slot
                .take()
                .expect("a streamed request is sent at most once");
            match sender.try_send_request(*request).await {
                Ok(response) => Ok(response.map(|body| Upstream::Hyper {
                    body,
                    reuse: (!upgrade).then(|| (backend.pool.clone(), sender)),
                })),
                Err(mut error) => match error.take_message() {
                    Some(request) => {
                        *slot = Some(Box::new(request));
                        Err(Tried::NotSent)
                    }
                    None => Err(Tried::Failed),
                },
            }
        }
    }
}

/// The instance's response, on its way to the client.
fn respond(
    mut response: Response<Upstream>,
    mut pending: Pending,
    in_flight: InFlight,
    client_upgrade: Option<OnUpgrade>,
    request_id: &HeaderValue,
) -> Response<ResponseBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    // A 101 to a request that did not ask to upgrade would hand the client's connection to
    // a protocol it never chose; a transfer coding other than chunked would reach the client
    // without its header (the router removes framing headers), so the client could not decode
    // it. nginx refuses both too.
    if (switching && client_upgrade.is_none())
        || headers::has_coding_other_than_chunked(response.headers())
    {
        return fail(pending, Failure::InstanceFailed);
    }
    let instance_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    headers::normalize_content_length(&mut parts.headers);
    headers::remove_hop_by_hop(&mut parts.headers, switching);
    parts.headers.insert(X_REQUEST_ID, request_id.clone());
    pending.status = parts.status.as_u16();
    if let (Some(client), Some(instance)) = (client_upgrade, instance_upgrade) {
        pending.finish(0, None);
        tokio::spawn(upgrade::splice(client, instance, in_flight));
        return Response::from_parts(parts, ResponseBody::empty());
    }
    Response::from_parts(parts, ResponseBody::proxied(body, pending, in_flight))
}

fn fail(mut pending: Pending, failure: Failure) -> Response<ResponseBody> {
    let response = failure.response(&pending.request_id);
    pending.status = failure.status().as_u16();
    pending.error = Some(failure.code());
    // A router-made body is small and sent at once; log it now.
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    pending.finish(bytes, None);
    response
}
