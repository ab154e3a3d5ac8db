//! HTTP/1.1 conformance (RFC 9110, RFC 9112), one row per rule, against the real router over
//! sockets: what the client gets, and what the instance saw.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;

use crate::support::{Instance, dies_after_reading, full, instance, raw, router, scripted};

/// An instance that answers with what it received: method, target, `Host`, framing and body,
/// in the body and (for HEAD) in `x-echo`.
async fn echo() -> Instance {
    instance(|req| async move {
        let (parts, body) = req.into_parts();
        let header = |name: &str| {
            parts.headers.get(name).map_or("-".to_owned(), |v| {
                String::from_utf8_lossy(v.as_bytes()).into()
            })
        };
        let head = format!(
            "{} {} host={} cl={} te={}",
            parts.method,
            parts.uri,
            header("host"),
            header("content-length"),
            header("transfer-encoding"),
        );
        let body = match body.collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(error) => format!("<body failed: {error}>"),
        };
        let echo = format!("{head} body={body}");
        let mut response = Response::new(full(echo.clone()));
        response
            .headers_mut()
            .insert("x-echo", echo.replace(['\r', '\n'], " ").parse().unwrap());
        response
    })
    .await
}

struct Row {
    rule: &'static str,
    request: &'static str,
    /// The start of the status line the client gets.
    status: &'static str,
    /// `X-Shoal-Error`, for an answer the router made.
    error: Option<&'static str>,
    /// What the echo instance saw, when the request reached it.
    seen: Option<&'static str>,
}

async fn check_request_rows(rows: &[Row]) {
    let app = echo().await;
    let running = router(&[app.port], |_| {}).await;
    for row in rows {
        let before = app.hits.load(Ordering::SeqCst);
        let answer = raw(
            running.addr,
            row.request.as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        let rule = row.rule;
        assert!(
            answer.starts_with(row.status),
            "{rule}: expected {}, got {answer:?}",
            row.status
        );
        match row.error {
            Some(code) => assert!(
                answer.contains(&format!("x-shoal-error: {code}\r\n")),
                "{rule}: expected error {code}: {answer:?}"
            ),
            None => assert!(!answer.contains("x-shoal-error"), "{rule}: {answer:?}"),
        }
        let reached = app.hits.load(Ordering::SeqCst) > before;
        match row.seen {
            Some(seen) => assert!(
                answer.contains(seen),
                "{rule}: the instance should have seen {seen:?}: {answer:?}"
            ),
            None => assert!(!reached, "{rule}: reached the instance: {answer:?}"),
        }
    }
}

#[tokio::test]
async fn requests_follow_rfc_9112() {
    check_request_rows(&[
        Row {
            rule: "a chunked body on GET reaches the instance (§6.1)",
            request: "GET /search HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nq=shoal\r\n0\r\n\r\n",
            status: "HTTP/1.1 200",
            error: None,
            seen: Some("GET /search host=app.test cl=- te=chunked body=q=shoal"),
        },
        Row {
            rule: "a chunked body on HEAD reaches the instance (§6.1)",
            request: "HEAD /search HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nq=shoal\r\n0\r\n\r\n",
            status: "HTTP/1.1 200",
            error: None,
            seen: Some("HEAD /search host=app.test cl=- te=chunked body=q=shoal"),
        },
        Row {
            rule: "an HTTP/1.1 request without Host is refused (§3.2)",
            request: "GET / HTTP/1.1\r\n\r\n",
            status: "HTTP/1.1 400",
            error: Some("missing_host"),
            seen: None,
        },
        Row {
            rule: "two Host lines are refused (§3.2)",
            request: "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
            status: "HTTP/1.1 400",
            error: Some("conflicting_host"),
            seen: None,
        },
        Row {
            rule: "a Host that is a list is refused (§3.2)",
            request: "GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n",
            status: "HTTP/1.1 400",
            error: Some("invalid_host"),
            seen: None,
        },
        Row {
            rule: "an HTTP/1.0 request needs no Host",
            request: "GET /old HTTP/1.0\r\n\r\n",
            status: "HTTP/1.0 200",
            error: None,
            seen: Some("GET /old host=- cl=- te=- body="),
        },
        Row {
            rule: "an absolute-form target's authority is the host (§3.2.2)",
            request: "GET http://other.example/p?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            status: "HTTP/1.1 200",
            error: None,
            seen: Some("GET /p?q=1 host=other.example cl=- te=- body="),
        },
    ])
    .await;
}

#[tokio::test]
async fn a_streamed_content_length_is_passed_on_in_canonical_form() {
    let app = echo().await;
    let running = router(&[app.port], |_| {}).await;
    // Larger than what the router holds in memory, so it streams.
    let body = "z".repeat(70_000);
    let request = format!(
        "POST /up HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Length: 0070000\r\n\r\n{body}"
    );
    let answer = raw(running.addr, request.as_bytes(), Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.contains("POST /up host=app.test cl=70000 te=-"),
        "{}",
        &answer[..answer.len().min(400)]
    );
}

/// The router's answer when an instance replies `reply` to `request`.
async fn answer_to(reply: &'static [u8], request: &str) -> (String, usize) {
    let app = scripted(reply, true).await;
    let running = router(&[app.port], |_| {}).await;
    let answer = raw(running.addr, request.as_bytes(), Duration::from_secs(10)).await;
    (answer, app.hits.load(Ordering::SeqCst))
}

const SWITCHED: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";

#[tokio::test]
async fn a_switch_of_protocols_nobody_asked_for_is_refused() {
    for (what, request) in [
        (
            "a plain GET",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
        ),
        (
            "a streamed upload",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 70000\r\n\r\n{}",
                "z".repeat(70_000)
            ),
        ),
        (
            "an HTTP/1.0 request with Connection: Upgrade (§7.8: ignored in 1.0)",
            "GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
        ),
    ] {
        let (answer, _) = answer_to(SWITCHED, &request).await;
        assert!(answer.contains(" 502 "), "{what}: {answer:?}");
        assert!(
            answer.contains("x-shoal-error: instance_failed"),
            "{what}: {answer:?}"
        );
        assert!(!answer.contains("101"), "{what}: {answer:?}");
    }
}

#[tokio::test]
async fn a_transfer_coding_the_client_could_not_decode_is_refused() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n",
    ] {
        let (answer, hits) = answer_to(reply, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(hits, 1);
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer:?}");
        assert!(
            answer.contains("x-shoal-error: instance_failed"),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn an_instance_failure_names_the_instance_in_the_access_line() {
    let dead = dies_after_reading().await;
    let running = router(&[dead.port], |_| {}).await;
    let answer = raw(
        running.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer:?}");
    let line = running.log.wait_for("error=instance_failed").await;
    assert!(line.contains("instance=web.1"), "{line}");
}

#[tokio::test]
async fn a_content_length_list_from_an_instance_reaches_the_client_as_one_value() {
    let (answer, _) = answer_to(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = answer.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{answer:?}");
    assert_eq!(head.matches("content-length").count(), 1, "{answer:?}");
    assert!(head.contains("content-length: 5\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer:?}");
}

#[tokio::test]
async fn a_response_malformed_from_its_first_chunk_is_a_502() {
    let (answer, hits) = answer_to(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz",
    )
    .await;
    assert_eq!(hits, 1);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer:?}");
    assert!(
        answer.contains("x-shoal-error: instance_failed"),
        "{answer:?}"
    );
}
