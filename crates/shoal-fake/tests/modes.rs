//! The fake's exit modes behave as documented. Having an integration test also makes
//! `cargo test --workspace` build the `shoal-fake` binary that shoal's own tests run (cargo
//! builds a package's binaries only for that package's integration tests).

use std::process::Command;

fn fake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal-fake"))
        .args(args)
        .output()
        .expect("shoal-fake runs")
}

#[test]
fn exit_prints_then_exits_with_the_code() {
    let out = fake(&["exit", "7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exiting with 7\n");
}

#[test]
fn partial_leaves_its_last_line_unterminated() {
    let out = fake(&["partial"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"no newline at the end");
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let out = fake(&["no-such-mode"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: shoal-fake MODE"));
}
