//! [`shutdown_signal`]: the future a server awaits to begin a graceful shutdown.

/// Resolves when the process receives SIGTERM (what shoal, Kubernetes and systemd send) or
/// SIGINT (Ctrl-C). Give the drain a deadline: after the grace period the process is killed.
///
/// # Panics
/// When the signal handlers cannot be installed (outside a Tokio runtime).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
