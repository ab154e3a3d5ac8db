//! Per-request balancing over ready instances only.

use std::collections::HashMap;

use shoal_router::Balance;

use crate::support::{Client, named, router};

#[tokio::test]
async fn every_request_of_one_connection_is_balanced_on_its_own() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let running = router(&[a.port, b.port, c.port], |c| {
        c.balance = Balance::RoundRobin
    })
    .await;
    let mut client = Client::connect(running.addr).await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(client.get("/").await.body);
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &seen {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    assert_eq!(counts, HashMap::from([("a", 10), ("b", 10), ("c", 10)]));
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
}

#[tokio::test]
async fn power_of_two_choices_spreads_requests() {
    let (a, b) = (named("a").await, named("b").await);
    let running = router(&[a.port, b.port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;
    for _ in 0..40 {
        client.get("/").await;
    }
    assert!(a.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(b.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn only_ready_instances_get_traffic() {
    let (ready, not_ready) = (named("ready").await, named("starting").await);
    let running = router(&[ready.port], |c| c.balance = Balance::Random).await;
    let mut client = Client::connect(running.addr).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.body, "ready");
    }
    assert_eq!(not_ready.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Once the supervisor says it is ready, it gets its share.
    running.set_ready(&[ready.port, not_ready.port]);
    for _ in 0..20 {
        client.get("/").await;
    }
    assert!(not_ready.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn no_ready_instance_is_a_503_with_a_stable_code() {
    let running = router(&[], |_| {}).await;
    let answer = Client::connect(running.addr).await.get("/").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["x-shoal-error"], "no_ready_instance");
    assert!(
        answer
            .body
            .starts_with("503 Service Unavailable: no instance is ready"),
        "{}",
        answer.body
    );
    let line = running.log.wait_for("status=503").await;
    assert!(line.contains("error=no_ready_instance"), "{line}");
}

#[tokio::test]
async fn a_request_waits_briefly_for_an_instance_to_become_ready() {
    let late = named("late").await;
    let running = router(&[], |c| c.ready_wait = std::time::Duration::from_secs(30)).await;
    let addr = running.addr;
    let pending = tokio::spawn(async move { Client::connect(addr).await.get("/").await });
    // The request is waiting; now an instance becomes ready.
    running.log.wait_for("listening on").await;
    running.set_ready(&[late.port]);
    let answer = pending.await.unwrap();
    assert_eq!(answer.body, "late");
}
