//! Bodies stream both ways (no buffering), trailers pass, and WebSocket upgrades stay open.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{full, instance, router};

const MIB: usize = 1024 * 1024;

/// Peak resident memory of this process so far, in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_without_buffering() {
    const SIZE: usize = 256 * MIB;
    // Counts what it receives, as it arrives; sends SIZE bytes back, chunk by chunk.
    let app = instance(|req| async move {
        if req.uri().path() == "/upload" {
            let mut body = req.into_body();
            let mut received = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    received += data.len();
                }
            }
            return Response::new(full(received.to_string()));
        }
        let chunks = futures_util::stream::iter((0..SIZE / (64 * 1024)).map(|_| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(
                vec![7u8; 64 * 1024],
            )))
        }));
        Response::new(BodyExt::boxed(StreamBody::new(chunks)))
    })
    .await;
    let running = router(&[app.port], |_| {}).await;
    let before = peak_rss();

    let mut stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![1u8; MIB];
    for _ in 0..SIZE / MIB {
        stream.write_all(&chunk).await.unwrap();
    }
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.ends_with(&SIZE.to_string()), "{answer}");

    stream
        .write_all(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; MIB];
    // The head plus SIZE bytes of body, in chunked encoding framing.
    while total < SIZE {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after {total} bytes");
        total += buf[..n].iter().filter(|&&b| b == 7).count();
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 64 * MIB,
        "memory grew by {} MiB while streaming",
        grown / MIB
    );
}

#[tokio::test]
async fn trailers_pass_through() {
    let app = instance(|_req| async {
        let frames = futures_util::stream::iter(vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(
                b"body",
            ))),
            Ok(Frame::trailers({
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-checksum", "abc123".parse().unwrap());
                trailers
            })),
        ]);
        Response::builder()
            .header("trailer", "x-checksum")
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap()
    })
    .await;
    // The idle connection is closed a second after the response, which ends the read.
    let running = router(&[app.port], |c| c.header_timeout = Duration::from_secs(1)).await;
    let answer = crate::support::raw(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(answer.contains("transfer-encoding: chunked"), "{answer}");
    assert!(answer.contains("body"), "{answer}");
    assert!(answer.contains("x-checksum: abc123"), "{answer}");
}

#[tokio::test]
async fn websocket_upgrades_pass_through_and_stay_open() {
    // A real WebSocket server as the instance: echoes every message.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let running = router(&[port], |_| {}).await;
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", running.addr))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..5 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    socket.close(None).await.unwrap();
}
