//! verify's HTTP client: sends one request straight to one instance's port, on a connection of
//! its own, with the headers shoal's router would add (`X-Forwarded-For`, `-Proto`, `-Host`,
//! `-Port`, `X-Request-Id`) and the formation's public address as `Host`. Talking to the
//! instance directly, rather than through the router, lets verify choose which instance
//! serves each request while the router keeps no affinity feature at all. Redirects are not
//! followed: a redirect is an answer to compare.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bodies larger than this are an error rather than something to compare.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) method: String,
    /// Path and query.
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// An instance's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The first value of header `name`.
    pub(crate) fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every value of header `name`, in order.
    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a request goes, and what the router would have told the instance about the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// The instance's port.
    pub(crate) port: u16,
    /// The formation's public port (`Host`, `X-Forwarded-Port`).
    pub(crate) public_port: u16,
}

/// Sends `request` and reads the whole answer, within `timeout`.
pub(crate) async fn send(
    request: &Outgoing,
    route: Route,
    timeout: Duration,
) -> Result<Answer, String> {
    match tokio::time::timeout(timeout, exchange(request, route)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no complete answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}

async fn exchange(request: &Outgoing, route: Route) -> Result<Answer, String> {
    let stream = connect(route.port).await?;
    let (mut sender, connection) = http1::Builder::new()
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|err| format!("cannot start HTTP on the connection: {err}"))?;
    let connection = tokio::spawn(connection);

    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(request.path.as_str());
    let host = format!("127.0.0.1:{}", route.public_port);
    let has = |name: &str| {
        request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        builder = builder.header("host", &host);
    }
    for (name, value) in &request.headers {
        // The framing is the client's to set, from the body it really sends.
        let framing = [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !framing {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let forwarded_host = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or(host.as_str(), |(_, v)| v.as_str());
    builder = builder
        .header("x-forwarded-for", "127.0.0.1")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", forwarded_host)
        .header("x-forwarded-port", route.public_port.to_string())
        .header("x-request-id", format!("{:032x}", fastrand::u128(..)));
    if !request.body.is_empty() || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
        builder = builder.header("content-length", request.body.len().to_string());
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|err| format!("cannot send this request: {err}"))?;
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|err| describe_hyper(&err))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| format!("the body of the answer was cut off: {err}"))?
        .to_bytes();
    connection.abort();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = match TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(stream) => stream,
        Err(v4) => TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .await
            .map_err(|_| format!("cannot connect to port {port}: {v4}"))?,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn describe_hyper(err: &hyper::Error) -> String {
    if err.is_incomplete_message() {
        "the instance closed the connection without a complete answer".into()
    } else {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
