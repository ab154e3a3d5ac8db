//! `shoal run`: one command with an instance's environment, its exit code passed through.

use crate::support::{App, Running, assert_no_survivors, token};

#[test]
fn runs_with_the_instance_environment() {
    let app = App::new("web: ./server\n");
    app.write(".env", "GREETING=hello\n");
    let out = app.run(&["run", "echo $GREETING $PORT $PS $DYNO; test \"$TMPDIR\" = \"$SHOAL_SCRATCH\" && test -d \"$TMPDIR\" && echo scratch-ok"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let pid_name = out.stdout.split_whitespace().nth(2).unwrap().to_owned();
    assert!(pid_name.starts_with("run."), "{}", out.stdout);
    assert_eq!(
        out.stdout,
        format!("hello 5000 {pid_name} {pid_name}\nscratch-ok\n")
    );
}

#[test]
fn passes_the_exit_code_through() {
    let app = App::new("web: ./server\n");
    let out = app.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$1\"; exit 7",
        "sh",
        "two words",
    ]);
    assert_eq!(out.code(), Some(7));
    assert_eq!(out.stdout, "two words\n");
    let out = app.run(&["run", "kill -TERM $$"]);
    assert_eq!(out.code(), Some(143));
}

#[test]
fn runs_a_procfile_entry_by_name() {
    let app = App::new("web: ./server\nmigrate: echo migrating on $PORT\n");
    let out = app.run(&["run", "-p", "6000", "migrate"]);
    assert_eq!(out.stdout, "migrating on 6000\n", "{}", out.stderr);
}

#[test]
fn works_without_a_procfile() {
    let app = App::new("web: ./server\n");
    std::fs::remove_file(app.path().join("Procfile")).unwrap();
    app.write(".env", "ONLY=env\n");
    let out = app.run(&["run", "echo $ONLY"]);
    assert_eq!(out.stdout, "env\n", "{}", out.stderr);
}

#[test]
fn forwards_sigterm_to_the_command() {
    let app = App::new("web: ./server\n");
    let fake = crate::support::fake_bin();
    let shoal = Running::spawn(app.command(&["run", "--", fake.to_str().unwrap(), "graceful"]));
    shoal.wait_for("up");
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert!(out.stdout.contains("got SIGTERM"), "{}", out.stdout);
    assert_eq!(
        out.code(),
        Some(0),
        "the command handled SIGTERM and exited 0"
    );
}

#[test]
fn ends_what_the_command_left_running_in_the_background() {
    let app = App::new("web: ./server\n");
    let marker = token("run-leftover");
    // One that ends at SIGTERM, one that ignores it (ended by SIGKILL after the grace period);
    // `; :` keeps each shell from exec-ing sleep, so the marker stays in a command line; their
    // output goes elsewhere, so that shoal's output ends when shoal does.
    let command = format!(
        "sh -c 'sleep 300; :' {marker}-polite >/dev/null 2>&1 & sh -c 'trap \"\" TERM; sleep 300; :' {marker}-stubborn >/dev/null 2>&1 & echo started"
    );
    let out = app.run(&["run", &command]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "started\n");
    assert!(
        out.stderr.contains("background process"),
        "shoal says what it ended: {}",
        out.stderr
    );
    assert_no_survivors(&marker);
}
