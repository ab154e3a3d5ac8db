//! Responses of every HTTP/1.1 framing reach the client intact through the router's own
//! client, connections to instances are reused, and a connection an instance has closed is
//! never used for a request.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{Client, named, raw, read_request, request, router, scripted};

#[tokio::test]
async fn responses_of_every_framing_reach_the_client_intact() {
    let cases: [(&str, &[u8], u16, &str); 6] = [
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\n\r\n",
            200,
            "hello, world",
        ),
        (
            "until the instance closes",
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it",
            200,
            "all of it",
        ),
        (
            // The Content-Length is wrong and overridden by chunked: passed on, it would cut
            // the body short for the client.
            "chunked with a content-length",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
            200,
            "hello world",
        ),
        (
            "no content",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            204,
            "",
        ),
        (
            "an interim response first",
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            200,
            "final",
        ),
        (
            "HTTP/1.0",
            b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold",
            200,
            "old",
        ),
    ];
    for (name, reply, status, body) in cases {
        // The reply with no length ends only when the instance closes the connection.
        let app = scripted(reply, name == "until the instance closes").await;
        let running = router(&[app.port], |_| {}).await;
        let mut client = Client::connect(running.addr).await;
        for _ in 0..2 {
            let answer = client.get("/").await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (status, body),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn a_head_response_has_its_length_and_no_body() {
    let app = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n", false).await;
    let running = router(&[app.port], |c| c.header_timeout = Duration::from_secs(1)).await;
    // Two HEAD requests on one connection: had the router waited for 1234 body bytes, the
    // second would never be answered.
    let answer = raw(
        running.addr,
        b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\nHEAD / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert_eq!(
        answer.matches("content-length: 1234").count(),
        2,
        "{answer}"
    );
    assert_eq!(app.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_malformed_response_is_a_502() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ] {
        let app = scripted(reply, true).await;
        let running = router(&[app.port], |_| {}).await;
        let answer = Client::connect(running.addr).await.get("/").await;
        let shown = String::from_utf8_lossy(reply);
        assert_eq!(answer.status, 502, "{shown}");
        assert_eq!(
            answer.headers["x-shoal-error"], "instance_failed",
            "{shown}"
        );
    }
}

#[tokio::test]
async fn connections_to_instances_are_kept_alive_and_reused() {
    let app = named("app").await;
    let running = router(&[app.port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;
    for _ in 0..50 {
        assert_eq!(client.get("/").await.body, "app");
        assert_eq!(
            client.send(request("POST", "/", "form=1")).await.body,
            "app"
        );
    }
    assert_eq!(app.hits.load(Ordering::SeqCst), 100);
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_instance_closed_is_never_used() {
    // The instance closes every connection after one response without saying so, as servers
    // with a short keep-alive timeout do. A POST is never retried once sent, so each one
    // reaching the instance shows that the router did not write it into a closed connection.
    let app = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let running = router(&[app.port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;
    for sent in 1..=20 {
        let answer = client.send(request("POST", "/", "x")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok"),
            "POST {sent}"
        );
        wait_until("the instance closed the connection", || {
            app.closed.load(Ordering::SeqCst) >= sent
        })
        .await;
    }
    assert_eq!(app.hits.load(Ordering::SeqCst), 20);
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "waited for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An instance that answers the first request on each connection and closes the connection when
/// a second one arrives on it, without answering: what a server whose keep-alive timeout
/// expires just as the router reuses the connection looks like. Counts every request it read.
async fn closes_reused_connections() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_none() {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
                if read_request(&mut stream).await.is_some() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, read)
}

#[tokio::test]
async fn a_get_on_a_connection_the_instance_just_closed_goes_again_on_a_new_one() {
    // One instance only: the request has nowhere else to go.
    let (port, read) = closes_reused_connections().await;
    let running = router(&[port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;
    for n in 1..=3 {
        let answer = client.get("/").await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok"),
            "GET {n}"
        );
    }
    // Each GET after the first was read once on the reused connection, then again on a new one.
    assert_eq!(read.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_post_on_a_connection_the_instance_just_closed_is_not_sent_again() {
    let (port, read) = closes_reused_connections().await;
    let running = router(&[port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;
    assert_eq!(client.send(request("POST", "/", "x")).await.status, 200);
    let answer = client.send(request("POST", "/", "x")).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["x-shoal-error"], "instance_failed");
    assert_eq!(
        read.load(Ordering::SeqCst),
        2,
        "the second POST was sent once"
    );
}
