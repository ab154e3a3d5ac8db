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
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;

use crate::access_log::{AccessLog, Pending};
use crate::backends::{Backend, Backends, InFlight};
use crate::body::{RequestBody, ResponseBody};
use crate::config::RouterConfig;
use crate::errors::Failure;
use crate::headers::{self, X_REQUEST_ID};
use crate::pool::{self, Pool, Sender};
use crate::upgrade;

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) config: RouterConfig,
    pub(crate) public_port: u16,
    pub(crate) backends: Backends,
    pub(crate) log: AccessLog,
}

/// The request head, kept to build the request again for a retry.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    /// The request, once: the head is moved into it.
    fn into_request(self, body: RequestBody) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers;
        request
    }

    /// The request again, for one more attempt.
    fn request(&self, body: RequestBody) -> Request<RequestBody> {
        Head {
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers: self.headers.clone(),
        }
        .into_request(body)
    }
}

/// The body of the request as it will be sent: streamed once, or buffered and replayable.
// One per request, on its task's stack and moved nowhere: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Payload {
    Stream(Option<Request<RequestBody>>),
    Replay(Head, Bytes),
}

/// Handles one client request; never fails (router failures are responses).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: IpAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let request_id = headers::request_id(request.headers());
    let mut pending = Pending {
        log: shared.log.clone(),
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str)
            .to_owned(),
        status: 0,
        instance: None,
        connect: Duration::ZERO,
        started,
        request_id: request_id.clone(),
        retries: 0,
        client,
        error: None,
    };
    if let Err(code) = headers::check_framing(request.headers()) {
        return Ok(fail(pending, Failure::BadRequest(code)));
    }

    let upgrade = upgrade::is_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    // The router has already answered `Expect: 100-continue` by reading the body.
    parts.headers.remove(header::EXPECT);
    headers::set_forwarding(&mut parts.headers, client, shared.public_port, &request_id);
    let head = Head {
        method: parts.method,
        uri: parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from),
        headers: parts.headers,
    };

    let payload = if !upgrade && replayable(&head, &body, shared.config.retry_body_limit) {
        match body.collect().await {
            Ok(collected) => Payload::Replay(head, collected.to_bytes()),
            // The client went away while sending its body.
            Err(_) => {
                return Ok(fail(
                    pending,
                    Failure::BadRequest("incomplete_request_body"),
                ));
            }
        }
    } else {
        Payload::Stream(Some(head.into_request(Either::Left(body))))
    };

    let deadline = tokio::time::Instant::from_std(started + shared.config.first_byte_timeout);
    match forward(&shared, payload, upgrade, deadline, &mut pending).await {
        Ok(answer) => {
            pending.instance = Some(answer.backend.name.clone());
            let reuse = answer
                .sender
                .map(|sender| (answer.backend.pool.clone(), sender));
            Ok(respond(
                answer.response,
                pending,
                answer.in_flight,
                reuse,
                client_upgrade,
                &request_id,
            ))
        }
        Err(failure) => Ok(fail(pending, failure)),
    }
}

/// Whether the request can be buffered and sent again if its instance fails.
fn replayable(head: &Head, body: &Incoming, limit: usize) -> bool {
    let idempotent = matches!(
        head.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    idempotent
        && (body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= limit as u64))
}

/// An instance's answer: its response head, and the connection to reuse once the body is read.
struct Answer {
    backend: Arc<Backend>,
    sender: Option<Sender>,
    response: Response<Incoming>,
    in_flight: InFlight,
}

/// Tries instances until one answers with a response head.
async fn forward(
    shared: &Shared,
    mut payload: Payload,
    upgrade: bool,
    deadline: tokio::time::Instant,
    pending: &mut Pending,
) -> Result<Answer, Failure> {
    let config = &shared.config;
    let backends: &Backends = &shared.backends;
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    let mut failure = Failure::NoReadyInstance;
    let mut replayed = false;
    while tried.len() < config.max_attempts {
        let Some((backend, in_flight)) = backends.pick(&tried) else {
            if tried.is_empty() {
                let wait = config
                    .ready_wait
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                if backends.wait_for_ready(wait).await {
                    continue;
                }
            }
            break;
        };
        tried.push(backend.clone());
        pending.retries = tried.len() as u32 - 1;

        let connect_started = Instant::now();
        let connected = tokio::time::timeout_at(deadline, async {
            if upgrade {
                let stream = pool::connect(backend.port, config.connect_timeout).await?;
                pool::handshake(stream, true).await
            } else {
                backend.pool.get(config.connect_timeout).await
            }
        })
        .await;
        let mut sender = match connected {
            Err(_elapsed) => return Err(Failure::InstanceTimeout),
            Ok(Err(_refused)) => {
                if backend.connect_failed(config) {
                    shared.log.event(format!(
                        "taking {} out of rotation for {} s after {} failed connects",
                        backend.name,
                        config.eject_for.as_secs_f64(),
                        config.eject_after
                    ));
                }
                failure = Failure::InstanceUnreachable;
                continue;
            }
            Ok(Ok(sender)) => sender,
        };
        backend.connect_succeeded();
        pending.connect = connect_started.elapsed();

        let request = match &mut payload {
            Payload::Replay(head, bytes) => head.request(Either::Right(Full::new(bytes.clone()))),
            Payload::Stream(request) => request
                .take()
                .expect("a streamed request is sent at most once"),
        };
        let sent = tokio::time::timeout_at(deadline, sender.try_send_request(request)).await;
        match sent {
            Err(_elapsed) => return Err(Failure::InstanceTimeout),
            Ok(Ok(response)) => {
                return Ok(Answer {
                    sender: (!upgrade).then_some(sender),
                    backend,
                    response,
                    in_flight,
                });
            }
            Ok(Err(mut error)) => {
                if let Some(request) = error.take_message() {
                    // Not a byte of it was written: safe to send anywhere else.
                    if let Payload::Stream(slot) = &mut payload {
                        *slot = Some(request);
                    }
                    failure = Failure::InstanceUnreachable;
                    continue;
                }
                failure = Failure::InstanceFailed;
                match payload {
                    Payload::Replay(..) if !replayed => {
                        replayed = true;
                        continue;
                    }
                    _ => break,
                }
            }
        }
    }
    Err(failure)
}

/// The instance's response, on its way to the client.
fn respond(
    mut response: Response<Incoming>,
    mut pending: Pending,
    in_flight: InFlight,
    reuse: Option<(Arc<Pool>, Sender)>,
    client_upgrade: Option<OnUpgrade>,
    request_id: &str,
) -> Response<ResponseBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let instance_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, switching);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        parts.headers.insert(X_REQUEST_ID, id);
    }
    pending.status = parts.status.as_u16();
    if let (Some(client), Some(instance)) = (client_upgrade, instance_upgrade) {
        pending.finish(0, None);
        tokio::spawn(upgrade::splice(client, instance, in_flight));
        return Response::from_parts(parts, ResponseBody::empty());
    }
    Response::from_parts(
        parts,
        ResponseBody::proxied(body, pending, in_flight, reuse),
    )
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
