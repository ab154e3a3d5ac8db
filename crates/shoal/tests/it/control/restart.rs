//! `shoal restart` keeps every instance's name and port, never fails for the count it keeps,
//! says what happened when a replacement fails, and changes refuse with a reason while the
//! formation stops.

use crate::support::{App, free_port};

/// `shoal ps --json`, sorted by name: (name, port, state, pid).
fn ps(app: &App) -> Vec<(String, u16, String, u64)> {
    let out = app.run(&["ps", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let instances: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut rows: Vec<_> = instances
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["port"].as_u64().unwrap() as u16,
                i["state"].as_str().unwrap().to_owned(),
                i["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_rolling_restart_keeps_names_and_ports() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-m", "web=3", "-p", &port.to_string()]);
    shoal.wait_ready(3);
    let before = ps(&app);

    let out = app.run(&["restart", "web"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "restarted web.1, web.2, web.3 (web.4 stood in meanwhile)"
    );
    let after = ps(&app);
    let expected: Vec<(String, u16, String)> = (1..=3u16)
        .map(|n| (format!("web.{n}"), port + 99 + n, "ready".to_owned()))
        .collect();
    let seen: Vec<(String, u16, String)> = after
        .iter()
        .map(|(name, port, state, _)| (name.clone(), *port, state.clone()))
        .collect();
    assert_eq!(seen, expected, "{}", shoal.stdout());
    for ((name, _, _, old), (_, _, _, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{name} was not restarted");
    }
    // The stand-in served beside them and is gone.
    shoal.wait_for("web.4 is ready on port");
    shoal.wait_for("web.4 was killed by SIGTERM");
}

#[test]
fn a_restart_at_the_most_instances_a_type_can_have_succeeds() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-m", "web=100", "-p", &port.to_string()]);
    shoal.wait_ready(100);
    let out = app.run(&["restart", "web.1"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    // No room for a stand-in: the 99 others carry the traffic meanwhile.
    assert_eq!(out.stdout.trim(), "restarted web.1");
    let after = ps(&app);
    assert_eq!(after.len(), 100);
    assert_eq!(
        (after[0].0.as_str(), after[0].1, after[0].2.as_str()),
        ("web.1", port + 100, "ready")
    );
}

/// A Procfile whose `web` runs `broken` instead of serving once the file `broken` exists.
fn breakable(broken: &str) -> App {
    App::new(&format!(
        "web: if test -e broken; then exec FAKE {broken}; else exec FAKE serve; fi\n"
    ))
}

#[test]
fn a_replacement_that_exits_is_given_up_and_said_so() {
    let app = breakable("exit 1");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready on port");
    app.write("broken", "");

    let out = app.run(&["restart", "web"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "web.2 exited with code 1 before it was ready; web.1 keeps running as before"
        ),
        "{}",
        out.stderr
    );
    shoal.wait_for(
        "web.2 exited with code 1 before it was ready; not restarting it: another instance serves in its place",
    );
    assert!(
        !shoal.stdout().contains("restarting web.2"),
        "{}",
        shoal.stdout()
    );
    let after = ps(&app);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (after[0].0.as_str(), after[0].2.as_str()),
        ("web.1", "ready")
    );
}

#[test]
fn a_replacement_killed_at_its_boot_timeout_is_said_to_be() {
    let app = breakable("sleep");
    let shoal = app.spawn(&[
        "start",
        "--boot-timeout",
        "1",
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for("web.1 is ready on port");
    app.write("broken", "");

    let out = app.run(&["restart", "web.1"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "web.2 was not ready within 1 s (`--boot-timeout`), so it was killed; web.1 keeps running as before"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("exited before"), "{}", out.stderr);
    shoal.wait_for(
        "web.2 was not ready within 1 s (`--boot-timeout`), so it was killed; not restarting it",
    );
    assert!(
        !shoal.stdout().contains("restarting web.2"),
        "{}",
        shoal.stdout()
    );
    assert_eq!(ps(&app).len(), 1);
}

#[test]
fn changes_while_the_formation_stops_fail_with_the_reason() {
    let app = App::new("web: FAKE serve\nstubborn: FAKE ignore-term\n");
    let shoal = app.spawn(&["start", "--timeout", "30", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready on port");
    shoal.wait_for("stubborn.1 | ignoring SIGTERM");

    let out = app.run(&["stop"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "stopping the formation");
    // stubborn.1 ignores SIGTERM: the formation stays stopping for up to 30 s.
    for args in [
        &["restart"][..],
        &["restart", "web"],
        &["stop", "stubborn"],
        &["stop", "stubborn.1"],
        &["scale", "web=2"],
    ] {
        let out = app.run(args);
        assert_eq!(
            out.code(),
            Some(1),
            "{args:?}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains("the formation is stopping"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    let out = app.run(&["stop"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "the formation is already stopping");
    // A second signal kills what is left.
    shoal.signal(libc::SIGTERM);
    shoal.wait_for("received SIGTERM; stopping the formation");
    shoal.signal(libc::SIGTERM);
    assert_eq!(shoal.finish().code(), Some(143));
}

#[test]
fn nothing_to_act_on_is_said_without_empty_names() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let shoal = app.spawn(&["start", "-m", "worker=0", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 is ready on port");
    let out = app.run(&["stop", "worker"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "nothing to stop: `worker` has no running instances"
    );
    let out = app.run(&["restart", "worker"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "nothing to restart: `worker` has no running instances"
    );

    let out = app.run(&["stop", "web"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "stopping web.1");
    shoal.wait_for("web.1 was killed by SIGTERM");
    let out = app.run(&["restart"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "nothing to restart: the formation has no running instances"
    );
}
