//! `SHOAL_LISTEN_HOST` moves `listen()` off loopback. Its own test binary with one test: it
//! sets the variable, which no other test may read at the same time.

#[path = "it/ifaddrs.rs"]
mod ifaddrs;

use std::net::IpAddr;

fn set(value: &str) {
    // SAFETY: this binary's only test, on a current-thread runtime: no other thread reads the
    // environment while it changes.
    unsafe { std::env::set_var("SHOAL_LISTEN_HOST", value) };
}

#[tokio::test]
async fn the_variable_picks_the_address() {
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var("PORT") };

    set("0.0.0.0");
    let wide = shoal_kit::listen(0).await.unwrap();
    let addr = wide.local_addr().unwrap();
    assert!(addr.ip().is_unspecified(), "{addr}");
    for ip in ifaddrs::non_loopback_v4() {
        assert!(
            !ifaddrs::port_free_at(ip, addr.port()),
            "`SHOAL_LISTEN_HOST=0.0.0.0` did not listen on `{ip}`"
        );
    }
    drop(wide);

    set("[::1]");
    let v6 = shoal_kit::listen(0).await;
    // A machine without IPv6 cannot bind `::1`; the address tried is still the one asked for.
    match v6 {
        Ok(l) => assert_eq!(
            l.local_addr().unwrap().ip(),
            "::1".parse::<IpAddr>().unwrap()
        ),
        Err(e) => assert!(e.to_string().starts_with("cannot listen on `[::1]:"), "{e}"),
    }

    set("localhost");
    let err = shoal_kit::listen(0).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "environment variable `SHOAL_LISTEN_HOST` is `localhost`: expected an IP address such \
         as `127.0.0.1`, `0.0.0.0` or `::`"
    );

    set("");
    let local = shoal_kit::listen(0).await.unwrap();
    assert_eq!(local.local_addr().unwrap().ip().to_string(), "127.0.0.1");
}
