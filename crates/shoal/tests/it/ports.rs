//! The instance ports: traffic goes only to the loopback address where the instance's own
//! listener was verified (never to another process listening on the same port at the other
//! address), ports in the kernel's ephemeral range are warned about, and an instance whose port
//! another process held before it started is reported as such.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{App, free_port, http};

/// Another process's server on `127.0.0.1:port` (here: the test's), which answers `foreign`
/// and counts the connections it gets; stops when dropped.
struct Foreign {
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Foreign {
    fn listen(port: u16) -> Foreign {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("listen on 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        // Polled so that dropping the server can end the thread.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nforeign\n",
                    );
                }
            })
        };
        Foreign {
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn has_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn traffic_goes_to_the_instance_not_to_another_listener_on_the_other_loopback_address() {
    if !has_ipv6_loopback() {
        eprintln!("not run: this machine has no IPv6 loopback ([::1])");
        return;
    }
    // The app listens on [::1] only; another user listens on 127.0.0.1 at the same port.
    let app = App::new("web: FAKE serve6\n");
    let port = free_port();
    let foreign = Foreign::listen(port + 100);
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_ready(1);
    for _ in 0..5 {
        let answer = http(port, "GET");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("web.1\n"),
            "the request went elsewhere: {answer:?}\n{}",
            shoal.stdout()
        );
    }
    assert_eq!(
        foreign.connections.load(Ordering::SeqCst),
        0,
        "neither the probe nor the router may connect to the other listener"
    );
    let ready = format!(
        "web.1 is ready on port {} at [::1]:{}",
        port + 100,
        port + 100
    );
    assert!(shoal.stdout().contains(&ready), "{}", shoal.stdout());
}

/// The kernel's ephemeral port range, as the test reads it.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("the ephemeral port range is readable");
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().unwrap());
    (bounds.next().unwrap(), bounds.next().unwrap())
}

#[test]
fn check_warns_about_instance_ports_in_the_ephemeral_range() {
    let (low, high) = ephemeral_range();
    let app = App::new("web: FAKE serve\n");
    let inside = app.run(&["check", "-p", &low.to_string()]);
    assert_eq!(inside.code(), Some(0), "{}", inside.stderr);
    assert!(
        inside.stderr.contains(&format!(
            "warning: instance port {} (web.1) lies in the kernel's ephemeral port range {low}-{high}",
            low + 100
        )) && inside.stderr.contains("choose a port below the range"),
        "{}",
        inside.stderr
    );
    let below = app.run(&["check", "-p", &(low - 1000).to_string()]);
    assert_eq!(below.code(), Some(0), "{}", below.stderr);
    assert!(!below.stderr.contains("ephemeral"), "{}", below.stderr);
}

#[test]
fn start_warns_about_instance_ports_in_the_ephemeral_range() {
    let (low, high) = ephemeral_range();
    // A port in the range that is free for the router and the instance now.
    let free = |port: u16| TcpListener::bind(("0.0.0.0", port)).is_ok();
    let port = (low..high.saturating_sub(100))
        .step_by(7)
        .find(|&p| free(p) && free(p + 100))
        .expect("a free port in the ephemeral range");
    let app = App::new("web: exit 0\n");
    let out = app
        .spawn(&["start", "--no-restart", "-p", &port.to_string()])
        .finish();
    assert!(
        out.stderr.contains(&format!(
            "warning: instance port {} (web.1) lies in the kernel's ephemeral port range {low}-{high}",
            port + 100
        )),
        "{}",
        out.stderr
    );
    let below = app
        .spawn(&["start", "--no-restart", "-p", &free_port().to_string()])
        .finish();
    assert!(!below.stderr.contains("ephemeral"), "{}", below.stderr);
}

#[test]
fn an_instance_whose_port_another_process_held_is_reported_as_such() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let _held = TcpListener::bind(("127.0.0.1", port + 100)).unwrap();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for(&format!(
        "web.1 exited with code 1: port {} is in use by another process (pid {},",
        port + 100,
        std::process::id()
    ));
    shoal.wait_for(&format!("(backing off while port {} is taken)", port + 100));
    assert!(!shoal.stdout().contains("is ready"), "{}", shoal.stdout());
}
