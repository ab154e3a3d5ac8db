//! Failover that never repeats a side effect.

use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_router::Balance;

use crate::support::{Client, dead_port, dies_after_reading, named, raw, request, router, send};

#[tokio::test]
async fn refused_connections_are_retried_whatever_the_method() {
    let alive = named("alive").await;
    let running = router(&[dead_port(), alive.port], |c| {
        c.balance = Balance::RoundRobin;
        c.eject_after = 1000;
    })
    .await;
    for _ in 0..6 {
        let answer = send(running.addr, request("POST", "/orders", "{}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "alive");
    }
    assert_eq!(alive.hits.load(Ordering::SeqCst), 6);
    running.log.wait_for("retries=1").await;
}

#[tokio::test]
async fn idempotent_requests_are_retried_once_when_the_instance_dies() {
    let dying = dies_after_reading().await;
    let alive = named("alive").await;
    let running = router(&[dying.port, alive.port], |c| {
        c.balance = Balance::RoundRobin
    })
    .await;
    for method in ["GET", "PUT", "DELETE"] {
        let answer = send(running.addr, request(method, "/thing", "small body")).await;
        assert_eq!(answer.status, 200, "{method}");
        assert_eq!(answer.body, "alive");
    }
    assert!(
        dying.hits.load(Ordering::SeqCst) >= 1,
        "some requests reached the dying instance first"
    );
    assert_eq!(alive.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_post_that_reached_an_instance_is_never_retried() {
    let dying = dies_after_reading().await;
    let alive = named("alive").await;
    let running = router(&[dying.port, alive.port], |c| {
        c.balance = Balance::RoundRobin
    })
    .await;
    let mut failed = 0;
    for _ in 0..6 {
        let answer = send(running.addr, request("POST", "/pay", "amount=10")).await;
        if answer.status == 502 {
            assert_eq!(answer.headers["x-shoal-error"], "instance_failed");
            failed += 1;
        } else {
            assert_eq!(answer.body, "alive");
        }
    }
    assert!(
        failed > 0,
        "round robin sent some POSTs to the dying instance"
    );
    // Each failed POST reached the dying instance once and nowhere else.
    assert_eq!(dying.hits.load(Ordering::SeqCst), failed);
    assert_eq!(alive.hits.load(Ordering::SeqCst), 6 - failed);
}

#[tokio::test]
async fn a_large_idempotent_body_is_not_buffered_and_not_retried() {
    let dying = dies_after_reading().await;
    let running = router(&[dying.port], |c| c.retry_body_limit = 1024).await;
    let big = "x".repeat(4096);
    let answer = send(running.addr, request("PUT", "/file", &big)).await;
    assert_eq!(answer.status, 502);
    assert_eq!(dying.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn nothing_is_retried_after_the_response_began() {
    // An instance that sends its head and part of the body, then dies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                .await;
        }
    });
    let other = named("other").await;
    let running = router(&[port, other.port], |c| c.balance = Balance::RoundRobin).await;
    let answer = raw(
        running.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.ends_with("partial"),
        "the client got what was sent, then the connection closed: {answer}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(other.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn repeated_connect_failures_take_an_instance_out_of_rotation() {
    let alive = named("alive").await;
    let running = router(&[dead_port(), alive.port], |c| {
        c.balance = Balance::RoundRobin;
        c.eject_after = 2;
        c.eject_for = Duration::from_secs(600);
    })
    .await;
    for _ in 0..6 {
        assert_eq!(
            send(running.addr, request("GET", "/", "")).await.body,
            "alive"
        );
    }
    running
        .log
        .wait_for("taking web.1 out of rotation for 600 s after 2 failed connects")
        .await;
    // Out of rotation: no more attempts on it, so no more retries.
    let requests = running.log.wait_for_n(6, "method=GET").await;
    assert!(requests[5].contains("retries=0"), "{}", running.log.text());
}

#[tokio::test]
async fn the_last_instances_are_never_all_taken_out() {
    let running = router(&[dead_port()], |c| {
        c.eject_after = 1;
        c.eject_for = Duration::from_secs(600);
    })
    .await;
    for _ in 0..3 {
        let answer = send(running.addr, request("GET", "/", "")).await;
        // Still tried (and refused), not "no ready instance".
        assert_eq!(answer.status, 502);
        assert_eq!(answer.headers["x-shoal-error"], "instance_unreachable");
    }
    // And the log says so, rather than that it was taken out.
    running
        .log
        .wait_for("web.1 failed 1 connects in a row; it stays in rotation, as every other instance is out of it too")
        .await;
    running
        .log
        .wait_for_n(3, "error=instance_unreachable")
        .await;
    assert!(
        !running.log.text().contains("taking web.1 out of rotation"),
        "{}",
        running.log.text()
    );
}

#[tokio::test]
async fn attempts_are_bounded() {
    let dead: Vec<u16> = (0..6).map(|_| dead_port()).collect();
    let running = router(&dead, |c| c.max_attempts = 3).await;
    let answer = Client::connect(running.addr).await.get("/").await;
    assert_eq!(answer.status, 502);
    running.log.wait_for("retries=2").await;
}
