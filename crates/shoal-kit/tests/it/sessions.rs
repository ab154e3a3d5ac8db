//! The session layer against every store: round trips, no lost updates between processes,
//! the logout race, expiry, strict ids, id rotation, cookie flags, and a store that dies.
//! "Processes" are separate `SessionStore` connections, as separate processes would have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use shoal_kit::{SessionConfig, SessionLayer, SessionStore, StoreOptions};

use crate::support::{Kind, Proxy, Reply, eventually, send, send_with, target, through};

/// Iterations of each race; each one is a fresh session.
const RACES: usize = 40;

macro_rules! per_store {
    ($($test:ident),* $(,)?) => {
        mod redis { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Redis).await } )* }
        mod memcached { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Memcached).await } )* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Postgres).await } )* }
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Sqlite).await } )* }
    };
}

per_store!(
    round_trip_and_read_only_requests_do_not_write,
    concurrent_requests_changing_different_keys_keep_both,
    many_concurrent_writers_keep_every_key,
    logout_racing_a_slow_request_stays_logged_out,
    idle_timeout_expires_and_reads_keep_it_alive,
    absolute_lifetime_ends_a_busy_session,
    unknown_ids_are_never_adopted,
    login_cycles_the_id_and_logout_deletes_it,
    a_write_saved_during_a_login_is_kept,
    a_logout_during_a_login_stays_logged_out,
    cookie_flags,
);

macro_rules! per_network_store {
    ($($test:ident),* $(,)?) => {
        mod redis_net { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Redis).await } )* }
        mod memcached_net { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Memcached).await } )* }
        mod postgres_net { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Kind::Postgres).await } )* }
    };
}

per_network_store!(a_dead_store_gives_503_and_the_app_recovers);

async fn round_trip_and_read_only_requests_do_not_write(kind: Kind) {
    let Some(t) = target(kind, "roundtrip") else {
        return;
    };
    let store = t.store().await;
    let app = crate::support::app(store.clone(), SessionConfig::default());

    let r = send(&app, "GET", "/get/a", None).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str(), &r.set_cookie),
        (200, "-", &None),
        "an untouched session stores nothing"
    );

    let r = send(&app, "POST", "/set/a/1", None).await;
    let id = r.issued().expect("a new session sets a cookie");
    assert_eq!(id.len(), 43, "256-bit ids in base64url");
    let version = store.stored_version(&id).await.unwrap().expect("stored");

    for _ in 0..3 {
        let r = send(&app, "GET", "/get/a", Some(&id)).await;
        assert_eq!((r.body.as_str(), &r.set_cookie), ("1", &None));
    }
    assert_eq!(
        store.stored_version(&id).await.unwrap(),
        Some(version),
        "reads wrote to the store"
    );

    let r = send(&app, "POST", "/set/a/1", Some(&id)).await;
    assert_eq!(r.set_cookie, None);
    assert_eq!(
        store.stored_version(&id).await.unwrap(),
        Some(version),
        "setting an equal value wrote"
    );
    send(&app, "POST", "/set/a/2", Some(&id)).await;
    assert_ne!(store.stored_version(&id).await.unwrap(), Some(version));
    assert_eq!(send(&app, "GET", "/get/a", Some(&id)).await.body, "2");
}

/// Two processes, each with its own store connection, change different keys of one session at
/// the same time (both load before either saves). Both changes must survive.
async fn concurrent_requests_changing_different_keys_keep_both(kind: Kind) {
    let Some(t) = target(kind, "twokeys") else {
        return;
    };
    let one = crate::support::app(t.store().await, SessionConfig::default());
    let two = crate::support::app(t.store().await, SessionConfig::default());
    for i in 0..RACES {
        let id = send(&one, "POST", "/set/start/1", None)
            .await
            .issued()
            .unwrap();
        let a = format!("/set/a/{i}/30");
        let b = format!("/set/b/{i}/30");
        let (ra, rb) = tokio::join!(
            send(&one, "POST", &a, Some(&id)),
            send(&two, "POST", &b, Some(&id))
        );
        assert_eq!(
            (ra.status.as_u16(), rb.status.as_u16()),
            (200, 200),
            "{ra:?} {rb:?}"
        );
        let i = i.to_string();
        assert_eq!(
            send(&one, "GET", "/get/a", Some(&id)).await.body,
            i,
            "iteration {i}: `a` was lost"
        );
        assert_eq!(
            send(&two, "GET", "/get/b", Some(&id)).await.body,
            i,
            "iteration {i}: `b` was lost"
        );
        assert_eq!(send(&two, "GET", "/get/start", Some(&id)).await.body, "1");
    }
}

/// Eight writers over two processes, no artificial delay: maximum contention on one record.
async fn many_concurrent_writers_keep_every_key(kind: Kind) {
    let Some(t) = target(kind, "manykeys") else {
        return;
    };
    let apps = [
        crate::support::app(t.store().await, SessionConfig::default()),
        crate::support::app(t.store().await, SessionConfig::default()),
    ];
    for round in 0..10 {
        let id = send(&apps[0], "POST", "/set/start/1", None)
            .await
            .issued()
            .unwrap();
        let replies = futures_join_all((0..8).map(|k| {
            let (app, id) = (apps[k % 2].clone(), id.clone());
            async move { send(&app, "POST", &format!("/set/k{k}/{round}"), Some(&id)).await }
        }))
        .await;
        assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
        for k in 0..8 {
            assert_eq!(
                send(&apps[k % 2], "GET", &format!("/get/k{k}"), Some(&id))
                    .await
                    .body,
                round.to_string(),
                "round {round}: k{k} lost"
            );
        }
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A slow request loads the session, a logout on another process deletes it, then the slow
/// request saves: the session must stay deleted (the CVE-2025-46336 / connect-redis#328 bug).
async fn logout_racing_a_slow_request_stays_logged_out(kind: Kind) {
    let Some(t) = target(kind, "logoutrace") else {
        return;
    };
    let store_one = t.store().await;
    let one = crate::support::app(store_one.clone(), SessionConfig::default());
    let two = crate::support::app(t.store().await, SessionConfig::default());
    let mut raced = 0;
    for i in 0..RACES {
        let id = send(&one, "POST", "/set/user/alice", None)
            .await
            .issued()
            .unwrap();
        let slow = send(&one, "POST", "/set/cart/full/60", Some(&id));
        let logout = async {
            tokio::time::sleep(Duration::from_millis(15)).await;
            send(&two, "POST", "/logout", Some(&id)).await
        };
        let (rs, rl) = tokio::join!(slow, logout);
        assert_eq!(
            rl.issued().as_deref(),
            Some(""),
            "logout removes the cookie"
        );
        assert_eq!(rs.status, 200);
        // Normally the slow request loaded before the logout and learns at save time that the
        // session is gone; on a very slow machine it may load after it and start a new one.
        match rs.issued() {
            Some(issued) if issued.is_empty() => raced += 1,
            other => assert_ne!(other.as_deref(), Some(id.as_str()), "iteration {i}"),
        }
        assert_eq!(
            store_one.stored_version(&id).await.unwrap(),
            None,
            "iteration {i}: the session came back"
        );
        let r = send(&one, "GET", "/get/user", Some(&id)).await;
        assert_eq!(r.body, "-", "iteration {i}");
    }
    assert!(
        raced >= RACES / 2,
        "only {raced} of {RACES} iterations raced"
    );
}

async fn idle_timeout_expires_and_reads_keep_it_alive(kind: Kind) {
    let Some(t) = target(kind, "idle") else {
        return;
    };
    let store = t.store().await;
    // Memcached counts whole seconds, so the idle timeout is a few of them.
    let app = crate::support::app(
        store.clone(),
        SessionConfig::default().with_idle_timeout(Duration::from_secs(4)),
    );
    let kept = send(&app, "POST", "/set/a/1", None).await.issued().unwrap();
    let left = send(&app, "POST", "/set/a/1", None).await.issued().unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(7) {
        assert_eq!(
            send(&app, "GET", "/get/a", Some(&kept)).await.body,
            "1",
            "a session read every 500 ms expired"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            store.stored_version(&left).await.unwrap().is_none()
        })
        .await,
        "an idle session did not expire"
    );
    assert_eq!(send(&app, "GET", "/get/a", Some(&left)).await.body, "-");
}

async fn absolute_lifetime_ends_a_busy_session(kind: Kind) {
    let Some(t) = target(kind, "absolute") else {
        return;
    };
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_secs(60))
        .with_absolute_lifetime(Duration::from_secs(2));
    let app = crate::support::app(t.store().await, config);
    let id = send(&app, "POST", "/set/a/1", None).await.issued().unwrap();
    let start = Instant::now();
    assert_eq!(send(&app, "GET", "/get/a", Some(&id)).await.body, "1");
    let mut n = 0;
    let gone = eventually(Duration::from_secs(10), || {
        n += 1;
        let path = format!("/set/n/{n}");
        let (app, id) = (&app, &id);
        async move {
            send(app, "POST", &path, Some(id)).await;
            send(app, "GET", "/get/a", Some(id)).await.body == "-"
        }
    })
    .await;
    assert!(
        gone,
        "a session written every 100 ms outlived its absolute lifetime"
    );
    // Memcached counts in whole seconds on a clock that lags by up to one, so the lower bound
    // is loose: the point is that the session lived, then died while busy.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "expired too early: {:?}",
        start.elapsed()
    );
}

async fn unknown_ids_are_never_adopted(kind: Kind) {
    let Some(t) = target(kind, "strict") else {
        return;
    };
    let app = crate::support::app(t.store().await, SessionConfig::default());
    let forged = "A".repeat(43);
    let r = send(&app, "GET", "/get/a", Some(&forged)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "-"));
    assert_eq!(
        r.issued().as_deref(),
        Some(""),
        "an unknown id is removed from the client"
    );
    let r = send(&app, "POST", "/set/a/1", Some(&forged)).await;
    let issued = r.issued().unwrap();
    assert_ne!(issued, forged, "a client-chosen id was adopted");
    assert_eq!(issued.len(), 43);
    assert_eq!(send(&app, "GET", "/get/a", Some(&forged)).await.body, "-");
    assert_eq!(send(&app, "GET", "/get/a", Some(&issued)).await.body, "1");
    for malformed in ["x", "../../etc", &"B".repeat(44)] {
        let r = send(&app, "GET", "/get/a", Some(malformed)).await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "-"),
            "{malformed}"
        );
    }
}

async fn login_cycles_the_id_and_logout_deletes_it(kind: Kind) {
    let Some(t) = target(kind, "cycle") else {
        return;
    };
    let store = t.store().await;
    let app = crate::support::app(store.clone(), SessionConfig::default());
    let old = send(&app, "POST", "/set/cart/3", None)
        .await
        .issued()
        .unwrap();
    let new = send(&app, "POST", "/login", Some(&old))
        .await
        .issued()
        .unwrap();
    assert_ne!(new, old, "login must change the id");
    assert_eq!(new.len(), 43);
    assert_eq!(
        send(&app, "GET", "/get/cart", Some(&new)).await.body,
        "3",
        "data survives the new id"
    );
    assert_eq!(
        send(&app, "GET", "/get/user", Some(&new)).await.body,
        "alice"
    );
    assert_eq!(
        store.stored_version(&old).await.unwrap(),
        None,
        "the old id is deleted"
    );
    assert_eq!(send(&app, "GET", "/get/cart", Some(&old)).await.body, "-");

    let r = send(&app, "POST", "/logout", Some(&new)).await;
    assert_eq!(r.issued().as_deref(), Some(""));
    assert!(r.set_cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(
        store.stored_version(&new).await.unwrap(),
        None,
        "logout deletes server-side"
    );
    assert_eq!(send(&app, "GET", "/get/user", Some(&new)).await.body, "-");
}

/// An app (one process) whose first `cycle()` sends `path` with `cookie` through `other` (a
/// second process) at the worst moment: after the cycle copied the old session's data to the
/// new id, before it retired the old id. Returns the app and where the other reply lands.
fn app_racing_its_cycle(
    store: SessionStore,
    other: &Router,
    path: &'static str,
    cookie: &str,
) -> (Router, Arc<Mutex<Option<Reply>>>) {
    let reply = Arc::new(Mutex::new(None));
    let fired = Arc::new(AtomicBool::new(false));
    let (other, cookie, landed) = (other.clone(), cookie.to_owned(), reply.clone());
    let layer = SessionLayer::new(store, SessionConfig::default()).with_cycle_hook(move || {
        let (other, cookie, landed) = (other.clone(), cookie.clone(), landed.clone());
        let first = !fired.swap(true, Ordering::SeqCst);
        async move {
            if first {
                let r = send(&other, "POST", path, Some(&cookie)).await;
                *landed.lock().unwrap() = Some(r);
            }
        }
    });
    (crate::support::app_with(layer), reply)
}

/// A request of the old id saves a change while a login on another process cycles the id:
/// the change was saved (200, no cookie removed), so the new id must carry it.
async fn a_write_saved_during_a_login_is_kept(kind: Kind) {
    let Some(t) = target(kind, "cyclewrite") else {
        return;
    };
    let store = t.store().await;
    let two = crate::support::app(t.store().await, SessionConfig::default());
    let old = send(&two, "POST", "/set/cart/3", None)
        .await
        .issued()
        .unwrap();
    let (one, raced) = app_racing_its_cycle(store.clone(), &two, "/set/late/yes", &old);
    let login = send(&one, "POST", "/login", Some(&old)).await;
    let raced = raced.lock().unwrap().take().expect("the login cycled");
    assert_eq!(
        (raced.status.as_u16(), &raced.set_cookie),
        (200, &None),
        "the racing write was saved: {raced:?}"
    );
    assert_eq!(login.status, 200, "{login:?}");
    let new = login.issued().expect("the login issues an id");
    assert!(!new.is_empty() && new != old, "{login:?}");
    for (key, value) in [("late", "yes"), ("cart", "3"), ("user", "alice")] {
        assert_eq!(
            send(&one, "GET", &format!("/get/{key}"), Some(&new))
                .await
                .body,
            value,
            "`{key}` after the login"
        );
    }
    assert_eq!(
        store.stored_version(&old).await.unwrap(),
        None,
        "the old id is retired"
    );
}

/// A logout of the old id lands while a login on another process cycles the id: the login
/// must not carry the session on under the new id.
async fn a_logout_during_a_login_stays_logged_out(kind: Kind) {
    let Some(t) = target(kind, "cyclelogout") else {
        return;
    };
    let store = t.store().await;
    let two = crate::support::app(t.store().await, SessionConfig::default());
    let old = send(&two, "POST", "/set/cart/3", None)
        .await
        .issued()
        .unwrap();
    let (one, raced) = app_racing_its_cycle(store.clone(), &two, "/logout", &old);
    let login = send(&one, "POST", "/login", Some(&old)).await;
    let raced = raced.lock().unwrap().take().expect("the login cycled");
    assert_eq!(raced.issued().as_deref(), Some(""), "{raced:?}");
    assert_eq!(
        login.issued().as_deref(),
        Some(""),
        "the login went on under a new id after a logout: {login:?}"
    );
    assert_eq!(store.stored_version(&old).await.unwrap(), None);
}

async fn cookie_flags(kind: Kind) {
    let Some(t) = target(kind, "flags") else {
        return;
    };
    let store = t.store().await;
    let app = crate::support::app(store.clone(), SessionConfig::default());
    let plain = send(&app, "POST", "/set/a/1", None)
        .await
        .set_cookie
        .unwrap();
    assert!(plain.starts_with("shoal_session="), "{plain}");
    for attr in ["; Path=/", "; HttpOnly", "; SameSite=Lax"] {
        assert!(plain.contains(attr), "{plain} lacks {attr}");
    }
    assert!(!plain.contains("Secure"), "{plain}");
    assert!(!plain.contains("Max-Age"), "{plain}");
    let https = send_with(
        &app,
        "POST",
        "/set/a/1",
        None,
        &[("x-forwarded-proto", "https")],
    )
    .await
    .set_cookie
    .unwrap();
    assert!(https.ends_with("; Secure"), "{https}");

    let host = crate::support::app(store, SessionConfig::default().with_host_prefix(true));
    let c = send(&host, "POST", "/set/a/1", None)
        .await
        .set_cookie
        .unwrap();
    assert!(
        c.starts_with("__Host-shoal_session=") && c.contains("; Path=/") && c.ends_with("; Secure"),
        "{c}"
    );
    assert!(!c.contains("Domain"), "{c}");
}

/// The store goes away (a proxy in front of it is cut): requests get 503 quickly instead of
/// hanging or panicking, and once it is back the same session works again.
async fn a_dead_store_gives_503_and_the_app_recovers(kind: Kind) {
    let Some(t) = target(kind, "dead") else {
        return;
    };
    let (_, server) = through(&t.url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(&server).await;
    let (url, _) = through(&t.url, proxy.addr);
    let store = t.store_at(&url, Duration::from_secs(1)).await;
    let app = crate::support::app(store, SessionConfig::default());
    let id = send(&app, "POST", "/set/a/1", None).await.issued().unwrap();

    proxy.cut();
    for path in ["/get/a", "/set/a/2"] {
        let start = Instant::now();
        let r = send(
            &app,
            if path.starts_with("/get") {
                "GET"
            } else {
                "POST"
            },
            path,
            Some(&id),
        )
        .await;
        assert_eq!(r.status, 503, "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }
    let fresh = send(&app, "POST", "/set/b/1", None).await;
    assert_eq!(fresh.status, 503, "creating a session with the store away");

    proxy.restore().await;
    let recovered = eventually(Duration::from_secs(20), || async {
        send(&app, "GET", "/get/a", Some(&id)).await.body == "1"
    })
    .await;
    assert!(
        recovered,
        "the app did not recover when the store came back"
    );
    assert_eq!(send(&app, "POST", "/set/a/3", Some(&id)).await.status, 200);
    assert_eq!(send(&app, "GET", "/get/a", Some(&id)).await.body, "3");
}

#[tokio::test]
async fn options_reject_a_bad_namespace() {
    let err = shoal_kit::SessionStore::connect(
        "sqlite::memory:",
        StoreOptions::default().with_namespace("x; drop"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("`x; drop`"), "{err}");
}
