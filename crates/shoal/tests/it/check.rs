//! `shoal check`: the resolved plan, warnings, `--strict`, and errors that name file and line.

use crate::support::App;

#[test]
fn prints_instances_ports_and_masked_environment() {
    let app = App::new("release: ./migrate\nweb: ./server -p $PORT\nworker: ./work\n");
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter2@db/app\nAPI_KEY=sk-live-123\nRUST_LOG=info\n",
    );
    let out = app.run(&["check", "-m", "web=2"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for expected in [
        "web.1     port 5100   ./server -p $PORT",
        "web.2     port 5101   ./server -p $PORT",
        "worker.1  port 5200   ./work",
        "release        port 5300  ./migrate  (runs once, before the formation starts)",
        "postgres://app:****@db/app",
        "RUST_LOG",
        "info",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
    assert!(!out.stdout.contains("sk-live-123"), "{}", out.stdout);
}

#[test]
fn json_plan_is_stable() {
    let app = App::new("release: ./migrate\nweb: ./server\nworker: ./work\n");
    app.write(".env", "SECRET_TOKEN=abc\nMODE=demo\n");
    let out = app.run(&["check", "--json", "-m", "worker=0", "-p", "6000"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let dir = app.path().display().to_string();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let runtime = json["runtime_dir"].as_str().unwrap().to_owned();
    let text = out
        .stdout
        .replace(&runtime, "[RUNTIME]")
        .replace(&dir, "[APP]");
    insta::assert_snapshot!(text);
}

#[test]
fn warnings_are_named_and_strict_makes_them_errors() {
    let app = App::new("web: ./server\nworker : ./work\n  clock: ./tick\n");
    let out = app.run(&["check"]);
    assert_eq!(out.code(), Some(0));
    let procfile = app.path().join("Procfile");
    assert!(
        out.stderr.contains(&format!(
            "warning: {}:2: not a process entry, ignored: no space is allowed between the name and the colon (did you mean `worker: ./work`?)",
            procfile.display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(":3: not a process entry, ignored: entries must start at the beginning of the line (did you mean `clock: ./tick`?)"), "{}", out.stderr);

    let strict = app.run(&["check", "--strict"]);
    assert_eq!(strict.code(), Some(2));
    assert!(
        strict.stderr.contains("error: 2 warnings with --strict"),
        "{}",
        strict.stderr
    );
}

#[test]
fn duplicate_entries_keep_the_last_command() {
    let app = App::new("web: ./old\nweb: ./new\n");
    let out = app.run(&["check"]);
    assert!(
        out.stdout.contains("web.1  port 5100   ./new"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains(":2: process type `web` is defined again (first on line 1)"),
        "{}",
        out.stderr
    );
}

#[test]
fn crlf_and_byte_order_mark_are_accepted() {
    let app = App::new("\u{feff}web: ./server\r\nworker: ./work\r\n");
    let out = app.run(&["check", "--strict"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("worker.1  port 5200   ./work\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_input_is_a_usage_error_naming_file_and_line() {
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "",
            "",
            &[],
            "defines no process types; expected lines like `web: bundle exec puma -p $PORT`",
        ),
        ("web : x\n", "", &[], "note: "),
        (
            "web: a\nworker:\n",
            "",
            &[],
            "Procfile`:2: process type `worker` has an empty command",
        ),
        (
            "web: a\n",
            "",
            &["-m", "wbe=2"],
            "unknown process type `wbe` in the formation spec (did you mean `web`?)",
        ),
        (
            "web: a\n",
            "",
            &["-m", "web=two"],
            "`web=two` in the formation spec has count `two`",
        ),
        (
            "web: a\n",
            "A=1\nnot an assignment\n",
            &[],
            ".env`:2: expected `KEY=VALUE`, found `not an assignment`",
        ),
        (
            "web: a\n",
            "A=\"never closed\n",
            &[],
            ".env`:1: the \" quote that opens the value of `A` is never closed",
        ),
        ("web: a\n", "PORT=http\n", &[], "`PORT` from `"),
        (
            "release: x\n",
            "",
            &["-m", "release=1"],
            "`release` runs once before the formation starts",
        ),
    ];
    for (procfile, env, args, expected) in cases {
        let app = App::new(procfile);
        if !env.is_empty() {
            app.write(".env", env);
        }
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        let out = app.run(&all);
        assert_eq!(
            out.code(),
            Some(2),
            "{procfile:?} {env:?} {args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(expected),
            "expected `{expected}` in:\n{}",
            out.stderr
        );
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    }
}

#[test]
fn invalid_utf8_and_missing_files_are_clear_errors() {
    let app = App::new("web: a\n");
    std::fs::write(app.path().join("Procfile"), b"web: a\nworker: \xff\n").unwrap();
    let out = app.run(&["check"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("Procfile`:2: not valid UTF-8 (byte 0xff at column 9)"),
        "{}",
        out.stderr
    );

    let out = app.run(&["check", "-f", "nope/Procfile"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("error: cannot read `") && out.stderr.contains("nope/Procfile`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("caused by: No such file or directory"),
        "{}",
        out.stderr
    );

    app.write("Procfile", "web: a\n");
    let out = app.run(&["check", "-e", "missing.env"]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("missing.env`"), "{}", out.stderr);
}

#[test]
fn bad_flags_are_usage_errors() {
    let app = App::new("web: a\n");
    for args in [
        &["start", "--timeout", "soon"][..],
        &["start", "-p", "0"],
        &["start", "--bogus"],
        &["run"],
    ] {
        let out = app.run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
    }
}
