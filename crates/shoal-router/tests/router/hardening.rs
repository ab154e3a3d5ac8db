//! Limits, timeouts and request smuggling.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Response;

use crate::support::{Client, full, instance, named, raw, router};

#[tokio::test]
async fn a_slowloris_client_is_cut_off() {
    let app = named("app").await;
    let running = router(&[app.port], |c| {
        c.header_timeout = Duration::from_millis(500)
    })
    .await;
    let started = tokio::time::Instant::now();
    // Half a request head, then silence: the router closes the connection.
    let answer = raw(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "still open: {answer:?}"
    );
    assert_eq!(app.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = named("app").await;
    let running = router(&[app.port], |c| {
        c.header_timeout = Duration::from_millis(500)
    })
    .await;
    let answer = raw(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("app"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let app = named("app").await;
    let running = router(&[app.port], |c| c.max_header_bytes = 16 * 1024).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(running.addr, big.as_bytes(), Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(app.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_slow_instance_gets_504() {
    let slow = instance(|_req| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Response::new(full("too late"))
    })
    .await;
    let running = router(&[slow.port], |c| {
        c.first_byte_timeout = Duration::from_millis(300)
    })
    .await;
    let answer = Client::connect(running.addr).await.get("/").await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.headers["x-shoal-error"], "instance_timeout");
}

#[tokio::test]
async fn too_many_connections_wait_instead_of_failing() {
    let app = named("app").await;
    let running = router(&[app.port], |c| c.max_connections = 1).await;
    let mut first = Client::connect(running.addr).await;
    assert_eq!(first.get("/").await.body, "app");
    // The only slot is taken by `first` (kept alive): `second` waits in the listen queue.
    let addr = running.addr;
    let second = tokio::spawn(async move { Client::connect(addr).await.get("/").await });
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while !second.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "the second connection was served beyond the limit"
    );
    drop(first);
    let answer = second.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "app");
}

/// Sends `head` (with body bytes) and returns the router's answer; the instance must not have
/// seen a request.
async fn refused(head: &str) -> String {
    let app = named("app").await;
    let running = router(&[app.port], |_| {}).await;
    let answer = raw(running.addr, head.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(
        app.hits.load(Ordering::SeqCst),
        0,
        "reached the instance: {head:?}"
    );
    answer
}

#[tokio::test]
async fn transfer_encoding_with_content_length_is_normalised_and_nothing_is_smuggled() {
    // The HTTP/1 parser takes the chunked framing, drops Content-Length (RFC 9112 §6.3) and
    // closes the connection after answering, so the bytes after the chunked body never
    // become a second request.
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = paths.clone();
    let app = instance(move |req| {
        let seen = seen.clone();
        async move {
            let framing = format!(
                "{} cl={:?} te={:?}",
                req.uri().path(),
                req.headers().get("content-length"),
                req.headers().get("transfer-encoding")
            );
            seen.lock().unwrap().push(framing);
            Response::new(full("ok"))
        }
    })
    .await;
    let running = router(&[app.port], |_| {}).await;
    let answer = raw(
        running.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "one answer, then the connection closed: {answer:?}"
    );
    let paths = paths.lock().unwrap();
    assert!(
        paths.iter().all(|p| !p.starts_with("/smuggled")),
        "{paths:?}"
    );
    // What reached the instance, if anything, carries one framing only.
    assert!(paths.iter().all(|p| p.contains("cl=None")), "{paths:?}");
}

#[tokio::test]
async fn repeated_chunked_is_refused() {
    let answer = refused(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[tokio::test]
async fn chunked_that_is_not_final_is_refused() {
    let answer =
        refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
            .await;
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 501"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn differing_content_lengths_are_refused() {
    let answer = refused(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[tokio::test]
async fn connect_is_not_tunnelled() {
    let app = named("app").await;
    let running = router(&[app.port], |_| {}).await;
    let answer = raw(
        running.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(
        answer.contains("x-shoal-error: method_not_supported"),
        "{answer}"
    );
    assert_eq!(app.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_head_limit_is_64_kib_by_default() {
    let app = named("app").await;
    let running = router(&[app.port], |_| {}).await;
    // Ten 7 KiB fields: 70 KiB, over the limit but under what hyper's buffer would take.
    let fields: String = (0..10)
        .map(|i| format!("X-Field-{i}: {}\r\n", "a".repeat(7 * 1024)))
        .collect();
    let over = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    let answer = raw(running.addr, over.as_bytes(), Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(app.hits.load(Ordering::SeqCst), 0);
    let line = running.log.wait_for("error=head_too_large").await;
    assert!(line.contains("status=431"), "{line}");

    let under = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(60 * 1024)
    );
    let answer = raw(running.addr, under.as_bytes(), Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn heads_the_parser_refuses_get_an_access_line() {
    let app = named("app").await;
    let running = router(&[app.port], |_| {}).await;
    let answer = raw(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let line = running.log.wait_for("error=malformed_request").await;
    assert!(
        line.contains("status=400") && line.contains("client=127.0.0.1"),
        "{line}"
    );
    assert_eq!(app.hits.load(Ordering::SeqCst), 0);
}
