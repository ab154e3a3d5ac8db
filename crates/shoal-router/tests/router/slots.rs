//! Clients that start a request and stop: each is cut off at its timeout, gets a router answer
//! that blames the client, and frees its connection slot. The last test runs every such attack
//! against a router with two slots and checks that an ordinary client is served after each.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, Instance, full, instance, named, router};

/// Well beyond any timeout used here: a connection still open then is being held.
const PATIENCE: Duration = Duration::from_secs(30);

/// An instance that reads the whole request body before it answers with its length.
async fn reads_bodies() -> Instance {
    instance(|req| async move {
        match req.into_body().collect().await {
            Ok(body) => Response::new(full(format!("read {}", body.to_bytes().len()))),
            Err(_) => Response::new(full("body failed")),
        }
    })
    .await
}

/// Writes `bytes` and then nothing; returns what came back and whether the router closed the
/// connection (rather than `PATIENCE` running out).
async fn stall(addr: std::net::SocketAddr, bytes: Vec<u8>) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The attacks: a request head or body that starts and never ends.
fn attacks() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "a head that never ends",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(),
        ),
        (
            "a small body that never comes (held in memory)",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc".to_vec(),
        ),
        (
            "a large body that stops (streamed)",
            [
                &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"[..],
                &[b'x'; 70_000][..],
            ]
            .concat(),
        ),
        (
            "a chunked body that stops (streamed)",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                .to_vec(),
        ),
        (
            "a chunked body that stops mid-chunk",
            b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc".to_vec(),
        ),
    ]
}

#[tokio::test]
async fn a_body_that_stops_gets_408_and_the_connection_is_closed() {
    let app = reads_bodies().await;
    let running = router(&[app.port], |c| {
        c.body_timeout = Duration::from_millis(300);
        c.header_timeout = Duration::from_secs(20);
    })
    .await;
    // Skip the head-only attack: the header timeout is long here on purpose, so that only the
    // body timeout can end these.
    for (what, bytes) in attacks().into_iter().skip(1) {
        let (answer, closed) = stall(running.addr, bytes).await;
        assert!(closed, "{what}: the connection is still open: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer:?}");
        assert!(
            answer.contains("x-shoal-error: body_timeout"),
            "{what}: {answer:?}"
        );
    }
    let lines = running.log.wait_for_n(4, "error=body_timeout").await;
    assert_eq!(lines.len(), 4, "{lines:?}");
}

#[tokio::test]
async fn a_slow_body_that_keeps_coming_is_not_cut_off() {
    let app = reads_bodies().await;
    let running = router(&[app.port], |c| c.body_timeout = Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        .await
        .unwrap();
    // Each byte comes well within the idle timeout, although all of them take longer than it.
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(&[*byte]).await.unwrap();
    }
    let mut out = vec![0; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut out))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&out[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("read 6"), "{answer:?}");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let app = reads_bodies().await;
    let running = router(&[app.port], |_| {}).await;
    let (answer, closed) = stall(
        running.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
            .to_vec(),
    )
    .await;
    assert!(closed, "{answer:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(
        answer.contains("x-shoal-error: incomplete_request_body"),
        "{answer:?}"
    );
    running.log.wait_for("error=incomplete_request_body").await;
}

#[tokio::test]
async fn no_attack_holds_one_of_two_slots_past_its_timeout() {
    let app = named("app").await;
    let running = router(&[app.port], |c| {
        c.max_connections = 2;
        c.header_timeout = Duration::from_millis(300);
        c.body_timeout = Duration::from_millis(300);
    })
    .await;
    for (what, bytes) in attacks() {
        // Both slots taken by the attack at once.
        let first = tokio::spawn(stall(running.addr, bytes.clone()));
        let (_, closed) = stall(running.addr, bytes.clone()).await;
        let (_, first_closed) = first.await.unwrap();
        assert!(closed && first_closed, "{what}: a slot is still held");
        // An ordinary client is served: had a slot still been held, it would wait for ever.
        let served = tokio::time::timeout(PATIENCE, async {
            Client::connect(running.addr).await.get("/").await
        })
        .await
        .unwrap_or_else(|_| panic!("after {what}, no slot was free for an ordinary client"));
        assert_eq!(
            (served.status, served.body.as_str()),
            (200, "app"),
            "{what}"
        );
    }
    assert!(app.hits.load(Ordering::SeqCst) >= attacks().len());
}
