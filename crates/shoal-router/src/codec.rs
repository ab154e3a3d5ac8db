//! The HTTP/1.1 response codec of the router's own client, apart from any I/O: a response head
//! parsed into its status, headers and framing; a body decoded from bytes read so far; a
//! request encoded for the wire. [`crate::direct`] drives it over a connection; the
//! differential tests drive it against hyper's client.
//!
//! The response's framing follows RFC 9112 §6.3: no body after a HEAD request or in a 1xx, 204
//! or 304 response; `chunked` when it is the final transfer coding; else `Content-Length` (its
//! values must agree, or the response is refused); else the body runs until the instance closes
//! the connection. Interim 1xx responses are skipped. A connection carries another request only
//! when its response ended exactly where its framing said and neither side asked to close it,
//! and never after a response that is bodiless because of its request's method or its status
//! (HEAD, 204, 304): nothing tells such a body, sent by mistake, from the next response.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Frame;

/// Most header fields in an instance's response head, or in its trailer section.
const MAX_HEADERS: usize = 128;
/// Largest response head (or trailer section) accepted from an instance.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// An instance's response head, and how to read the body that follows it.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Nothing follows the head.
    Empty,
    /// This many bytes are left.
    Length(u64),
    /// Chunked: where the decoder is.
    Chunked(Chunk),
    /// Everything until the instance closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section, then the end.
    Trailers,
    /// The message has ended.
    Done,
}

/// Encodes a request, head and `body`; `Content-Length` is set from the body (and left out for
/// an empty body that had none).
pub(crate) fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 48 * headers.len() + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

pub(crate) fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Parses a response head at the start of `buf`: `None` when it is not complete yet, else its
/// length and the head (`None` for an interim 1xx response, which is skipped).
pub(crate) fn parse_head(buf: &[u8], method: &Method) -> io::Result<Option<(usize, Option<Head>)>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(invalid("the instance's response head is malformed")),
    };
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| invalid("the instance's status is not valid"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("the instance switched protocols unasked"));
    }
    if status.is_informational() {
        return Ok(Some((len, None)));
    }
    let mut headers = header_map(response.headers)?;
    let http11 = response.version == Some(1);
    let (framing, framing_keeps_alive) = framing(method, status, &mut headers, http11)?;
    let keep_alive = framing_keeps_alive && connection_persists(&headers, http11);
    Ok(Some((
        len,
        Some(Head {
            status,
            headers,
            framing,
            keep_alive,
        }),
    )))
}

fn header_map(fields: &[httparse::Header<'_>]) -> io::Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| invalid("the instance sent an invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| invalid("the instance sent an invalid header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// How the body is delimited, and whether the connection can be reused after it as far as the
/// framing goes. A `Content-Length` that a transfer coding overrides is removed, so that it is
/// not passed on (RFC 9112 §6.3).
fn framing(
    method: &Method,
    status: StatusCode,
    headers: &mut HeaderMap,
    http11: bool,
) -> io::Result<(Framing, bool)> {
    // Removed whatever the method and status, so that no response is passed on with both.
    let transfer_coded = headers.contains_key(header::TRANSFER_ENCODING);
    let had_length = transfer_coded && headers.remove(header::CONTENT_LENGTH).is_some();
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // Bodiless by its method or status, whatever its head says: an instance that sends a
        // body anyway (`do_HEAD = do_GET`) may send it after the head has been read, and on a
        // reused connection those bytes would be read as the next request's response.
        return Ok((Framing::Empty, false));
    }
    if transfer_coded {
        let last_is_chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .next_back()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        // With a Content-Length as well, or in HTTP/1.0 (which has no transfer codings), the
        // framing is suspect and the connection is not reused (RFC 9112 §6.1, §6.3).
        let reusable = http11 && !had_length;
        return Ok(if last_is_chunked {
            (Framing::Chunked(Chunk::Size), reusable)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii())
                .ok_or_else(|| invalid("the instance sent an invalid Content-Length"))?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err(invalid("the instance sent differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Whether the instance lets the connection stay open: HTTP/1.1 unless it says `close`,
/// HTTP/1.0 only when it says `keep-alive`.
fn connection_persists(headers: &HeaderMap, http11: bool) -> bool {
    let mut tokens = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    if http11 {
        !tokens.any(|t| t.eq_ignore_ascii_case(b"close"))
    } else {
        tokens.any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    }
}

pub(crate) enum Decoded {
    Frame(Frame<Bytes>),
    End,
    NeedMore,
}

/// Takes what it can of the body from `buf`, advancing `framing`.
pub(crate) fn decode(framing: &mut Framing, buf: &mut BytesMut) -> io::Result<Decoded> {
    match framing {
        Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunk::Done) => Ok(Decoded::End),
        Framing::Length(left) => {
            if buf.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            let n = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
            *left -= n as u64;
            Ok(Decoded::Frame(Frame::data(buf.split_to(n).freeze())))
        }
        Framing::UntilClose => {
            if buf.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            Ok(Decoded::Frame(Frame::data(buf.split().freeze())))
        }
        Framing::Chunked(chunk) => decode_chunked(chunk, buf),
    }
}

fn decode_chunked(chunk: &mut Chunk, buf: &mut BytesMut) -> io::Result<Decoded> {
    loop {
        match *chunk {
            Chunk::Size => {
                let Some((size, len)) = chunk_size_line(buf)? else {
                    return Ok(Decoded::NeedMore);
                };
                buf.advance(len);
                *chunk = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
                *chunk = if left == n as u64 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                return Ok(Decoded::Frame(Frame::data(buf.split_to(n).freeze())));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("the instance sent a chunk longer than its size"));
                }
                buf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let parsed = httparse::parse_headers(buf, &mut fields)
                    .map_err(|_| invalid("the instance sent a malformed trailer section"))?;
                let section = match parsed {
                    httparse::Status::Complete((len, _)) => &buf[..len],
                    httparse::Status::Partial => buf,
                };
                // A bare LF ends a line for httparse, not for every reader (hyper refuses it
                // since 1.13): taking it as one lets a trailer section end early and swallow
                // what follows.
                if section
                    .iter()
                    .enumerate()
                    .any(|(i, &b)| b == b'\n' && (i == 0 || section[i - 1] != b'\r'))
                {
                    return Err(invalid("the instance sent a trailer line without CRLF"));
                }
                let httparse::Status::Complete((len, fields)) = parsed else {
                    if buf.len() > MAX_HEAD_BYTES {
                        return Err(invalid("the instance sent a trailer section too large"));
                    }
                    return Ok(Decoded::NeedMore);
                };
                let trailers = header_map(fields)?;
                buf.advance(len);
                *chunk = Chunk::Done;
                if trailers.is_empty() {
                    return Ok(Decoded::End);
                }
                return Ok(Decoded::Frame(Frame::trailers(trailers)));
            }
            Chunk::Done => return Ok(Decoded::End),
        }
    }
}

/// The chunk-size line at the start of `buf` (RFC 9112 §7.1): its size and length, or `None`
/// while it may still become one. Hexadecimal digits, spaces or tabs, extensions (ignored)
/// after `;`, then CRLF; refused at the first byte that cannot belong, as hyper does, rather
/// than after waiting for a line end.
fn chunk_size_line(buf: &[u8]) -> io::Result<Option<(u64, usize)>> {
    let bad = || invalid("the instance sent an invalid chunk-size line");
    let digits = buf
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(buf.len());
    if digits > 16 || (digits == 0 && !buf.is_empty()) {
        return Err(bad());
    }
    let mut end = digits;
    while buf.get(end).is_some_and(|&b| b == b' ' || b == b'\t') {
        end += 1;
    }
    if buf.get(end) == Some(&b';') {
        end += buf[end..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(buf.len() - end);
    }
    if end > MAX_CHUNK_LINE {
        return Err(invalid("the instance sent a chunk-size line too long"));
    }
    match buf.get(end..end + 2) {
        Some(b"\r\n") => {}
        None if buf[end..] == *b"" || buf[end..] == *b"\r" => return Ok(None),
        _ => return Err(bad()),
    }
    let size = buf[..digits].iter().fold(0u64, |n, &d| {
        (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
    });
    Ok(Some((size, end + 2)))
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: &Method) -> io::Result<Option<(usize, Option<Head>)>> {
        parse_head(raw.as_bytes(), method)
    }

    fn final_head(raw: &str, method: &Method) -> Head {
        head(raw, method).unwrap().unwrap().1.unwrap()
    }

    /// Decodes `wire` fed `step` bytes at a time; returns the data and the trailers.
    fn decode_all(framing: Framing, wire: &[u8], step: usize) -> io::Result<(Vec<u8>, HeaderMap)> {
        let mut framing = framing;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = HeaderMap::new();
        let mut fed = 0;
        loop {
            match decode(&mut framing, &mut buf)? {
                Decoded::Frame(frame) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().unwrap(),
                },
                Decoded::End => return Ok((data, trailers)),
                Decoded::NeedMore => {
                    if fed == wire.len() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let next = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let get = Method::GET;
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n",
                Framing::Empty,
                false,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
                Framing::Empty,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                false,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let parsed = final_head(raw, &get);
            assert_eq!(
                (parsed.framing, parsed.keep_alive),
                (framing, keep_alive),
                "{raw}"
            );
        }
        let to_head = final_head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(to_head.framing, Framing::Empty);
        assert!(
            !to_head.keep_alive,
            "a body sent after the head would be the next response"
        );
        assert_eq!(to_head.headers["content-length"], "5");
        let both = final_head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            &get,
        );
        assert!(
            !both.headers.contains_key("content-length"),
            "a Content-Length that chunked overrides is not passed on"
        );
        // Found by the differential test: a bodiless response kept both.
        let bodiless = final_head(
            "HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            &get,
        );
        assert!(!bodiless.headers.contains_key("content-length"));
    }

    #[test]
    fn bad_response_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            "HTTP/1.1 2000 Huge\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(head(raw, &Method::GET).is_err(), "{raw}");
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_heads_wait() {
        let raw = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n";
        let (len, parsed) = head(raw, &Method::GET).unwrap().unwrap();
        assert_eq!(len, raw.len());
        assert!(parsed.is_none());
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", &Method::GET)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n6 \r\nworld!\r\n0\r\nx-sum: 42\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, trailers) = decode_all(Framing::Chunked(Chunk::Size), wire, step).unwrap();
            assert_eq!(data, b"hello world!", "step {step}");
            assert_eq!(trailers["x-sum"], "42", "step {step}");
        }
        let (data, trailers) =
            decode_all(Framing::Chunked(Chunk::Size), b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!((data.as_slice(), trailers.len()), (&b"abc"[..], 0));
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for wire in [
            &b"5\r\nhello!\r\n0\r\n\r\n"[..],
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5\r\nhel",
            // Found by the differential test: a bare LF in the trailer section, and a CR inside
            // a chunk extension, were taken as line ends.
            b"5\r\nhello\r\n0\r\nX: 1\n\nGET /swallowed HTTP/1.1\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_all(Framing::Chunked(Chunk::Size), wire, 1).is_err(),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn a_bad_chunk_size_is_refused_before_its_line_ends() {
        // Found by the differential test: the reader waited for a line end after `g`, until
        // the instance closed the connection or the request timed out.
        for wire in [&b"g"[..], b"5x", b"5 6", b"\r"] {
            let mut buf = BytesMut::from(wire);
            assert!(
                decode(&mut Framing::Chunked(Chunk::Size), &mut buf).is_err(),
                "{wire:?}"
            );
        }
        let mut buf = BytesMut::from(&b"5 ;ext"[..]);
        assert!(matches!(
            decode(&mut Framing::Chunked(Chunk::Size), &mut buf),
            Ok(Decoded::NeedMore)
        ));
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (data, _) = decode_all(Framing::Length(5), b"hello", 2).unwrap();
        assert_eq!(data, b"hello");
        assert!(decode_all(Framing::Length(6), b"hello", 2).is_err());
    }

    #[test]
    fn requests_are_encoded_with_their_length() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("app.test"));
        headers.insert("content-length", HeaderValue::from_static("3"));
        let wire = encode_request(&Method::POST, "/a?b=1", &headers, b"xyz");
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: app.test\r\ncontent-length: 3\r\n\r\nxyz"
        );
        let wire = encode_request(&Method::GET, "/", &HeaderMap::new(), b"");
        assert_eq!(wire, b"GET / HTTP/1.1\r\n\r\n");
    }
}
