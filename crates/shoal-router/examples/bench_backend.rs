//! A minimal HTTP/1.1 backend for the router benchmark (`bench/router.sh`).
//!
//! Listens on `127.0.0.1:$PORT` (keep-alive on, one thread) and answers:
//! - `GET /`          → 200 `hello\n`
//! - `GET /bytes/N`   → 200 with N bytes, streamed in 64 KiB chunks from one static buffer,
//!   so the whole body is never held in memory
//! - `POST /`         → reads the body to the end, then 200 `ok\n` (for the rolling-restart
//!   benchmark, whose load mixes GETs and POSTs)
//! - anything else    → 404
//!
//! Build: `cargo build --release -p shoal-router --example bench_backend`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const CHUNK_SIZE: usize = 64 * 1024;
static CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

/// `remaining` bytes, produced one 64 KiB frame at a time.
struct Stream {
    remaining: u64,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = this.remaining.min(CHUNK_SIZE as u64) as usize;
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

type ResponseBody = Either<Full<Bytes>, Stream>;

fn respond(status: StatusCode, body: ResponseBody, length: u64) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    respond(
        status,
        Either::Left(Full::new(Bytes::from_static(body.as_bytes()))),
        body.len() as u64,
    )
}

async fn handle(request: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
    if request.method() == Method::POST && request.uri().path() == "/" {
        use http_body_util::BodyExt;
        return Ok(match request.into_body().collect().await {
            Ok(_) => text(StatusCode::OK, "ok\n"),
            Err(_) => text(StatusCode::BAD_REQUEST, "incomplete body\n"),
        });
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    let path = request.uri().path();
    if path == "/" {
        return Ok(text(StatusCode::OK, "hello\n"));
    }
    if let Some(count) = path.strip_prefix("/bytes/") {
        return Ok(match count.parse::<u64>() {
            Ok(n) => respond(StatusCode::OK, Either::Right(Stream { remaining: n }), n),
            Err(_) => text(
                StatusCode::BAD_REQUEST,
                "expected /bytes/N with N a byte count\n",
            ),
        });
    }
    Ok(text(StatusCode::NOT_FOUND, "not found\n"))
}

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Ok(Ok(port)) => port,
        _ => {
            eprintln!("bench_backend: set PORT to the port to listen on");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(serve(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("bench_backend listening on http://{addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, typically; the benchmark never gets there.
                eprintln!("bench_backend: accept failed: {err}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
