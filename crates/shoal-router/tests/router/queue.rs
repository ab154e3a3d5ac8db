//! Concurrency limits and the router's queue: a request goes only to an instance with a free
//! slot and otherwise waits, first come first served; the queue's bounds answer 503. The
//! stand-in instances hold each request until the test opens a gate, so nothing here depends
//! on timing.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Response;
use tokio::sync::Semaphore;

use crate::support::{
    Answer, Client, Instance, Running, dead_port, dies_after_reading, full, instance, raw, router,
};

/// Long enough for anything here to have happened on a slow machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// An instance that holds each request until `gate` gives it a permit, and records how many
/// requests it held at once at most.
struct Gated {
    instance: Instance,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

async fn gated(name: &'static str, gate: Arc<Semaphore>) -> Gated {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (inside, peak) = (now.clone(), most.clone());
    let instance = instance(move |req| {
        let (inside, peak, gate) = (inside.clone(), peak.clone(), gate.clone());
        async move {
            let held = inside.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(held, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            inside.fetch_sub(1, Ordering::SeqCst);
            let start = req
                .headers()
                .get("x-request-start")
                .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
            let mut response = Response::new(full(name));
            response
                .headers_mut()
                .insert("x-seen-request-start", start.parse().unwrap());
            response
        }
    })
    .await;
    Gated {
        instance,
        now,
        most,
    }
}

fn limit(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
}

/// Waits until `condition` holds, failing after `PATIENCE`.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn get(running: &Running, path: &'static str) -> tokio::task::JoinHandle<Answer> {
    let addr = running.addr;
    tokio::spawn(async move { Client::connect(addr).await.get(path).await })
}

#[tokio::test]
async fn a_request_waits_for_a_free_slot_and_never_shares_an_instance() {
    let gate = Arc::new(Semaphore::new(0));
    let (a, b) = (
        gated("a", gate.clone()).await,
        gated("b", gate.clone()).await,
    );
    let running = router(&[a.instance.port, b.instance.port], |c| {
        c.max_in_flight = limit(1)
    })
    .await;
    let requests: Vec<_> = (0..3).map(|_| get(&running, "/")).collect();
    // Two requests held by the instances, one each; the third waits in the router.
    until("two requests in the instances and one queued", || {
        a.now.load(Ordering::SeqCst) + b.now.load(Ordering::SeqCst) == 2
            && running.stats.queued() == 1
    })
    .await;
    assert_eq!(running.stats.limit(), Some(1));
    gate.add_permits(3);
    for request in requests {
        let answer = tokio::time::timeout(PATIENCE, request)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(
        a.most.load(Ordering::SeqCst),
        1,
        "two requests at once on a"
    );
    assert_eq!(
        b.most.load(Ordering::SeqCst),
        1,
        "two requests at once on b"
    );
    assert_eq!(running.stats.queued(), 0);
    let lines = running.log.wait_for_n(3, "status=200").await;
    assert!(lines.iter().all(|l| l.contains(" queue=")), "{lines:?}");
}

#[tokio::test]
async fn waiting_requests_are_served_in_order() {
    let gate = Arc::new(Semaphore::new(0));
    let only = gated("only", gate.clone()).await;
    let running = router(&[only.instance.port], |c| c.max_in_flight = limit(1)).await;
    let first = get(&running, "/first");
    until("the first request in the instance", || {
        only.now.load(Ordering::SeqCst) == 1
    })
    .await;
    // Queued one after the other.
    let mut waiting = Vec::new();
    for (i, path) in ["/w0", "/w1", "/w2", "/w3"].into_iter().enumerate() {
        waiting.push(get(&running, path));
        until("the request queued", || running.stats.queued() == i + 1).await;
    }
    gate.add_permits(5);
    first.await.unwrap();
    for request in waiting {
        assert_eq!(request.await.unwrap().status, 200);
    }
    let lines = running.log.wait_for_n(5, "status=200").await;
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split("path=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(order, ["/first", "/w0", "/w1", "/w2", "/w3"]);
}

#[tokio::test]
async fn the_queue_timeout_and_a_full_queue_answer_503() {
    let gate = Arc::new(Semaphore::new(0));
    let only = gated("only", gate.clone()).await;
    let running = router(&[only.instance.port], |c| {
        c.max_in_flight = limit(1);
        c.max_queue = Some(1);
        c.queue_timeout = Duration::from_millis(500);
    })
    .await;
    let held = get(&running, "/held");
    until("the first request in the instance", || {
        only.now.load(Ordering::SeqCst) == 1
    })
    .await;
    let queued = get(&running, "/queued");
    until("one request queued", || running.stats.queued() == 1).await;
    // The queue holds one: the next is refused at once.
    let full = Client::connect(running.addr).await.get("/full").await;
    assert_eq!(full.status, 503);
    assert_eq!(full.headers["x-shoal-error"], "queue_full");
    assert_eq!(full.headers["retry-after"], "1");
    // The queued one gives up at the queue timeout.
    let timed_out = tokio::time::timeout(PATIENCE, queued)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(timed_out.status, 503);
    assert_eq!(timed_out.headers["x-shoal-error"], "queue_timeout");
    assert!(timed_out.headers.contains_key("retry-after"));
    assert_eq!(running.stats.queued(), 0);
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
    // The slot is free again.
    gate.add_permits(1);
    let after = Client::connect(running.addr).await.get("/after").await;
    assert_eq!(after.status, 200);
    assert_eq!(only.most.load(Ordering::SeqCst), 1);
}

/// Without `--max-queue`, the queue holds `QUEUE_PER_SLOT` requests for each slot of the
/// formation's instances, and follows the formation as it changes.
#[tokio::test]
async fn the_default_queue_bound_is_per_slot_and_follows_the_formation() {
    use shoal_router::config::QUEUE_PER_SLOT;
    let gate = Arc::new(Semaphore::new(0));
    let only = gated("only", gate.clone()).await;
    let running = router(&[only.instance.port], |c| {
        c.max_in_flight = limit(1);
    })
    .await;
    let held = get(&running, "/held");
    until("the first request in the instance", || {
        only.now.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(running.stats.max_queue(), Some(QUEUE_PER_SLOT));
    let queued: Vec<_> = (0..QUEUE_PER_SLOT)
        .map(|_| get(&running, "/queued"))
        .collect();
    until("a full queue", || running.stats.queued() == QUEUE_PER_SLOT).await;
    let full = Client::connect(running.addr).await.get("/full").await;
    assert_eq!(full.status, 503);
    assert_eq!(full.headers["x-shoal-error"], "queue_full");
    // A second instance (the same stand-in under another name, busy with a waiter at once)
    // doubles the bound: the next request waits instead of being refused.
    running.set_ready(&[only.instance.port, only.instance.port]);
    let more = get(&running, "/more");
    until("the new instance handed the first waiter", || {
        only.now.load(Ordering::SeqCst) == 2
    })
    .await;
    // One waiter left for the new instance, the newcomer took its place.
    until("the newcomer queued", || {
        running.stats.queued() == QUEUE_PER_SLOT
    })
    .await;
    assert_eq!(running.stats.max_queue(), Some(2 * QUEUE_PER_SLOT));
    gate.add_permits(QUEUE_PER_SLOT + 2);
    assert_eq!(held.await.unwrap().status, 200);
    for request in queued {
        assert_eq!(request.await.unwrap().status, 200);
    }
    assert_eq!(more.await.unwrap().status, 200);
}

/// An instance back in rotation after its connects failed has free slots that no request
/// released to the queue: they go to the waiting requests as soon as the next request comes,
/// rather than staying idle while the other instance serves the queue alone.
#[tokio::test]
async fn an_instance_back_in_rotation_serves_the_queue() {
    let gate = Arc::new(Semaphore::new(0));
    let busy = gated("busy", gate.clone()).await;
    let back = dead_port();
    let running = router(&[busy.instance.port, back], |c| {
        c.max_in_flight = limit(1);
        c.eject_after = 1;
        c.eject_for = Duration::from_millis(200);
    })
    .await;
    let mut requests = vec![get(&running, "/held")];
    until("a request held in the busy instance", || {
        busy.now.load(Ordering::SeqCst) == 1
    })
    .await;
    // Unless the first request already found it dead, the next one does: out of rotation.
    requests.push(get(&running, "/probe"));
    running.log.wait_for("taking web.2 out of rotation").await;
    // It comes back: a listener on its port that answers `back`.
    let served = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", back))
        .await
        .unwrap();
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nback",
                    )
                    .await;
            });
        }
    });
    // The busy instance stays busy; requests keep coming until one reaches the instance back
    // in rotation (each one arriving after its time out of rotation offers its slot).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while served.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the instance back in rotation got no request: {}",
            running.log.text()
        );
        requests.push(get(&running, "/newcomer"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        busy.now.load(Ordering::SeqCst),
        1,
        "the busy instance is still held"
    );
    gate.add_permits(requests.len());
    for request in requests {
        assert_eq!(request.await.unwrap().status, 200);
    }
    assert_eq!(busy.most.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_client_that_leaves_the_queue_is_removed() {
    let gate = Arc::new(Semaphore::new(0));
    let only = gated("only", gate.clone()).await;
    let running = router(&[only.instance.port], |c| c.max_in_flight = limit(1)).await;
    let held = get(&running, "/held");
    until("the first request in the instance", || {
        only.now.load(Ordering::SeqCst) == 1
    })
    .await;
    let leaving = tokio::spawn(raw(
        running.addr,
        b"GET /leaving HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(300),
    ));
    until("one request queued", || running.stats.queued() == 1).await;
    // `raw` gives up and closes its connection after 300 ms.
    leaving.await.unwrap();
    until("the queue to empty", || running.stats.queued() == 0).await;
    gate.add_permits(2);
    assert_eq!(held.await.unwrap().status, 200);
    // The slot the departed client would have had goes to the next request.
    let next = Client::connect(running.addr).await.get("/next").await;
    assert_eq!(next.status, 200);
    assert_eq!(only.most.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_instance_that_becomes_ready_takes_waiting_requests() {
    let gate = Arc::new(Semaphore::new(0));
    let (a, b) = (
        gated("a", gate.clone()).await,
        gated("b", gate.clone()).await,
    );
    let running = router(&[a.instance.port], |c| c.max_in_flight = limit(1)).await;
    let held = get(&running, "/held");
    until("a busy", || a.now.load(Ordering::SeqCst) == 1).await;
    let waiting = get(&running, "/waiting");
    until("one request queued", || running.stats.queued() == 1).await;
    // A second instance becomes ready (a scale-up): the waiting request goes to it.
    running.set_ready(&[a.instance.port, b.instance.port]);
    until("b busy", || b.now.load(Ordering::SeqCst) == 1).await;
    gate.add_permits(2);
    assert_eq!(waiting.await.unwrap().body, "b");
    assert_eq!(held.await.unwrap().body, "a");
}

#[tokio::test]
async fn queued_idempotent_requests_survive_an_instance_that_dies() {
    let gate = Arc::new(Semaphore::new(0));
    let dead = dies_after_reading().await;
    let alive = gated("alive", gate.clone()).await;
    let running = router(&[dead.port, alive.instance.port], |c| {
        c.max_in_flight = limit(1)
    })
    .await;
    let requests: Vec<_> = (0..8).map(|_| get(&running, "/")).collect();
    until("requests waiting for the live instance", || {
        alive.now.load(Ordering::SeqCst) == 1 && running.stats.queued() >= 1
    })
    .await;
    gate.add_permits(8);
    for request in requests {
        let answer = tokio::time::timeout(PATIENCE, request)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "alive"));
    }
    assert_eq!(alive.most.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_app_learns_when_the_router_received_the_request() {
    let gate = Arc::new(Semaphore::new(2));
    let app = gated("app", gate).await;
    let running = router(&[app.instance.port], |_| {}).await;
    let before = micros_now();
    let answer = Client::connect(running.addr).await.get("/").await;
    let after = micros_now();
    let seen = answer.headers["x-seen-request-start"].to_str().unwrap();
    let t: u128 = seen
        .strip_prefix("t=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert!((before..=after).contains(&t), "{before} <= {t} <= {after}");
    // A front proxy's own header is kept.
    let mut client = Client::connect(running.addr).await;
    let answer = client
        .send(
            hyper::Request::get("/")
                .header("host", "x")
                .header("x-request-start", "t=1700000000000000")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.headers["x-seen-request-start"], "t=1700000000000000");
}

fn micros_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[tokio::test]
async fn draining_is_told_when_an_instance_has_no_request_left() {
    let gate = Arc::new(Semaphore::new(0));
    let app = gated("app", gate.clone()).await;
    let running = router(&[app.instance.port], |_| {}).await;
    // Idle from the start.
    tokio::time::timeout(PATIENCE, running.stats.until_idle("web.1"))
        .await
        .unwrap();
    let held = get(&running, "/");
    until("the request in the instance", || {
        app.now.load(Ordering::SeqCst) == 1
    })
    .await;
    let stats = running.stats.clone();
    let idle = tokio::spawn(async move { stats.until_idle("web.1").await });
    // It cannot resolve while the request is in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), async {
            while !idle.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err()
    );
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
    tokio::time::timeout(PATIENCE, idle).await.unwrap().unwrap();
}
