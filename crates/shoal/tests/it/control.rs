//! `shoal ps`, `scale`, `restart` and `stop` against a running formation, over its control
//! socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{App, DEADLINE, free_port, http};

mod restart;

/// The formation's control socket, from `shoal check --json`'s runtime directory.
fn socket_of(app: &App) -> std::path::PathBuf {
    let out = app.run(&["check", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    std::path::PathBuf::from(json["runtime_dir"].as_str().unwrap()).join("control.sock")
}

fn ps_json(app: &App) -> Vec<serde_json::Value> {
    let out = app.run(&["ps", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn names_in(instances: &[serde_json::Value], state: &str) -> Vec<String> {
    let mut names: Vec<String> = instances
        .iter()
        .filter(|i| i["state"] == state)
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// One request through the router on a new connection; whether it got a 200.
fn request_ok(port: u16, method: &str) -> Result<(), String> {
    let answer = http(port, method);
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(answer)
    }
}

#[test]
fn ps_shows_every_instance() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-m", "web=2", "-p", &port.to_string()]);
    shoal.wait_ready(2);
    shoal.wait_for("worker.1 | up");
    request_ok(port, "GET").unwrap();

    let out = app.run(&["ps"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME      PID"), "{}", out.stdout);
    assert_eq!(lines.len(), 4, "{}", out.stdout);

    let instances = ps_json(&app);
    assert_eq!(names_in(&instances, "ready"), ["web.1", "web.2"]);
    assert_eq!(names_in(&instances, "running"), ["worker.1"]);
    let served: u64 = instances
        .iter()
        .map(|i| i["served"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 1);
    for instance in &instances {
        assert!(instance["pid"].as_u64().is_some());
        assert_eq!(instance["restarts"], 0);
        assert_eq!(instance["in_flight"], 0);
    }
}

#[test]
fn scale_adds_ready_instances_and_drains_removed_ones() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for("web.1 is ready");
    let out = app.run(&["scale", "web=3", "worker=0"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "scaled to web=3,worker=0");
    shoal.wait_for("web.2 is ready on port");
    shoal.wait_for("web.3 is ready on port");
    shoal.wait_for("worker.1 was killed by SIGTERM");
    let instances = ps_json(&app);
    assert_eq!(names_in(&instances, "ready"), ["web.1", "web.2", "web.3"]);

    assert_eq!(app.run(&["scale", "web=1"]).code(), Some(0));
    shoal.wait_for("web.3 is draining");
    shoal.wait_for("web.3 was killed by SIGTERM");
    shoal.wait_for("web.2 was killed by SIGTERM");
    for _ in 0..5 {
        request_ok(port, "GET").unwrap();
    }
}

#[test]
fn rolling_restart_under_load_fails_no_request_posts_included() {
    rolling_restart_under_load(&[], 1);
}

/// With one request per instance at a time, four clients at once keep requests waiting in the
/// router's queue while instances are drained and replaced.
#[test]
fn rolling_restart_under_load_with_a_concurrency_limit_fails_no_request() {
    rolling_restart_under_load(&["--max-in-flight", "1"], 4);
}

/// Restarts every `web` instance while `clients` threads send GETs and POSTs in a loop;
/// asserts that none failed and every instance was replaced.
fn rolling_restart_under_load(flags: &[&str], clients: usize) {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let port_text = port.to_string();
    let mut args = vec!["start", "-m", "web=3", "-p", &port_text];
    args.extend_from_slice(flags);
    let shoal = app.spawn(&args);
    shoal.wait_ready(3);

    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loads: Vec<_> = (0..clients)
        .map(|_| {
            let (done, failures, sent) = (done.clone(), failures.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                // Bounded: stops when told, or after twice the test deadline (the main thread
                // fails the test if the load ends before the restart has been seen through).
                let stop_at = std::time::Instant::now() + 2 * DEADLINE;
                while !done.load(Ordering::SeqCst) && std::time::Instant::now() < stop_at {
                    let method = if i.is_multiple_of(2) { "POST" } else { "GET" };
                    if let Err(answer) = request_ok(port, method) {
                        failures.lock().unwrap().push(format!("{method}: {answer}"));
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    let ended = |loads: &[std::thread::JoinHandle<()>]| loads.iter().any(|l| l.is_finished());
    // The load is flowing before the restart begins.
    while sent.load(Ordering::SeqCst) < 20 {
        assert!(!ended(&loads), "the load ended before it began");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before: Vec<String> = names_in(&ps_json(&app), "ready");
    let pids_before: Vec<u64> = ps_json(&app)
        .iter()
        .map(|i| i["pid"].as_u64().unwrap())
        .collect();
    let out = app.run(&["restart", "web"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("restarted "), "{}", out.stdout);
    // A little more traffic after the last switch, then stop the load.
    let after_restart = sent.load(Ordering::SeqCst);
    while sent.load(Ordering::SeqCst) < after_restart + 50 {
        assert!(!ended(&loads), "the load ended before the restart was over");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    done.store(true, Ordering::SeqCst);
    for load in loads {
        load.join().unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests of {}, e.g. {:?}",
        failures.len(),
        sent.load(Ordering::SeqCst),
        failures.first()
    );
    let instances = ps_json(&app);
    assert_eq!(names_in(&instances, "ready").len(), before.len());
    for instance in &instances {
        let pid = instance["pid"].as_u64().unwrap();
        assert!(
            !pids_before.contains(&pid),
            "web instance {pid} was not replaced"
        );
    }
    assert!(shoal.stdout().matches("is draining").count() >= 3);
}

#[test]
fn stop_a_type_an_instance_or_everything() {
    let app = App::new("web: FAKE serve\nworker: FAKE graceful\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-m", "web=2,worker=2", "-p", &port.to_string()]);
    shoal.wait_for_n(2, "from workers", |l| l.ends_with("| up"));
    shoal.wait_ready(2);

    assert_eq!(app.run(&["stop", "web.2"]).code(), Some(0));
    shoal.wait_for("web.2 was killed by SIGTERM");
    assert_eq!(app.run(&["stop", "worker"]).code(), Some(0));
    shoal.wait_for_n(2, "from stopping workers", |l| l.ends_with("| got SIGTERM"));
    // A worker says `got SIGTERM` before it exits; it leaves the formation once it has.
    let deadline = std::time::Instant::now() + DEADLINE;
    let instances = loop {
        let instances = ps_json(&app);
        if instances.len() == 1 || std::time::Instant::now() > deadline {
            break instances;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(names_in(&instances, "ready"), ["web.1"]);
    assert_eq!(instances.len(), 1, "{instances:?}");
    request_ok(port, "GET").unwrap();

    let out = app.run(&["stop"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    // Stopped on request, not by a signal: exit code 0.
    assert_eq!(shoal.finish().code(), Some(0));
}

#[test]
fn an_instance_stopped_while_it_waits_to_restart_stays_stopped() {
    let app = App::new("web: FAKE exit 1\nworker: FAKE exit 1\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    // The fourth crash waits 800 ms: the stop arrives while web.1 waits to restart.
    shoal.wait_for("restarting web.1 in 800 ms");
    assert_eq!(app.run(&["stop", "web.1"]).code(), Some(0));
    let starts = |name: &str| {
        shoal
            .stdout()
            .matches(&format!("{name} started (pid"))
            .count()
    };
    let (web, worker) = (starts("web.1"), starts("worker.1"));
    // worker.1 crash-loops on the same schedule: by its second start after the stop,
    // web.1's restart would have been long due.
    shoal.wait_for_n(worker + 2, "more starts of worker.1", |l| {
        l.contains("worker.1 started (pid")
    });
    assert_eq!(starts("web.1"), web, "{}", shoal.stdout());
    assert!(
        ps_json(&app)
            .iter()
            .all(|i| i["name"].as_str() != Some("web.1")),
        "{}",
        shoal.stdout()
    );
    assert_eq!(app.run(&["stop"]).code(), Some(0));
}

#[test]
fn errors_are_clear_with_their_exit_codes() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let out = app.run(&["ps"]);
    assert_eq!(out.code(), Some(3));
    assert!(
        out.stderr
            .contains("error: no formation is running for this Procfile (no control socket at"),
        "{}",
        out.stderr
    );

    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready");
    let out = app.run(&["scale", "wrker=2"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("unknown process type `wrker`; the Procfile defines `web`, `worker`"),
        "{}",
        out.stderr
    );
    let out = app.run(&["restart", "clock.7"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`clock.7` is neither a process type nor a running instance"),
        "{}",
        out.stderr
    );
    let out = app.run(&["scale", "web"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);

    // A socket file left by a shoal that was killed.
    shoal.signal(libc::SIGKILL);
    shoal.finish();
    let socket = socket_of(&app);
    assert!(socket.exists(), "a killed shoal leaves its socket behind");
    let out = app.run(&["ps"]);
    assert_eq!(out.code(), Some(3));
    assert!(
        out.stderr.contains("was left by a shoal that was killed"),
        "{}",
        out.stderr
    );
    // The next start replaces it.
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready");
    assert_eq!(app.run(&["ps"]).code(), Some(0));
}

#[test]
fn the_socket_is_private_and_serves_two_clients_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("web: FAKE serve\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready");
    let socket = socket_of(&app);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Two clients connected at once, asking in turn on each connection.
    let mut first = UnixStream::connect(&socket).unwrap();
    let mut second = UnixStream::connect(&socket).unwrap();
    let mut first_reader = BufReader::new(first.try_clone().unwrap());
    let mut second_reader = BufReader::new(second.try_clone().unwrap());
    for _ in 0..3 {
        first.write_all(b"{\"command\":\"ps\"}\n").unwrap();
        second.write_all(b"{\"command\":\"ps\"}\n").unwrap();
        for reader in [&mut first_reader, &mut second_reader] {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let response: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(response["ok"], true, "{line}");
            assert_eq!(response["instances"][0]["name"], "web.1");
        }
    }
    // From anywhere, with the socket named explicitly.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::shoal_bin())
        .args(["ps", "--json"])
        .current_dir(elsewhere.path())
        .env("SHOAL_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"web.1\""));

    first.write_all(b"not json\n").unwrap();
    let mut line = String::new();
    first_reader.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"ok\":false") && line.contains("cannot read the request"),
        "{line}"
    );
}

#[test]
fn a_request_during_shutdown_gets_an_answer_or_a_clear_error() {
    let app = App::new("web: FAKE ignore-term\n");
    let shoal = app.spawn(&["start", "--timeout", "30", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1  | ignoring SIGTERM");
    shoal.signal(libc::SIGTERM);
    shoal.wait_for("sending SIGTERM to 1 instance");
    // The formation is stopping (web.1 ignores SIGTERM for up to 30 s).
    let out = app.run(&["ps", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"stopping\""), "{}", out.stdout);
    let out = app.run(&["scale", "web=2"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("the formation is stopping"),
        "{}",
        out.stderr
    );
    shoal.signal(libc::SIGTERM);
    assert_eq!(shoal.finish().code(), Some(143));
}

#[test]
fn chaos_mode_kills_instances_and_a_stateless_app_fails_no_idempotent_request() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let shoal = app.spawn(&[
        "start",
        "-m",
        "web=3",
        "--chaos=kill=200ms,wipe",
        "-p",
        &port.to_string(),
    ]);
    shoal.wait_ready(3);
    let mut failures = Vec::new();
    let mut requests = 0;
    // Bounded: until chaos has killed 5 instances, or 20 000 requests.
    while requests < 20_000 && shoal.stdout().matches("chaos  | killed").count() < 5 {
        if let Err(answer) = request_ok(port, "GET") {
            failures.push(answer);
        }
        requests += 1;
    }
    shoal.wait_for_n(5, "from chaos mode", |l| l.contains("chaos  | killed web."));
    assert!(
        failures.is_empty(),
        "{} of {requests} GETs failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(shoal.stdout().contains("was killed by SIGKILL"));
}
