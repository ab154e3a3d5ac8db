//! Startup errors: a URL the kit does not understand or a store that does not answer is a
//! clear error naming the URL, with its password masked, and it comes quickly.

use std::time::{Duration, Instant};

use shoal_kit::{ConnectError, SessionStore, StoreOptions};

async fn connect_err(url: &str) -> ConnectError {
    let options = StoreOptions::default().with_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let err = SessionStore::connect(url, options).await.expect_err(url);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{url}: took {:?}",
        start.elapsed()
    );
    err
}

#[tokio::test]
async fn invalid_urls_name_the_url_and_what_was_expected() {
    for url in ["ftp://app:hunter2@host/x", "nonsense", "memcache://"] {
        let err = connect_err(url).await;
        let msg = err.to_string();
        assert!(
            matches!(err, ConnectError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(
            msg.contains("redis://") && msg.contains("sqlite://PATH"),
            "{msg}"
        );
    }
    let msg = connect_err("ftp://app:hunter2@host/x").await.to_string();
    assert!(msg.contains("`ftp://app:****@host/x`"), "{msg}");
}

#[tokio::test]
async fn unreachable_stores_name_the_masked_url() {
    for url in [
        "redis://:hunter2@127.0.0.1:1",
        "memcache://127.0.0.1:1",
        "postgres://app:hunter2@127.0.0.1:1/app",
        "sqlite:///nonexistent-dir/sub/sessions.db",
    ] {
        let err = connect_err(url).await;
        assert!(
            matches!(err, ConnectError::Unreachable { .. }),
            "{url}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot reach the session store at `"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("****") || !url.contains("hunter2"), "{msg}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept: {err:?}"
        );
    }
}

/// Several processes starting at once on a fresh SQLite file: each of them connects (the first
/// switches the file to WAL; SQLite refuses the others' concurrent switch at once, without
/// waiting, so the kit must try again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_starting_at_once_on_a_fresh_sqlite_file_all_connect() {
    for round in 0..25 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let options = StoreOptions::default().with_timeout(Duration::from_secs(10));
                    SessionStore::connect(&url, options).await
                })
            })
            .collect();
        for start in starts {
            let result = start.await.unwrap();
            assert!(result.is_ok(), "round {round}: {:?}", result.err());
        }
    }
}
