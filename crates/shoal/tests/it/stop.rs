//! Stopping: SIGTERM to every process group, the grace period, SIGKILL, and no orphans.

use std::time::{Duration, Instant};

use crate::support::{App, assert_no_survivors, free_port, processes_with, token};

#[test]
fn sigint_stops_instances_gracefully_with_code_130() {
    let app = App::new("web: FAKE graceful 200\nworker: FAKE graceful\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1    | up");
    shoal.wait_for("worker.1 | up");
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130), "{}", out.stdout);
    for expected in [
        "received SIGINT; stopping the formation",
        "web.1    | got SIGTERM",
        "web.1    | bye",
        "worker.1 | got SIGTERM",
        "web.1 exited with code 0",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("SIGKILL to"), "{}", out.stdout);
}

#[test]
fn sigterm_exits_143_and_sighup_129() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let app = App::new("web: FAKE sleep\n");
        let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
        shoal.wait_for("web.1  | up");
        shoal.signal(signal);
        let out = shoal.finish();
        assert_eq!(out.code(), Some(code), "{}", out.stdout);
        assert!(
            out.stdout.contains("web.1 was killed by SIGTERM"),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn instances_that_ignore_sigterm_are_killed_after_the_timeout() {
    let marker = token("ignore");
    let app = App::new(&format!(
        "web: FAKE ignore-term {marker}\nworker: FAKE graceful\n"
    ));
    let shoal = app.spawn(&["start", "--timeout", "1", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1    | ignoring SIGTERM");
    shoal.wait_for("worker.1 | up");
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("sending SIGKILL to web.1 (still running after 1 s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("web.1 was killed by SIGKILL"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("worker.1 exited with code 0"),
        "{}",
        out.stdout
    );
    assert_no_survivors(&marker);
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let marker = token("second");
    let app = App::new(&format!("web: FAKE ignore-term {marker}\n"));
    let shoal = app.spawn(&["start", "--timeout", "600", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1  | ignoring SIGTERM");
    shoal.signal(libc::SIGINT);
    shoal.wait_for("sending SIGTERM to 1 instance");
    let asked = Instant::now();
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("received SIGINT again; killing the formation now"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("web.1 was killed by SIGKILL"),
        "{}",
        out.stdout
    );
    // Far less than the 600 s grace period: the escalation did not wait for it.
    assert!(asked.elapsed() < Duration::from_secs(300));
    assert_no_survivors(&marker);
}

#[test]
fn grandchildren_die_with_the_formation() {
    let marker = token("grandchildren");
    let app = App::new(&format!(
        "web: FAKE spawn {marker}\nworker: sh -c 'FAKE sleep {marker} & wait'\nclock: FAKE sleep {marker} & FAKE ignore-term {marker} & wait\n"
    ));
    let shoal = app.spawn(&["start", "--timeout", "1", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1    | spawned");
    // Every grandchild is up: two from web, one from worker, two from clock.
    let deadline = Instant::now() + crate::support::DEADLINE;
    while processes_with(&marker).len() < 5 {
        assert!(
            Instant::now() < deadline,
            "grandchildren did not start: {}",
            shoal.stdout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert!(
        out.stdout.contains("SIGKILL"),
        "the SIGTERM-ignoring grandchildren needed SIGKILL:\n{}",
        out.stdout
    );
    assert_no_survivors(&marker);
}

#[test]
fn leftovers_of_a_crashed_instance_are_killed_before_it_restarts() {
    let marker = token("leftover");
    let app = App::new(&format!("web: FAKE sleep {marker} & sleep 0.2; exit 1\n"));
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for_n(2, "announcing a restart", |l| {
        l.contains("restarting web.1")
    });
    // Each run left a background process behind when its shell exited; at most the current
    // run's one may be alive.
    let deadline = Instant::now() + crate::support::DEADLINE;
    loop {
        let alive = processes_with(&marker).len();
        if alive <= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{alive} leftovers survive");
        std::thread::sleep(Duration::from_millis(20));
    }
    shoal.signal(libc::SIGTERM);
    shoal.finish();
    assert_no_survivors(&marker);
}

#[test]
fn killing_shoal_itself_takes_the_instances_down() {
    let marker = token("pdeathsig");
    let app = App::new(&format!("web: FAKE ignore-term {marker}\n"));
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1  | ignoring SIGTERM");
    assert_eq!(processes_with(&marker).len(), 1);
    shoal.signal(libc::SIGKILL);
    let out = shoal.finish();
    assert_eq!(out.status.code(), None);
    assert_no_survivors(&marker);
}
