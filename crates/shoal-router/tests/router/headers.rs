//! Forwarding headers, request ids and hop-by-hop headers.

use hyper::Response;

use crate::support::{Client, full, instance, request, router};

/// An instance that answers with the request's headers, one `name: value` per line, sorted,
/// and a hop-by-hop header of its own.
async fn echo_headers() -> crate::support::Instance {
    instance(|req| async move {
        let mut lines: Vec<String> = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        Response::builder()
            .header("connection", "x-instance-hop")
            .header("x-instance-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-instance-kept", "yes")
            .body(full(lines.join("\n")))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn forwarding_headers_are_set_and_the_chain_appended() {
    let echo = echo_headers().await;
    let running = router(&[echo.port], |_| {}).await;
    let mut req = request("GET", "/", "");
    let headers = req.headers_mut();
    headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    headers.insert("x-forwarded-proto", "https".parse().unwrap());
    headers.insert("x-forwarded-host", "evil.test".parse().unwrap());
    headers.insert("x-forwarded-port", "443".parse().unwrap());
    let answer = Client::connect(running.addr).await.send(req).await;
    let seen: Vec<&str> = answer.body.lines().collect();
    for expected in [
        "x-forwarded-for: 203.0.113.7, 127.0.0.1".to_owned(),
        "x-forwarded-proto: http".to_owned(),
        "x-forwarded-host: app.test".to_owned(),
        format!("x-forwarded-port: {}", running.addr.port()),
    ] {
        assert!(
            seen.contains(&expected.as_str()),
            "missing `{expected}` in {seen:?}"
        );
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let echo = echo_headers().await;
    let running = router(&[echo.port], |_| {}).await;
    let mut req = request("GET", "/", "");
    let headers = req.headers_mut();
    headers.insert("connection", "x-client-hop".parse().unwrap());
    headers.insert("x-client-hop", "secret".parse().unwrap());
    headers.insert("proxy-authorization", "Basic eA==".parse().unwrap());
    headers.insert("x-client-kept", "yes".parse().unwrap());
    let answer = Client::connect(running.addr).await.send(req).await;
    assert!(
        answer.body.contains("x-client-kept: yes"),
        "{}",
        answer.body
    );
    for removed in [
        "x-client-hop",
        "proxy-authorization",
        "connection: x-client-hop",
    ] {
        assert!(
            !answer.body.contains(removed),
            "`{removed}` reached the instance:\n{}",
            answer.body
        );
    }
    assert_eq!(answer.headers["x-instance-kept"], "yes");
    assert!(
        !answer.headers.contains_key("x-instance-hop"),
        "{:?}",
        answer.headers
    );
    assert!(
        !answer.headers.contains_key("keep-alive"),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_and_made_otherwise() {
    let echo = echo_headers().await;
    let running = router(&[echo.port], |_| {}).await;
    let mut client = Client::connect(running.addr).await;

    let valid = "0f8c2a1b-7d3e-4c55-9a01-5e6f7a8b9c0d";
    let mut req = request("GET", "/", "");
    req.headers_mut()
        .insert("x-request-id", valid.parse().unwrap());
    let answer = client.send(req).await;
    assert_eq!(answer.headers["x-request-id"], valid);
    assert!(answer.body.contains(&format!("x-request-id: {valid}")));

    let mut req = request("GET", "/", "");
    req.headers_mut()
        .insert("x-request-id", "bad id".parse().unwrap());
    let answer = client.send(req).await;
    let made = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made, "bad id");
    assert_eq!(made.len(), 32);
    assert!(answer.body.contains(&format!("x-request-id: {made}")));
    running.log.wait_for(&format!("request_id={made}")).await;
}

#[tokio::test]
async fn access_log_lines_are_logfmt() {
    let echo = echo_headers().await;
    let running = router(&[echo.port], |_| {}).await;
    Client::connect(running.addr).await.get("/cart?id=1").await;
    let line = running.log.wait_for("method=GET").await;
    let fields: Vec<&str> = line.split(" | ").nth(1).unwrap().split(' ').collect();
    let keys: Vec<&str> = fields
        .iter()
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "method",
            "path",
            "status",
            "bytes",
            "instance",
            "connect",
            "queue",
            "service",
            "request_id",
            "retries",
            "client"
        ]
    );
    assert!(line.contains("path=\"/cart?id=1\" status=200"), "{line}");
    assert!(line.contains("instance=web.1"), "{line}");
}
