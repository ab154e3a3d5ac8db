//! `shoal start`: the formation, each instance's environment, output, and restarts.

use crate::support::{App, body, free_port, text};

#[test]
fn runs_one_instance_of_each_type_with_its_environment() {
    let app = App::new("web: FAKE env PORT PS DYNO SHOAL_INSTANCE\nworker: FAKE env PORT PS\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for("web.1    | SHOAL_INSTANCE=web.1");
    shoal.wait_for("worker.1 | PS=worker.1");
    let out = shoal.stdout();
    assert!(
        out.contains(&format!("web.1    | PORT={}", port + 100)),
        "{out}"
    );
    assert!(out.contains("web.1    | PS=web.1"), "{out}");
    assert!(out.contains("web.1    | DYNO=web.1"), "{out}");
    assert!(
        out.contains(&format!("worker.1 | PORT={}", port + 200)),
        "{out}"
    );
    assert!(
        !out.contains("web.2"),
        "one instance per type by default:\n{out}"
    );
}

#[test]
fn formation_spec_sets_counts_and_ports() {
    let app = App::new("web: FAKE env PORT\nworker: FAKE env PORT\nclock: FAKE env PORT\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string(), "-m", "all=2,worker=0"]);
    let lines = shoal.wait_for_n(4, "with a PORT", |l| text(l).starts_with("PORT="));
    let mut got: Vec<String> = lines.iter().map(|l| body(l).to_owned()).collect();
    got.sort();
    let expected = [
        format!("clock.1 | PORT={}", port + 300),
        format!("clock.2 | PORT={}", port + 301),
        format!("web.1   | PORT={}", port + 100),
        format!("web.2   | PORT={}", port + 101),
    ];
    assert_eq!(got, expected);
    assert!(!shoal.stdout().contains("worker."), "worker=0 runs nothing");
}

#[test]
fn each_instance_has_its_own_process_group() {
    let app = App::new("web: FAKE ids\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    let line = shoal.wait_for("pid=");
    let field = |name: &str| -> u32 {
        text(&line)
            .split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    // A simple command is exec'd by sh, so the command itself is the group leader and a
    // direct child of shoal.
    assert_eq!(field("pid="), field("pgid="));
    assert_eq!(field("ppid="), shoal.pid());
    // SAFETY: getpgid only reads.
    let shoal_group = unsafe { libc::getpgid(shoal.pid() as i32) } as u32;
    assert_ne!(field("pgid="), shoal_group);
}

#[test]
fn commands_run_through_the_shell_in_the_app_directory() {
    let app = App::new("web: echo \"port is $PORT\" && cd . && pwd && FAKE sleep\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for(&format!("web.1  | port is {}", port + 100));
    let dir = app.path().canonicalize().unwrap();
    shoal.wait_for(&format!("| {}", dir.display()));
}

#[test]
fn directory_flag_sets_the_working_directory() {
    let app = App::new("web: pwd; FAKE sleep\n");
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().canonicalize().unwrap();
    let procfile = app.path().join("Procfile");
    let shoal = app.spawn(&[
        "start",
        "-f",
        procfile.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for(&format!("web.1  | {}", dir.display()));
}

#[test]
fn dotenv_overrides_the_shell_and_shoal_overrides_dotenv() {
    let app = App::new("web: FAKE env FROM_SHELL BOTH QUOTED PS PORT\n");
    app.write(
        ".env",
        "BOTH=from-dotenv\nQUOTED=\"two\\nlines $NOT_EXPANDED\"\nPS=not-this\nPORT=7000\n",
    );
    let mut command = app.command(&["start"]);
    command.env("FROM_SHELL", "shell").env("BOTH", "from-shell");
    let shoal = crate::support::Running::spawn(command);
    shoal.wait_for("web.1  | PORT=");
    let out = shoal.stdout();
    assert!(out.contains("web.1  | FROM_SHELL=shell"), "{out}");
    assert!(out.contains("web.1  | BOTH=from-dotenv"), "{out}");
    assert!(out.contains("web.1  | QUOTED=two"), "{out}");
    assert!(out.contains("web.1  | lines $NOT_EXPANDED"), "{out}");
    assert!(out.contains("web.1  | PS=web.1"), "{out}");
    // PORT in .env is the formation's port: the router's; web.1 gets the next block.
    assert!(out.contains("web.1  | PORT=7100"), "{out}");
}

#[test]
fn output_is_prefixed_aligned_and_flushed() {
    // web ends the formation, so it waits until longername has printed its line.
    let app = App::new(
        "web: until [ -e printed ]; do sleep 0.01; done; FAKE partial\nlongername: printf 'bad \\377\\376 bytes\\n'; touch printed; exec FAKE sleep\n",
    );
    let shoal = app.spawn(&["start", "--no-restart", "-p", &free_port().to_string()]);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(3), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let line = lines
        .iter()
        .find(|l| l.contains("no newline at the end"))
        .expect("the partial last line is flushed");
    assert_eq!(body(line), "web.1        | no newline at the end");
    let time = &line[..8];
    assert!(
        time.len() == 8 && time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':',
        "{line}"
    );
    assert!(
        out.stdout
            .contains("longername.1 | bad \u{fffd}\u{fffd} bytes"),
        "invalid UTF-8 is shown lossily:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("system       | web.1 started (pid "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("system       | web.1 exited with code 3"),
        "{}",
        out.stdout
    );
}

#[test]
fn many_chatty_instances_lose_no_line() {
    const LINES: usize = 20_000;
    let app = App::new(&format!("chatty: FAKE flood {LINES} $PS\n"));
    let shoal = app.spawn(&["start", "-m", "chatty=4", "-p", &free_port().to_string()]);
    let lines = shoal.wait_for_n(4 * LINES, "from the chatty instances", |l| {
        body(l).starts_with("chatty.")
    });
    for line in &lines {
        // Every line arrives whole and under its own instance's name.
        let (name, text) = body(line).split_once(" | ").unwrap();
        assert!(text.starts_with(name.trim_end()), "{line}");
        assert!(text.ends_with("look like a log line"), "{line}");
    }
    for n in 1..=4 {
        let last = format!("chatty.{n} {LINES} of {LINES} ");
        assert!(
            lines.iter().any(|l| text(l).starts_with(&last)),
            "missing {last}"
        );
    }
}

#[test]
fn crashed_instances_restart_with_growing_backoff() {
    let app = App::new("web: FAKE exit 1\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    let restarts = shoal.wait_for_n(4, "announcing a restart", |l| {
        body(l).contains("restarting web.1 in")
    });
    let delays: Vec<&str> = restarts
        .iter()
        .map(|l| body(l).split(" in ").nth(1).unwrap())
        .collect();
    assert_eq!(
        delays,
        [
            "100 ms (cause: code 1)",
            "200 ms (cause: code 1)",
            "400 ms (cause: code 1)",
            "800 ms (cause: code 1)"
        ]
    );
    assert!(shoal.stdout().matches("web.1  | exiting with 1").count() >= 4);
}

#[test]
fn scratch_is_private_and_emptied_between_runs() {
    let app = App::new("web: FAKE scratch 1\nworker: FAKE env SHOAL_SCRATCH TMPDIR\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    let seen = shoal.wait_for_n(3, "listing the scratch directory", |l| {
        text(l).starts_with("scratch had:")
    });
    for line in &seen {
        assert_eq!(
            text(line),
            "scratch had: (empty)",
            "a restart starts with empty scratch"
        );
    }
    assert!(shoal.stdout().contains("web.1    | wrote a file"));
    let scratch = text(&shoal.wait_for("worker.1 | SHOAL_SCRATCH="))
        .trim_start_matches("SHOAL_SCRATCH=")
        .to_owned();
    let tmpdir = shoal.wait_for("worker.1 | TMPDIR=");
    assert_eq!(text(&tmpdir), format!("TMPDIR={scratch}"));
    assert!(scratch.ends_with("/scratch/worker.1"), "{scratch}");
    let meta = std::fs::metadata(&scratch).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );

    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143));
    assert!(
        !std::path::Path::new(&scratch).exists(),
        "scratch is removed when the formation stops"
    );
}

#[test]
fn no_restart_stops_everything_with_the_exit_code() {
    // The worker exits once web is up and handles SIGTERM, so that web's graceful stop shows.
    let app = App::new(
        "web: FAKE graceful 0 web-is-up\nworker: until [ -e web-is-up ]; do sleep 0.01; done; FAKE exit 7\n",
    );
    let shoal = app.spawn(&["start", "--no-restart", "-p", &free_port().to_string()]);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(7), "{}", out.stdout);
    assert!(
        out.stdout.contains("web.1    | got SIGTERM"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("restarting"), "{}", out.stdout);
}

#[test]
fn release_runs_once_before_the_formation() {
    let app = App::new("release: echo migrating\nweb: FAKE sleep\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("web.1 started");
    let out = shoal.stdout();
    let release = out
        .find("release.1 | migrating")
        .expect("release output shown");
    let web = out.find("web.1 started").unwrap();
    assert!(release < web, "release runs first:\n{out}");
    assert!(out.contains("release.1 exited with code 0"));
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130));
    assert_eq!(out.stdout.matches("release.1 | migrating").count(), 1);
}

/// The router listens on the formation's port while `release` runs: `release.1` gets a port of
/// its own, the block after the last type's (README, Ports).
#[test]
fn release_gets_a_port_that_the_router_does_not_hold() {
    let app = App::new("release: echo release PORT=$PORT\nweb: FAKE sleep\nworker: FAKE sleep\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for("web.1 started");
    let out = shoal.stdout();
    assert!(
        out.contains(&format!("release.1 | release PORT={}", port + 300)),
        "{out}"
    );
    assert!(out.contains("release.1 exited with code 0"), "{out}");
    shoal.signal(libc::SIGINT);
    assert_eq!(shoal.finish().code(), Some(130));
}

#[test]
fn failed_release_stops_the_start_with_its_code() {
    let app = App::new("release: echo cannot migrate >&2; exit 4\nweb: FAKE sleep\n");
    let out = app
        .spawn(&["start", "-p", &free_port().to_string()])
        .finish();
    assert_eq!(out.code(), Some(4), "{}", out.stdout);
    assert!(
        out.stdout.contains("release.1 | cannot migrate"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("release.1 exited with code 4"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("web.1 started"), "{}", out.stdout);
}

#[test]
fn web_instances_become_ready_when_their_port_accepts_connections() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for(&format!("web.1 is ready on port {}", port + 100));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port + 100))
        .expect("ready means it accepts connections");
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.ends_with("web.1\n"), "{answer}");
}

/// Runs `shoal start --no-restart ARGS` on a pseudo-terminal (through util-linux `script`) and
/// returns what it printed.
fn start_on_a_terminal(app: &App, extra: &[&str], no_color_env: bool) -> String {
    let shoal = crate::support::shoal_bin();
    let mut line = format!("{} start --no-restart -p {}", shoal.display(), free_port());
    for arg in extra {
        line.push(' ');
        line.push_str(arg);
    }
    let mut command = std::process::Command::new("script");
    command
        .args(["-qec", &line, "/dev/null"])
        .current_dir(app.path())
        .env_remove("NO_COLOR");
    if no_color_env {
        command.env("NO_COLOR", "1");
    }
    let output = command.output().expect("util-linux `script` runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn colour_on_a_terminal_unless_turned_off() {
    let app = App::new(
        "web: until [ -e printed ]; do sleep 0.01; done; FAKE exit 0\nworker: echo hi; touch printed; exec FAKE sleep\n",
    );
    let coloured = start_on_a_terminal(&app, &[], false);
    assert!(
        coloured.contains("\x1b[36m"),
        "web gets the first colour:\n{coloured:?}"
    );
    assert!(
        coloured.contains("\x1b[33m"),
        "worker gets the second colour:\n{coloured:?}"
    );
    let flag = start_on_a_terminal(&app, &["--no-color"], false);
    assert!(flag.contains("web.1") && !flag.contains('\x1b'), "{flag:?}");
    let env = start_on_a_terminal(&app, &[], true);
    assert!(env.contains("web.1") && !env.contains('\x1b'), "{env:?}");
}

#[test]
fn a_port_used_by_another_program_does_not_make_an_instance_ready() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port + 100)).unwrap();
    let shoal = app.spawn(&["start", "-p", &port.to_string()]);
    shoal.wait_for(&format!("port {} is in use by another process", port + 100));
    shoal.wait_for("web.1 exited with code 1");
    assert!(!shoal.stdout().contains("is ready"), "{}", shoal.stdout());
}

#[test]
fn shell_builtins_work_as_commands() {
    let app = App::new("web: exit 3\n");
    let out = app
        .spawn(&["start", "--no-restart", "-p", &free_port().to_string()])
        .finish();
    assert_eq!(out.code(), Some(3), "{}", out.stdout);
}
