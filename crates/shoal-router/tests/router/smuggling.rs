//! A request whose chunked trailer section ends with a bare LF is refused: read as a line end,
//! it lets the router and a front proxy that does not take bare LF disagree on where the
//! request ends, and the bytes after it become a request of their own (hyper 1.12 did so;
//! 1.13 refuses).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;

use crate::support::{full, instance, raw, router};

#[tokio::test]
async fn a_bare_lf_in_a_chunked_trailer_is_refused_and_nothing_is_swallowed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = instance(move |req| {
        let record = record.clone();
        async move {
            let target = req.uri().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            record.lock().unwrap().push(format!("{target} {body:?}"));
            Response::new(full("ok"))
        }
    })
    .await;
    let running = router(&[app.port], |_| {}).await;
    for wire in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\nGET /swallowed HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        // The same after a chunk of data.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: 1\n\nGET /swallowed HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let shown = String::from_utf8_lossy(wire);
        let answer = raw(running.addr, wire, Duration::from_secs(30)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{shown:?}: {answer:?}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "one answer, then the connection closed: {answer:?}"
        );
    }
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "the instance saw {seen:?}");
}
