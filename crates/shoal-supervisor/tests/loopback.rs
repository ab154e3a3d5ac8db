//! Readiness is decided by the instance's own listener: the snapshot names the loopback address
//! where that listener serves the port, even when another process listens on the same port at
//! the other loopback address; and `ports` finds who holds a port.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_procfile::PlanOptions;
use shoal_supervisor::ports::{self, Holder};
use shoal_supervisor::{Log, Options, Outcome, State, Style, Supervisor};

mod support;

/// Not a test: the instance of the test below, started by the supervisor as this test binary
/// with this test's name. It listens on `[::1]:$PORT` only, as Node's
/// `listen(port, 'localhost')` may, and accepts connections until it is killed.
#[test]
#[ignore = "an instance for `the_snapshot_names_the_address_the_instance_serves`"]
fn instance_on_ipv6_loopback_only() {
    let Ok(port) = std::env::var("PORT") else {
        return;
    };
    let listener = TcpListener::bind(format!("[::1]:{port}")).expect("listen on [::1]");
    for stream in listener.incoming() {
        drop(stream);
    }
}

/// A port free at `127.0.0.1` and at `[::1]`, with a listener on `127.0.0.1` holding it.
fn foreign_listener() -> (u16, TcpListener) {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if TcpListener::bind(("::1", port)).is_ok() {
            return (port, listener);
        }
    }
    panic!("no port free on both loopback addresses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_names_the_address_the_instance_serves() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("not run: this machine has no IPv6 loopback ([::1])");
        return;
    }
    let (port, _foreign) = foreign_listener();
    let exe = std::env::current_exe().unwrap();
    let app = support::App::with_options(
        &format!(
            "web: exec '{}' instance_on_ipv6_loopback_only --exact --ignored --nocapture\n",
            exe.display()
        ),
        PlanOptions {
            port: Some(port),
            without_router: true,
            ..PlanOptions::default()
        },
    );
    let (log, writer) = Log::start(Box::new(io::sink()), Style { color: false }, 10);
    let options = Options {
        grace: Duration::from_secs(5),
        ..Options::default()
    };
    let (handle, task) = Supervisor::start(Arc::new(app.plan), app.runtime, log, options);
    let mut snapshots = handle.watch();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if let Some(info) = snapshot.ready("web").next() {
            break info.clone();
        }
        assert!(
            Instant::now() < deadline,
            "web.1 never got ready: {snapshot:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), snapshots.changed()).await;
    };
    assert_eq!(ready.state, State::Ready);
    assert_eq!(
        ready.addr,
        Some(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)))
    );

    handle.stop();
    assert_eq!(task.await.unwrap(), Outcome::Stopped);
    writer.finish();
}

#[test]
fn who_holds_a_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = ports::holder(port).expect("the listener is seen");
    assert_eq!(
        holder,
        Holder {
            port,
            pid: Some(std::process::id()),
            command: holder.command.clone(),
        }
    );
    assert!(
        holder.to_string().starts_with(&format!(
            "port {port} is in use by another process (pid {}, `",
            std::process::id()
        )),
        "{holder}"
    );
    // This process's group holds it; the group of pid 1 does not.
    // SAFETY: getpgrp only reads the calling process's group.
    let own_group = unsafe { libc::getpgrp() } as u32;
    let listeners = ports::listeners(port, own_group).unwrap();
    assert!(listeners.iter().all(|l| l.owned) && !listeners.is_empty());
    assert_eq!(
        ports::reach(&listeners, port),
        ports::Reach::Own(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    let theirs = ports::listeners(port, 1).unwrap();
    assert_eq!(ports::reach(&theirs, port), ports::Reach::Foreign);
    drop(listener);
    assert_eq!(ports::holder(port), None);
}
