//! The router in front of real `web` instances run by `shoal start`.

use crate::support::{App, Running, free_port, http};

/// One `GET /` through the router on a new connection; the whole answer.
fn get(port: u16) -> String {
    http(port, "GET")
}

#[test]
fn kill_9_of_an_instance_under_steady_traffic_fails_no_request() {
    kill_9_under_steady_traffic(None);
}

/// The same on a current-thread runtime, which shoal uses when it may run on one CPU only.
#[test]
fn kill_9_of_an_instance_under_steady_traffic_fails_no_request_on_one_thread() {
    kill_9_under_steady_traffic(Some(1));
}

fn kill_9_under_steady_traffic(threads: Option<usize>) {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let mut command = app.command(&[
        "start",
        "-m",
        "web=3",
        "--balance",
        "round-robin",
        "-p",
        &port.to_string(),
    ]);
    if let Some(threads) = threads {
        command.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    let shoal = Running::spawn(command);
    shoal.wait_ready(3);
    let started = shoal.wait_for("web.2 started (pid ");
    let pid: i32 = started
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap();

    let mut failures = Vec::new();
    let mut served_by = std::collections::BTreeSet::new();
    for i in 0..300 {
        if i == 60 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let answer = get(port);
        if answer.starts_with("HTTP/1.1 200") {
            served_by.insert(answer.lines().last().unwrap_or("").to_owned());
        } else {
            failures.push(answer);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(served_by.len(), 3, "{served_by:?}");
    shoal.wait_for("web.2 was killed by SIGKILL");
    let router_lines = shoal.wait_for_n(300, "from the router's access log", |l| {
        l.contains("router | method=GET")
    });
    assert!(router_lines.iter().all(|l| l.contains(" status=200 ")));
}

#[test]
fn the_public_port_in_use_is_a_clear_error() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = app.run(&["start", "-p", &port.to_string()]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("error: cannot listen on `127.0.0.1:{port}`")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("caused by: Address already in use"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("web.1 started"),
        "nothing starts: {}",
        out.stdout
    );
}

#[test]
fn a_health_path_gates_readiness_and_a_boot_timeout_restarts() {
    let app = App::new("web: FAKE serve 200\nbad: FAKE serve 503\n");
    let port = free_port();
    // `bad` is not a web type, so it is not probed; run it as web in a second formation below.
    let shoal = app.spawn(&[
        "start",
        "--health-path",
        "/health",
        "-m",
        "bad=0",
        "-p",
        &port.to_string(),
    ]);
    shoal.wait_for("web.1 is ready on port");
    assert!(get(port).starts_with("HTTP/1.1 200"));
    drop(shoal);

    let unhealthy = App::new("web: FAKE serve 503\n");
    let shoal = unhealthy.spawn(&[
        "start",
        "--health-path",
        "/health",
        "--boot-timeout",
        "1",
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for("web.1 is not ready after 1 s (`--boot-timeout`); killing it");
    shoal.wait_for("restarting web.1 in");
    assert!(
        !shoal.stdout().contains("is ready on port"),
        "{}",
        shoal.stdout()
    );
}
