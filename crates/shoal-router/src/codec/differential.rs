//! A differential test of the codec against hyper's HTTP/1.1 client: generated response byte
//! streams, every framing and many malformations, delivered in pieces with junk after the
//! message, are read by both; they must agree on the status, the headers, the body, and
//! whether the connection may carry another request — or both refuse. `PROPTEST_CASES` runs
//! more cases than the default 256.
//!
//! Where the router deliberately differs, the difference is written once, in [`expected`]:
//! - after a HEAD request or a 204/304 response the router never reuses the connection, since
//!   a body sent by mistake after the head would be read as the next response;
//! - after a `Content-Length` beside a `Transfer-Encoding` the connection is not reused: the
//!   framing is suspect (RFC 9112 §6.3: "ought to be handled as an error"). Both remove the
//!   `Content-Length`, as an intermediary must before forwarding;
//! - a transfer coding in an HTTP/1.0 response: hyper refuses the response; the router reads it
//!   by its coding and closes the connection after it (RFC 9112 §6.1: the framing is faulty, and
//!   the recipient "MUST ... close the connection after processing the message");
//! - a 101 nobody asked for: hyper passes it on as an upgrade, the router refuses it (the
//!   router's own client never asks to upgrade).

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{Decoded, Framing, MAX_HEAD_BYTES, decode, parse_head};

/// One response stream, as the instance writes it.
#[derive(Debug, Clone)]
struct Case {
    head_request: bool,
    wire: Vec<u8>,
    /// Where the instance's writes end (sorted, inside `wire`).
    splits: Vec<usize>,
    /// The instance closes the connection after writing `wire`.
    closes: bool,
}

impl Case {
    fn method(&self) -> Method {
        if self.head_request {
            Method::HEAD
        } else {
            Method::GET
        }
    }

    fn pieces(&self) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        let mut start = 0;
        for &end in self.splits.iter().chain([&self.wire.len()]) {
            if end > start {
                pieces.push(self.wire[start..end].to_vec());
                start = end;
            }
        }
        pieces
    }
}

/// What a reader made of a response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The response head was refused (or the connection ended inside it).
    Refused,
    /// The head never ended, and the connection stayed open.
    Stalled,
    Answered {
        status: u16,
        /// Sorted; names lowercase.
        headers: Vec<(String, Vec<u8>)>,
        body: Body,
        /// May the connection carry another request?
        reusable: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// Ended where its framing said: the data and the trailers (sorted).
    Complete(Vec<u8>, Vec<(String, Vec<u8>)>),
    /// Malformed or cut short.
    Failed,
    /// Never ended, and the connection stayed open.
    Stalled,
}

fn sorted(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    out.sort();
    out
}

/// Reads the stream as the router's own client does (`crate::direct`), piece by piece.
fn by_codec(case: &Case) -> Outcome {
    let method = case.method();
    let mut pieces = case.pieces().into_iter();
    let mut buf = BytesMut::new();
    let head = loop {
        if !buf.is_empty() {
            match parse_head(&buf, &method) {
                Err(_) => return Outcome::Refused,
                Ok(Some((len, head))) => {
                    buf.advance(len);
                    match head {
                        Some(head) => break head,
                        None => continue,
                    }
                }
                Ok(None) if buf.len() >= MAX_HEAD_BYTES => return Outcome::Refused,
                Ok(None) => {}
            }
        }
        match pieces.next() {
            Some(piece) => buf.extend_from_slice(&piece),
            None if case.closes => return Outcome::Refused,
            None => return Outcome::Stalled,
        }
    };
    let mut framing = head.framing;
    let (mut data, mut trailers) = (Vec::new(), Vec::new());
    // Every turn takes bytes from the buffer or feeds it: a bound far above what that allows
    // catches a decoder that stops making progress.
    let mut turns = 0;
    let body = loop {
        turns += 1;
        assert!(turns < 4 * case.wire.len() + 64, "the decoder loops");
        match decode(&mut framing, &mut buf) {
            Err(_) => break Body::Failed,
            Ok(Decoded::Frame(frame)) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = sorted(&frame.into_trailers().unwrap()),
            },
            Ok(Decoded::End) => break Body::Complete(data, trailers),
            Ok(Decoded::NeedMore) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(&piece),
                None if case.closes && framing == Framing::UntilClose => {
                    break Body::Complete(data, trailers);
                }
                None if case.closes => break Body::Failed,
                None => break Body::Stalled,
            },
        }
    };
    // The connection's check before reuse (`Conn::is_usable`) sees any byte left, or the close.
    let left = !buf.is_empty() || pieces.next().is_some();
    let reusable = matches!(body, Body::Complete(..)) && head.keep_alive && !left && !case.closes;
    Outcome::Answered {
        status: head.status.as_u16(),
        headers: sorted(&head.headers),
        body,
        reusable,
    }
}

/// Long enough for anything that can happen to have happened: time is paused, so waiting this
/// long costs nothing and means "nothing more will come".
const STALL: Duration = Duration::from_secs(60);

/// Reads the stream with hyper's client over an in-memory pipe; the instance's side writes
/// the pieces one at a time, letting the client read between them.
async fn by_hyper(case: &Case) -> Outcome {
    let (client_io, mut server_io) = tokio::io::duplex(1 << 20);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(client_io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (pieces, closes) = (case.pieces(), case.closes);
    let (written_tx, written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if !read_head(&mut server_io).await {
            return;
        }
        for piece in pieces {
            if server_io.write_all(&piece).await.is_err() {
                return;
            }
            // Paused time moves on only when every task waits: the client has read the piece.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if closes {
            drop(server_io);
            let _ = written_tx.send(());
            return;
        }
        let _ = written_tx.send(());
        // A second request, if the client sends one, is answered in a way nothing else is.
        if read_head(&mut server_io).await {
            let _ = server_io
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext")
                .await;
        }
        let mut rest = [0u8; 64];
        while matches!(server_io.read(&mut rest).await, Ok(n) if n > 0) {}
    });
    let request = Request::builder()
        .method(case.method())
        .uri("/")
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap();
    let response = match tokio::time::timeout(STALL, sender.send_request(request)).await {
        Err(_) => return Outcome::Stalled,
        Ok(Err(_)) => return Outcome::Refused,
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let headers = sorted(response.headers());
    let mut incoming = response.into_body();
    let (mut data, mut trailers) = (Vec::new(), Vec::new());
    let body = loop {
        match tokio::time::timeout(STALL, incoming.frame()).await {
            Err(_) => break Body::Stalled,
            Ok(None) => break Body::Complete(data, trailers),
            Ok(Some(Err(_))) => break Body::Failed,
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = sorted(&frame.into_trailers().unwrap()),
            },
        }
    };
    drop(incoming);
    let mut reusable = false;
    if matches!(body, Body::Complete(..)) && written.await.is_ok() {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let next = async {
            sender.ready().await.ok()?;
            let request = Request::get("/next").body(Empty::new()).unwrap();
            let response = sender.send_request(request).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(body == "next")
        };
        reusable = tokio::time::timeout(STALL, next)
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
    }
    Outcome::Answered {
        status,
        headers,
        body,
        reusable,
    }
}

/// Reads up to the end of a request head; `false` when the client went away first.
async fn read_head(io: &mut DuplexStream) -> bool {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => seen.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// What the router must make of a stream, given what hyper made of it.
#[derive(Debug)]
enum Expected {
    /// hyper's outcome, with the router's deliberate differences applied.
    Same(Outcome),
    /// Anything, as long as the connection is not reused.
    NotReused,
}

/// Applies the router's deliberate differences (see the module's documentation) to hyper's
/// outcome.
fn expected(case: &Case, hyper: Outcome) -> Expected {
    let Some((status, http10, transfer_coded, both)) = final_head(&case.wire) else {
        return Expected::Same(hyper);
    };
    if status == 101 {
        return Expected::Same(Outcome::Refused);
    }
    if http10 && transfer_coded && hyper == Outcome::Refused {
        return Expected::NotReused;
    }
    Expected::Same(match hyper {
        Outcome::Answered {
            status,
            headers,
            body,
            mut reusable,
        } => {
            if case.head_request || status == 204 || status == 304 {
                reusable = false;
            }
            if both {
                reusable = false;
            }
            Outcome::Answered {
                status,
                headers,
                body,
                reusable,
            }
        }
        other => other,
    })
}

/// The final head's status, whether it is HTTP/1.0, whether it names a transfer coding, and
/// a Content-Length beside it, as far as a lenient look can tell; `None` when there is no such
/// head.
fn final_head(wire: &[u8]) -> Option<(u16, bool, bool, bool)> {
    let mut rest = wire;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(len) = response.parse(rest).ok()? else {
            return None;
        };
        let code = response.code?;
        if (100..200).contains(&code) && code != 101 {
            rest = &rest[len..];
            continue;
        }
        let has = |name: &str| {
            response
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        let coded = has("transfer-encoding");
        return Some((
            code,
            response.version == Some(0),
            coded,
            coded && has("content-length"),
        ));
    }
}

fn line() -> impl Strategy<Value = &'static str> {
    prop_oneof![19 => Just("\r\n"), 1 => Just("\n")]
}

fn field() -> impl Strategy<Value = &'static str> {
    select(vec![
        "content-length: 5",
        "content-length: 0",
        "content-length: 5, 5",
        "content-length: 5,6",
        "content-length: 11",
        "content-length: +5",
        "content-length: 05",
        "content-length: -1",
        "content-length: 18446744073709551616",
        "content-length:",
        "transfer-encoding: chunked",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked, gzip",
        "transfer-encoding: identity",
        "transfer-encoding: CHUNKED",
        "transfer-encoding: chunked, chunked",
        "connection: close",
        "connection: keep-alive",
        "connection: upgrade, close",
        "x-a: 1",
        "x-fold: a\r\n b",
        "server: t",
        "x-empty:",
        "x-sp : y",
    ])
}

fn chunked_body() -> impl Strategy<Value = &'static str> {
    select(vec![
        "5\r\nhello\r\n0\r\n\r\n",
        "5;ext=1\r\nhello\r\n6;a=\"q\"\r\n world\r\n0\r\n\r\n",
        "5 ;e\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        "5\r\nhello\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n",
        "5\r\nhello\r\n0\r\nX: 1\n\n",
        "5\r\nhello\r\n0\r\nx-t: 1\r\n x-fold\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhello\n0\r\n\r\n",
        "g\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",
        "0\r\n\r\n",
        "ffffffffffffffffff\r\n",
        "5\r\nhel",
        "0005\r\nhello\r\n0\r\n\r\n",
        "5\t\r\nhello\r\n0\r\n\r\n",
        "5;a\rb\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "\r\n5\r\nhello\r\n0\r\n\r\n",
    ])
}

/// The framing fields and a body: mostly ones that go together, else any of each.
fn framing() -> impl Strategy<Value = (Vec<&'static str>, &'static str)> {
    let any_body = prop_oneof![select(vec!["", "hello", "hello world"]), chunked_body()];
    prop_oneof![
        3 => select(vec![
            (vec!["content-length: 5"], "hello"),
            (vec!["content-length: 11"], "hello world"),
            (vec!["content-length: 0"], ""),
            (vec!["content-length: 5, 5"], "hello"),
            (vec!["content-length: 5", "content-length: 5"], "hello"),
        ]),
        3 => (select(vec![
            vec!["transfer-encoding: chunked"],
            vec!["transfer-encoding: gzip, chunked"],
            vec!["transfer-encoding: gzip", "transfer-encoding: chunked"],
        ]), chunked_body()),
        1 => Just((vec![], "hello")),
        2 => (prop::collection::vec(field(), 0..3), any_body),
    ]
}

fn junk() -> impl Strategy<Value = &'static str> {
    select(vec![
        "",
        "",
        "",
        "junk",
        "\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
    ])
}

fn case() -> impl Strategy<Value = Case> {
    let interim = select(vec![
        "",
        "",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
    ]);
    let status = select(vec![
        "200 OK",
        "200 OK",
        "200 OK",
        "200 OK",
        "201 Created",
        "404 Not Found",
        "204 No Content",
        "304 Not Modified",
        "101 Switching Protocols",
        "199 Odd",
        "500 Oops",
    ]);
    let version = prop_oneof![4 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0")];
    let fields = prop::collection::vec((field(), line()), 0..3);
    (
        (prop::bool::weighted(0.2), interim, version, status, line()),
        (framing(), fields, line(), junk()),
        (
            prop::collection::vec(any::<Index>(), 0..6),
            prop::bool::weighted(0.3),
        ),
    )
        .prop_map(
            |(
                (head_request, interim, version, status, status_line),
                ((framing, body), fields, end, junk),
                (splits, closes),
            )| {
                let mut wire = format!("{interim}{version} {status}{status_line}");
                for field in framing {
                    wire.push_str(field);
                    wire.push_str("\r\n");
                }
                for (field, line) in fields {
                    wire.push_str(field);
                    wire.push_str(line);
                }
                wire.push_str(end);
                wire.push_str(body);
                wire.push_str(junk);
                let wire = wire.into_bytes();
                let mut splits: Vec<usize> = splits.iter().map(|i| i.index(wire.len())).collect();
                splits.sort_unstable();
                Case {
                    head_request,
                    wire,
                    splits,
                    closes,
                }
            },
        )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let hyper = runtime().block_on(by_hyper(case));
    let ours = by_codec(case);
    let agrees = match expected(case, hyper.clone()) {
        Expected::Same(expected) => ours == expected,
        Expected::NotReused => !matches!(ours, Outcome::Answered { reusable: true, .. }),
    };
    prop_assert!(
        agrees,
        "wire {:?}, split at {:?}, closes {}, {} request\n  ours:  {:?}\n  hyper: {:?}",
        String::from_utf8_lossy(&case.wire),
        case.splits,
        case.closes,
        case.method(),
        ours,
        hyper
    );
    Ok(())
}

proptest! {
    #[test]
    fn the_codec_reads_responses_as_hyper_does(case in case()) {
        check(&case)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_loop(
        head_request in any::<bool>(),
        prefix in select(vec!["", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\n"]),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        splits in prop::collection::vec(any::<Index>(), 0..8),
        closes in any::<bool>(),
    ) {
        let mut wire = prefix.as_bytes().to_vec();
        wire.extend_from_slice(&bytes);
        let mut splits: Vec<usize> = splits.iter().map(|i| i.index(wire.len() + 1)).collect();
        splits.sort_unstable();
        by_codec(&Case { head_request, wire, splits, closes });
    }
}
