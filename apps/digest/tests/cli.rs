//! The binary's usage and configuration errors: clear messages, passwords masked, and the
//! documented exit codes (2 wrong usage or configuration, 1 a backing service failed).

mod support;

use std::process::Command;

fn digest(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(support::digest_bin());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_DATA_HOME", data.path());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run digest");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["serve"][..], &["web", "extra"][..]] {
        let (code, stderr) = digest(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: digest"), "{stderr}");
    }
}

#[test]
fn configuration_errors_name_the_variable_and_mask_the_password() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("DATABASE_URL", "mysql://app:hunter2@db/app")],
            "`DATABASE_URL` is `mysql://app:****@db/app`",
        ),
        (
            &[("DATABASE_URL", "sqlite://relative.db")],
            "must be an absolute path",
        ),
        (
            &[("DIGEST_MAX_BYTES", "huge")],
            "`DIGEST_MAX_BYTES` is `huge`",
        ),
        (
            &[("SESSION_URL", "mongodb://app:hunter2@db/app")],
            "`mongodb://app:****@db/app`",
        ),
        (&[("PORT", "http")], "`PORT` is `http`"),
    ];
    for (env, expected) in cases {
        let (code, stderr) = digest(&["web"], env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn an_unreachable_database_exits_1() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let (code, stderr) = digest(
        &["migrate"],
        &[("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/app")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the database at `postgres://app:****@127.0.0.1:1/app`"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn migrate_creates_the_default_database() {
    let data = tempfile::tempdir().unwrap();
    let home = data.path().to_str().unwrap();
    let (code, stderr) = digest(&["migrate"], &[("XDG_DATA_HOME", home)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("applied schema version"), "{stderr}");
    assert!(data.path().join("digest/digest.db").is_file());
    let (code, stderr) = digest(&["migrate"], &[("XDG_DATA_HOME", home)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");
}
