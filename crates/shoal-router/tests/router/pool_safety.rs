//! A connection to an instance goes back to the pool only when nothing of its last response can
//! still be on the way: one client's answer is never handed to another, and a request the
//! instance executed never gets 502 because a stray byte was taken for its answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::{Client, read_request, request, router};

/// An instance that answers `HEAD` as it answers `GET` (the `do_HEAD = do_GET` mistake): the
/// head, then, a moment later and in a separate write, the body a HEAD response must not have.
/// Every answer names the request it answers. Counts the POSTs it executed.
async fn head_with_body() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = Arc::new(AtomicUsize::new(0));
    let executed = posts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let executed = executed.clone();
            tokio::spawn(async move {
                while let Some(request) = read_request(&mut stream).await {
                    let line = String::from_utf8_lossy(&request);
                    let mut words = line.split(' ');
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    if method == "POST" {
                        executed.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = format!("answer to {method} {path}");
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if method == "HEAD" {
                        // Long enough for the router to have read the head and moved on.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let body = format!("answer to GET {path}");
                        if stream.write_all(body.as_bytes()).await.is_err() {
                            return;
                        }
                    } else if stream.write_all(body.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_answered_with_a_body_never_reaches_another_client() {
    let (port, posts) = head_with_body().await;
    let running = router(&[port], |_| {}).await;
    let addr = running.addr;
    let done = Arc::new(AtomicBool::new(false));
    let heads = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let (mut sent, mut wrong) = (0, Vec::new());
            while !done.load(Ordering::SeqCst) {
                let answer = client.send(request("HEAD", "/h", "")).await;
                if (answer.status, answer.body.as_str()) != (200, "") {
                    wrong.push(format!("HEAD {sent}: {} {:?}", answer.status, answer.body));
                }
                sent += 1;
            }
            (sent, wrong)
        })
    };
    let getters: Vec<_> = (0..3)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut wrong = Vec::new();
                for n in 0..200 {
                    let path = format!("/c{c}/{n}");
                    let answer = client.get(&path).await;
                    if (answer.status, answer.body.as_str())
                        != (200, format!("answer to GET {path}").as_str())
                    {
                        wrong.push(format!("GET {path}: {} {:?}", answer.status, answer.body));
                    }
                }
                wrong
            })
        })
        .collect();
    let poster = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        let mut wrong = Vec::new();
        for n in 0..100 {
            let path = format!("/p/{n}");
            let answer = client.send(request("POST", &path, "x=1")).await;
            if (answer.status, answer.body.as_str())
                != (200, format!("answer to POST {path}").as_str())
            {
                wrong.push(format!("POST {path}: {} {:?}", answer.status, answer.body));
            }
        }
        wrong
    });
    let mut wrong = Vec::new();
    for getter in getters {
        wrong.extend(getter.await.unwrap());
    }
    wrong.extend(poster.await.unwrap());
    done.store(true, Ordering::SeqCst);
    let (heads, wrong_heads) = heads.await.unwrap();
    wrong.extend(wrong_heads);
    assert!(
        wrong.is_empty(),
        "{} of {} answers wrong, e.g. {:?}",
        wrong.len(),
        700 + heads,
        &wrong[..wrong.len().min(5)]
    );
    // Every POST was executed exactly once, so none of them can have been a 502 after it ran.
    assert_eq!(posts.load(Ordering::SeqCst), 100);
}
