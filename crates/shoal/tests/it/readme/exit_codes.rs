//! The README's "Exit codes" table: every row has a test that makes the real `shoal` exit with
//! that code. Most live with the command they concern; this module lists them (and checks that
//! they still assert the code) and adds the ones no other module had.

use super::{Pinned, assert_no_problems, readme, section, tables};
use crate::support::{App, free_port};

/// A clause of a row of the table (as written there) and the test that pins it.
struct Claim {
    /// The row's code cell.
    code: &'static str,
    clause: &'static str,
    pinned: Pinned,
}

const fn claim(
    code: &'static str,
    clause: &'static str,
    file: &'static str,
    test: &'static str,
    needle: &'static str,
) -> Claim {
    Claim {
        code,
        clause,
        pinned: Pinned { file, test, needle },
    }
}

const HERE: &str = "shoal/tests/it/readme/exit_codes.rs";

const CLAIMS: &[Claim] = &[
    claim(
        "0",
        "a command succeeded",
        "shoal/tests/it/check.rs",
        "prints_instances_ports_and_masked_environment",
        "Some(0)",
    ),
    claim(
        "0",
        "the formation was stopped on request without a signal",
        "shoal/tests/it/control.rs",
        "stop_a_type_an_instance_or_everything",
        "shoal.finish().code(), Some(0)",
    ),
    claim(
        "1",
        "the public port is in use",
        "shoal/tests/it/router.rs",
        "the_public_port_in_use_is_a_clear_error",
        "Some(1)",
    ),
    claim(
        "1",
        "the same Procfile's formation is already running",
        "shoal/tests/it/stop.rs",
        "a_second_formation_of_the_same_procfile_is_refused",
        "Some(1)",
    ),
    claim(
        "1",
        "the runtime directory could not be created",
        HERE,
        "exit_codes_1_when_the_runtime_directory_cannot_be_made",
        "Some(1)",
    ),
    claim(
        "2",
        "wrong flags",
        "shoal/tests/it/check.rs",
        "bad_flags_are_usage_errors",
        "Some(2)",
    ),
    claim(
        "2",
        "a Procfile, `.env` file or formation spec that is not valid",
        "shoal/tests/it/check.rs",
        "bad_input_is_a_usage_error_naming_file_and_line",
        "Some(2)",
    ),
    claim(
        "2",
        "(`check --strict`: any warning)",
        "shoal/tests/it/check.rs",
        "warnings_are_named_and_strict_makes_them_errors",
        "Some(2)",
    ),
    claim(
        "N",
        "with `--no-restart`: the exit code of the instance that exited",
        "shoal/tests/it/start.rs",
        "no_restart_stops_everything_with_the_exit_code",
        "Some(7)",
    ),
    claim(
        "N",
        "(128 + S when killed by signal S)",
        HERE,
        "exit_codes_n_is_128_plus_the_signal_that_killed_the_instance",
        "Some(128 + libc::SIGKILL)",
    ),
    claim(
        "N",
        "when `release` fails: its exit code",
        "shoal/tests/it/start.rs",
        "failed_release_stops_the_start_with_its_code",
        "Some(4)",
    ),
    claim(
        "N",
        "`shoal run`: the command's",
        "shoal/tests/it/run.rs",
        "passes_the_exit_code_through",
        "Some(7)",
    ),
    claim(
        "3",
        "`ps`, `scale`, `restart`, `stop`: no formation is running",
        HERE,
        "exit_codes_3_from_every_control_command_without_a_formation",
        "Some(3)",
    ),
    claim(
        "0, 1, 2",
        "stateless",
        "shoal/tests/it/verify.rs",
        "a_static_site_is_stateless_from_an_http_file_and_from_a_har_file",
        "assert_verdict(",
    ),
    claim(
        "0, 1, 2",
        "stateful",
        "shoal/tests/it/verify.rs",
        "a_counter_in_process_memory_is_stateful",
        "assert_verdict(",
    ),
    claim(
        "0, 1, 2",
        "no verdict",
        "shoal/tests/it/verify.rs",
        "a_procfile_without_web_gets_no_verdict",
        "assert_no_verdict(",
    ),
    claim(
        "130, 143, 129",
        "SIGINT",
        "shoal/tests/it/stop.rs",
        "sigint_stops_instances_gracefully_with_code_130",
        "Some(130)",
    ),
    claim(
        "130, 143, 129",
        "SIGTERM or SIGHUP",
        "shoal/tests/it/stop.rs",
        "sigterm_exits_143_and_sighup_129",
        "(libc::SIGTERM, 143), (libc::SIGHUP, 129)",
    ),
];

#[test]
fn exit_codes_table_rows_each_have_a_test() {
    let text = readme();
    let table = tables(section(&text, "## Exit codes"))
        .into_iter()
        .find(|t| t.header == ["code", "when"])
        .expect("the exit code table");
    let mut problems = Vec::new();
    for row in &table.rows {
        if !CLAIMS.iter().any(|c| c.code == row[0]) {
            problems.push(format!("no test listed for the row `{}`", row[0]));
        }
    }
    for claim in CLAIMS {
        match table.rows.iter().find(|row| row[0] == claim.code) {
            None => problems.push(format!("the README has no row `{}`", claim.code)),
            Some(row) if !row[1].contains(claim.clause) => problems.push(format!(
                "the row `{}` no longer says `{}`",
                claim.code, claim.clause
            )),
            Some(_) => {}
        }
        problems.extend(claim.pinned.problem());
    }
    assert_no_problems("README `Exit codes`", &problems);
}

#[test]
fn exit_codes_1_when_the_runtime_directory_cannot_be_made() {
    let app = App::new("web: FAKE sleep\n");
    let port = free_port().to_string();
    // TMPDIR is a file: nothing can be made under it.
    let file = app.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let out = app
        .command(&["start", "-p", &port])
        .env("TMPDIR", &file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot prepare the formation's runtime directory"),
        "{stderr}"
    );
    // A per-user directory that others can enter is refused rather than used.
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let shared = tmp.path().join(format!("shoal-{uid}"));
    std::fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = app
        .command(&["start", "-p", &port])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(expected mode 0700)"), "{stderr}");
}

#[test]
fn exit_codes_n_is_128_plus_the_signal_that_killed_the_instance() {
    let app = App::new("worker: FAKE sleep\n");
    let shoal = app.spawn(&["start", "--no-restart", "-p", &free_port().to_string()]);
    let started = shoal.wait_for("worker.1 started (pid ");
    let pid: i32 = started
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')']).next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {started:?}"));
    shoal.wait_for("worker.1 | up");
    // SAFETY: kill has no memory-safety preconditions; the pid is the instance's, still alive.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = shoal.finish();
    assert_eq!(out.code(), Some(128 + libc::SIGKILL), "{}", out.stdout);
}

#[test]
fn exit_codes_3_from_every_control_command_without_a_formation() {
    let app = App::new("web: FAKE serve\n");
    for args in [
        &["ps"][..],
        &["scale", "web=2"],
        &["restart"],
        &["stop", "web"],
    ] {
        let out = app.run(args);
        assert_eq!(out.code(), Some(3), "shoal {args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("error: no formation is running"),
            "shoal {args:?}: {}",
            out.stderr
        );
    }
}
