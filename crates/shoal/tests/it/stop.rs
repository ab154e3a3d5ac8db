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
    // Every grandchild is up, the SIGTERM-ignoring ones (from web and clock) included.
    shoal.wait_for_n(2, "from grandchildren ignoring SIGTERM", |l| {
        l.ends_with("| ignoring SIGTERM")
    });
    shoal.wait_for_n(3, "from sleeping grandchildren", |l| l.ends_with("| up"));
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert!(
        out.stdout.contains("sending SIGKILL to"),
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
fn killing_shoal_itself_takes_the_instances_and_their_children_down() {
    let marker = token("shoal-killed");
    let app = App::new(&format!(
        "web: FAKE ignore-term {marker}\nworker: FAKE sleep {marker} && true\nclock: sh -c 'FAKE ignore-term {marker} & wait'\n"
    ));
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1    | ignoring SIGTERM");
    shoal.wait_for("worker.1 | up");
    shoal.wait_for("clock.1  | ignoring SIGTERM");
    assert!(
        processes_with(&marker).len() >= 5,
        "3 instances, 2 of them under a shell"
    );
    shoal.signal(libc::SIGKILL);
    let out = shoal.finish();
    assert_eq!(out.status.code(), None);
    // The main processes get the kernel's parent-death signal; what they started is killed
    // by shoal's watchdog.
    assert_no_survivors(&marker);
}

#[test]
fn a_stalled_stdout_does_not_stop_shoal_from_stopping() {
    let app = App::new("web: FAKE flood 1000000\n");
    // shoal's stdout is a pipe that nobody reads: it fills, and shoal's log stalls.
    let mut command = app.command(&["start", "--timeout", "1", "-p", &free_port().to_string()]);
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    // Wait until the pipe is full: shoal's log writer then blocks. Its capacity is usually
    // 64 KiB (the kernel gives new pipes a single page once a user has many), but the kernel
    // fills it page by page and a write that does not fit the last page starts a new one, so
    // "full" is: more than half of the capacity queued, and no longer growing.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&pipe);
    // SAFETY: F_GETPIPE_SZ only reads the pipe's capacity.
    let capacity = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    let deadline = Instant::now() + crate::support::DEADLINE;
    let mut last = -1;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes an int into `queued`.
        unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        if queued >= capacity / 2 && queued == last {
            break;
        }
        last = queued;
        assert!(
            Instant::now() < deadline,
            "the pipe never filled ({queued} of {capacity} bytes)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "shoal did not stop while its stdout was stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    drop(pipe);
}

#[test]
fn a_stop_during_release_ends_the_start() {
    let app = App::new("release: FAKE graceful\nweb: FAKE sleep\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("release.1 | up");
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130), "{}", out.stdout);
    assert!(
        out.stdout.contains("release.1 | got SIGTERM"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("web.1 started"), "{}", out.stdout);
}

#[test]
fn a_stop_while_an_instance_waits_to_restart() {
    let app = App::new("web: FAKE exit 1\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("restarting web.1 in");
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
}

#[test]
fn a_second_formation_of_the_same_procfile_is_refused() {
    let app = App::new("web: FAKE sleep\n");
    let first = app.spawn(&["start", "-p", &free_port().to_string()]);
    first.wait_for("web.1  | up");
    let second = app.run(&["start", "-p", &free_port().to_string()]);
    assert_eq!(second.code(), Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!(
            "error: another shoal (pid {}) is already running this formation; stop it first",
            first.pid()
        )),
        "{}",
        second.stderr
    );
    // The first one was not disturbed.
    first.signal(libc::SIGTERM);
    assert_eq!(first.finish().code(), Some(143));
}
