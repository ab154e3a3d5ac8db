//! `listen()`: loopback by default, and a taken port is an error naming the address.

use crate::ifaddrs::{non_loopback_v4, port_free_at};

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    // `PORT` is not set by the test runner; the default port is what is tried.
    if std::env::var_os("PORT").is_some() {
        eprintln!("NOT RUN: a_taken_port_is_a_clear_error: `PORT` is set in the environment");
        return;
    }
    let err = shoal_kit::listen(port).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on `127.0.0.1:{port}`")
    );
    assert!(std::error::Error::source(&err).is_some());
}

/// Under shoal the router is the way in: the instance must not be reachable on the machine's
/// other addresses, where clients could forge the router's `X-Forwarded-*` headers.
#[tokio::test]
async fn listens_on_loopback_only_by_default() {
    if std::env::var_os("PORT").is_some() || std::env::var_os("SHOAL_LISTEN_HOST").is_some() {
        eprintln!(
            "NOT RUN: listens_on_loopback_only_by_default: `PORT` or `SHOAL_LISTEN_HOST` is set"
        );
        return;
    }
    let listener = shoal_kit::listen(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let others = non_loopback_v4();
    if others.is_empty() {
        eprintln!(
            "listens_on_loopback_only_by_default: this machine has no non-loopback IPv4 address"
        );
    }
    for ip in others {
        assert!(
            port_free_at(ip, addr.port()),
            "port {} is held on `{ip}` too: the listener is reachable from the network",
            addr.port()
        );
    }
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
}
