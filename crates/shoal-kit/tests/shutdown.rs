//! `shutdown_signal()` resolves on SIGTERM and on SIGINT. Its own test binary: it signals
//! the whole test process.

use std::time::Duration;

#[tokio::test]
async fn resolves_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let waiter = tokio::spawn(shoal_kit::shutdown_signal());
        // Let the handler be installed before the signal is sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: sending a signal to our own process; the handler above is installed.
        assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resolved")
            .unwrap();
    }
}
