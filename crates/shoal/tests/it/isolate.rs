//! `shoal start --isolate`: each instance in a private copy of the app directory, made afresh
//! at every start, and its first writes there reported.

use std::path::Path;

use crate::support::{App, free_port, text};

/// The first line that reports `instance` writing `file`.
fn wrote(instance: &str, file: &str) -> String {
    format!("| {instance} wrote `{file}` in its copy of the app directory:")
}

/// Each instance's `local_writes` from `shoal ps --json`.
fn local_writes(app: &App, instance: &str) -> Option<u64> {
    let ps = app.run(&["ps", "--json"]);
    assert_eq!(ps.code(), Some(0), "{}", ps.stderr);
    let instances: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    instances
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == instance)
        .and_then(|i| i["local_writes"].as_u64())
}

/// Every path below `dir` (recursively) whose name contains `part`.
fn paths_named(dir: &Path, part: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(part) {
            found.push(path.display().to_string());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(paths_named(&path, part));
        }
    }
    found
}

#[test]
fn a_write_into_the_app_directory_is_reported_naming_the_file() {
    let app = App::new(
        "worker: sh -c 'mkdir -p uploads && echo meow > uploads/cat.png && echo saved && exec sleep 600'\n",
    );
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    let line = shoal.wait_for(&wrote("worker.1", "uploads/cat.png"));
    assert!(
        line.contains("no other instance sees it and a restart loses it")
            && line.contains("`$SHOAL_SCRATCH`"),
        "{line}"
    );
    shoal.wait_for("worker.1 | saved");
    // The instance wrote into its copy, never into the app directory.
    assert!(!app.path().join("uploads").exists());
    assert_eq!(local_writes(&app, "worker.1"), Some(1));
    let ps = app.run(&["ps"]);
    assert!(
        ps.stdout
            .contains("files written in copies of the app directory (--isolate): worker.1 1"),
        "{}",
        ps.stdout
    );
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130), "{}", out.stdout);
    // Once per directory: the line names the first file only.
    assert_eq!(
        out.stdout
            .matches("in its copy of the app directory")
            .count(),
        1
    );
}

#[test]
fn writes_in_scratch_and_bytecode_caches_are_not_reported() {
    // The marker, written last into the copy, is reported after everything before it was
    // seen: the events of one copy arrive in order.
    let app = App::new(
        "worker: sh -c 'echo x > $SHOAL_SCRATCH/upload.tmp && mkdir -p __pycache__ && echo c > __pycache__/app.pyc && echo done > marker.txt && exec sleep 600'\n",
    );
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    shoal.wait_for(&wrote("worker.1", "marker.txt"));
    assert_eq!(local_writes(&app, "worker.1"), Some(1));
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert!(!out.stdout.contains("upload.tmp"), "{}", out.stdout);
    assert!(!out.stdout.contains("pyc"), "{}", out.stdout);
}

#[test]
fn without_isolate_instances_share_the_app_directory_and_nothing_is_reported() {
    let app = App::new("worker: sh -c 'echo x > shared.txt && echo wrote-it && exec sleep 600'\n");
    let shoal = app.spawn(&["start", "-p", &free_port().to_string()]);
    shoal.wait_for("worker.1 | wrote-it");
    assert!(app.path().join("shared.txt").exists());
    assert_eq!(local_writes(&app, "worker.1"), None);
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert!(
        !out.stdout.contains("copy of the app directory"),
        "{}",
        out.stdout
    );
}

#[test]
fn two_instances_never_see_each_others_files() {
    let app = App::new("");
    let go = app.path().parent().unwrap().join(format!(
        "go-{}",
        app.path().file_name().unwrap().to_string_lossy()
    ));
    // Each writes a file named after itself, waits until both have written (the test says
    // so through a file outside the app directory), and lists what it sees.
    app.write(
        "Procfile",
        &format!(
            "worker: sh -c 'echo hi > note-$SHOAL_INSTANCE; while [ ! -e {go} ]; do sleep 0.05; done; echo sees $(ls note-*) end; exec sleep 600'\n",
            go = go.display()
        ),
    );
    let shoal = app.spawn(&[
        "start",
        "--isolate",
        "-m",
        "worker=2",
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for(&wrote("worker.1", "note-worker.1"));
    shoal.wait_for(&wrote("worker.2", "note-worker.2"));
    std::fs::write(&go, "").unwrap();
    let seen = shoal.wait_for_n(2, "listing the notes", |l| text(l).starts_with("sees "));
    let _ = std::fs::remove_file(&go);
    let mut seen: Vec<&str> = seen
        .iter()
        .map(|l| l.split_once(" | ").unwrap().1)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["sees note-worker.1 end", "sees note-worker.2 end"]);
    assert!(paths_named(app.path(), "note-").is_empty());
}

#[test]
fn a_restart_starts_from_a_clean_copy_also_under_chaos() {
    // State kept in the copy would be `found` after a restart. The app's own file is there
    // every time.
    let app = App::new(
        "worker: sh -c 'cat seed.txt; if [ -e state.txt ]; then echo found-state; else echo fresh; fi; echo x > state.txt; exec sleep 600'\n",
    );
    app.write("seed.txt", "seed-from-the-app\n");
    let shoal = app.spawn(&[
        "start",
        "--isolate",
        "--chaos=kill=1s",
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for_n(3, "starting from a fresh copy", |l| {
        l.ends_with("worker.1 | fresh")
    });
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert!(!out.stdout.contains("found-state"), "{}", out.stdout);
    assert!(
        out.stdout.matches("worker.1 | seed-from-the-app").count() >= 3,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("chaos"), "{}", out.stdout);
    // Reported once for the instance, however often it restarts; counted at every run.
    assert_eq!(
        out.stdout.matches(&wrote("worker.1", "state.txt")).count(),
        1
    );
    assert!(!app.path().join("state.txt").exists());
}

#[test]
fn copies_are_copy_on_write_mounts_that_no_one_else_sees_and_nothing_is_left_after_stop() {
    let app = App::new("worker: sh -c 'echo $PWD && ls -s big.bin && exec sleep 600'\n");
    app.write("big.bin", &"x".repeat(1 << 20));
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    let dir = text(&shoal.wait_for("worker.1 | /")).to_owned();
    // The app's files are there for the instance (the mount is not visible from here).
    shoal.wait_for("worker.1 | 1024 big.bin");
    let overlay = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!(" {dir} ")) && l.contains(" - overlay "))
    };
    let cow = shoal.stdout().contains("copy-on-write copy");
    if cow {
        // The mount is shoal's own: not in the namespace of the test (the host's).
        assert!(
            overlay(shoal.pid()),
            "no overlay on `{dir}` in shoal's mounts"
        );
        assert!(
            !overlay(std::process::id()),
            "shoal's overlay leaked to the host"
        );
    } else {
        eprintln!("NOT RUN (the copy-on-write part): the kernel refused an overlay here");
    }
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert!(!Path::new(&dir).exists(), "`{dir}` is left after stop");
    let tmp = Path::new(&dir)
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "isolate"))
        .unwrap()
        .to_path_buf();
    assert!(!tmp.exists(), "`{}` is left after stop", tmp.display());
}

#[test]
fn an_app_directory_overlayfs_cannot_name_gets_a_plain_copy() {
    let app = App::new("");
    // `,` separates overlayfs's options: such a path is copied instead.
    let dir = app.path().join("with,comma");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("seed.txt"), "seed\n").unwrap();
    app.write(
        "Procfile",
        "worker: sh -c 'cat seed.txt && echo x > made.txt && exec sleep 600'\n",
    );
    let shoal = app.spawn(&[
        "start",
        "--isolate",
        "-f",
        "Procfile",
        "-d",
        "with,comma",
        "-p",
        &free_port().to_string(),
    ]);
    let line = shoal.wait_for("--isolate: every instance runs in a copy of");
    assert!(line.contains("copy-on-write is not possible"), "{line}");
    shoal.wait_for("worker.1 | seed");
    shoal.wait_for(&wrote("worker.1", "made.txt"));
    assert!(!dir.join("made.txt").exists());
    shoal.signal(libc::SIGTERM);
    shoal.finish();
}

#[test]
fn an_instance_that_writes_and_exits_at_once_is_reported_and_its_copy_goes_with_it() {
    // The write's event is still queued when the instance has exited: it is handled before
    // the copy is removed.
    let app = App::new(
        "worker: sh -c 'echo $PWD; echo x > quick.txt'\nstay: sh -c 'echo $PWD; exec sleep 600'\n",
    );
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    shoal.wait_for(&wrote("worker.1", "quick.txt"));
    let stay = shoal.wait_for_n(1, "from stay.1", |l| {
        l.contains(" stay.1 ") && text(l).starts_with('/')
    });
    let stay = text(&stay[0]).to_owned();
    // A scale-down removes the instance's copy at once, not when shoal stops.
    let scaled = app.run(&["scale", "stay=0"]);
    assert_eq!(scaled.code(), Some(0), "{}", scaled.stderr);
    let frame = Path::new(&stay)
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "stay.1"))
        .unwrap()
        .to_path_buf();
    shoal.wait_for("stay.1 was killed by SIGTERM");
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    while frame.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "`{}` is still there after stay.1 stopped",
            frame.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    shoal.signal(libc::SIGTERM);
    shoal.finish();
}

#[test]
fn without_root_the_copies_are_mounted_in_a_user_namespace() {
    let setpriv = Path::new("/usr/bin/setpriv");
    if !crate::support::root_with(&["/usr/bin/setpriv"]) {
        eprintln!("NOT RUN: needs root and /usr/bin/setpriv to run shoal as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let base = tempfile::tempdir().unwrap();
    let app = base.path().join("app");
    let tmp = base.path().join("tmp");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        app.join("Procfile"),
        "worker: sh -c 'id -u; cat /proc/self/uid_map; echo x > mine.txt; exec sleep 600'\n",
    )
    .unwrap();
    for path in [base.path(), &app, &app.join("Procfile"), &tmp] {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let mut command = std::process::Command::new(setpriv);
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(crate::support::shoal_bin())
        .args(["start", "--isolate", "-p", &free_port().to_string()])
        .current_dir(&app)
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1");
    let shoal = crate::support::Running::spawn(command);
    let how = shoal.wait_for("--isolate: every instance runs in a");
    if !how.contains("copy-on-write copy") {
        eprintln!("NOT RUN (the user namespace part): {how}");
        return;
    }
    shoal.wait_for(&wrote("worker.1", "mine.txt"));
    // The instance runs as the user itself, mapped to itself.
    shoal.wait_for(&format!("worker.1 | {NOBODY}"));
    let map = shoal.wait_for_n(1, "with the uid map", |l| {
        text(l).split_whitespace().count() == 3
    });
    let fields: Vec<&str> = text(&map[0]).split_whitespace().collect();
    assert_eq!(fields, ["65534", "65534", "1"]);
    assert!(!app.join("mine.txt").exists());
    // `shoal ps`, run outside the namespace, reaches the formation inside it.
    let ps = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(crate::support::shoal_bin())
        .args(["ps", "--json"])
        .current_dir(&app)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains(r#""local_writes": 1"#), "{ps}");
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert!(
        paths_named(&tmp, "isolate").is_empty(),
        "{:?}",
        paths_named(&tmp, "isolate")
    );
}

#[test]
fn web_instances_in_their_copies_become_ready_behind_the_router() {
    let app = App::new("web: sh -c 'echo $PWD; echo hi > greeting.txt && exec FAKE serve'\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "--isolate", "-m", "web=2", "-p", &port.to_string()]);
    shoal.wait_ready(2);
    shoal.wait_for(&wrote("web.1", "greeting.txt"));
    shoal.wait_for(&wrote("web.2", "greeting.txt"));
    for _ in 0..4 {
        let answer = crate::support::http(port, "GET");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert!(!app.path().join("greeting.txt").exists());
    let dir = shoal.wait_for_n(1, "from web.1", |l| {
        l.contains(" web.1 ") && text(l).starts_with('/')
    });
    let dir = text(&dir[0]).to_owned();
    shoal.signal(libc::SIGINT);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(130), "{}", out.stdout);
    // Ctrl-C leaves no copy behind either.
    let copies = Path::new(&dir)
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "isolate"))
        .unwrap()
        .to_path_buf();
    assert!(
        !copies.exists(),
        "`{}` is left after Ctrl-C",
        copies.display()
    );
}

#[test]
fn changing_and_deleting_the_apps_own_files_are_reported_too() {
    let app = App::new(
        "worker: sh -c 'echo more >> seed.txt && rm old/gone.txt && echo done && exec sleep 600'\n",
    );
    app.write("seed.txt", "seed\n");
    std::fs::create_dir(app.path().join("old")).unwrap();
    app.write("old/gone.txt", "bye\n");
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    shoal.wait_for(&wrote("worker.1", "seed.txt"));
    let deleted =
        shoal.wait_for("worker.1 deleted `old/gone.txt` in its copy of the app directory");
    assert!(
        deleted.contains("the other instances still have it and a restart brings it back"),
        "{deleted}"
    );
    assert_eq!(local_writes(&app, "worker.1"), Some(2));
    // The app directory itself is as it was.
    assert_eq!(
        std::fs::read_to_string(app.path().join("seed.txt")).unwrap(),
        "seed\n"
    );
    assert!(app.path().join("old/gone.txt").exists());
    shoal.signal(libc::SIGTERM);
    shoal.finish();
}

/// An app directory and a `TMPDIR` for shoal run as `uid` (by a test run as root).
fn app_of(uid: u32, procfile: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let app = base.path().join("app");
    let tmp = base.path().join("tmp");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(app.join("Procfile"), procfile).unwrap();
    for path in [base.path(), &app, &app.join("Procfile"), &tmp] {
        std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    }
    (base, app, tmp)
}

/// Whether this test can make namespaces and change users (it runs as root, with util-linux).
fn can_make_namespaces() -> bool {
    crate::support::root_with(&["/usr/bin/setpriv", "/usr/bin/unshare"])
}

#[test]
fn a_user_namespace_refused_half_way_leaves_shoal_where_it_was_with_plain_copies() {
    if !can_make_namespaces() {
        eprintln!("NOT RUN: needs root, setpriv and unshare to run shoal as another user");
        return;
    }
    // A read-only `/proc` lets `unshare(CLONE_NEWUSER)` succeed and refuses the uid map
    // after it, as Ubuntu's AppArmor restriction does: shoal must not be left in a user
    // namespace where it has no uid (`id -u` would say 65534, its files nobody's).
    const USER: u32 = 4242;
    let (_base, app, tmp) = app_of(
        USER,
        "worker: sh -c 'id -u; stat -c owner-%u Procfile; echo x > mine.txt; exec sleep 600'\n",
    );
    let shoal_start = format!(
        "mount -o remount,bind,ro /proc && exec setpriv --reuid={USER} --regid={USER} --clear-groups {} start --isolate -p {}",
        crate::support::shoal_bin().display(),
        free_port()
    );
    let mut command = std::process::Command::new("unshare");
    command
        .args(["-m", "sh", "-c", &shoal_start])
        .current_dir(&app)
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1");
    let shoal = crate::support::Running::spawn(command);
    // The instance runs as the user, and the user owns the app's files.
    shoal.wait_for(&format!("worker.1 | {USER}"));
    shoal.wait_for(&format!("worker.1 | owner-{USER}"));
    // `unshare` and `setpriv` exec: the process started is shoal.
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_eq!(user_ns(&shoal.pid().to_string()), user_ns("self"));
    let how = shoal.wait_for("--isolate: every instance runs in a");
    assert!(
        how.contains("--isolate: every instance runs in a copy of `")
            && how.contains(&format!("copy-on-write is not possible: entered a user namespace as uid {USER} in a trial, but cannot write `/proc/self/setgroups`: "))
            && how.ends_with("; `/proc` is mounted read-only)"),
        "{how}"
    );
    shoal.wait_for(&wrote("worker.1", "mine.txt"));
    assert!(!app.join("mine.txt").exists());
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
}

#[test]
fn no_user_namespace_left_to_make_is_named_as_the_reason_for_plain_copies() {
    if !can_make_namespaces() {
        eprintln!("NOT RUN: needs root and unshare to limit user namespaces");
        return;
    }
    // In a user namespace of its own, the test's root may lower `user.max_user_namespaces`
    // there: 1 lets the next `unshare` make shoal's namespace (uid 4242, root outside), and
    // none is left for shoal's own.
    let (_base, app, tmp) = app_of(
        0,
        "worker: sh -c 'id -u; echo x > mine.txt; exec sleep 600'\n",
    );
    let shoal_start = format!(
        "echo 1 > /proc/sys/user/max_user_namespaces && exec unshare -U --map-user=4242 --map-group=4242 {} start --isolate -p {}",
        crate::support::shoal_bin().display(),
        free_port()
    );
    let mut command = std::process::Command::new("unshare");
    command
        .args(["-U", "-r", "sh", "-c", &shoal_start])
        .current_dir(&app)
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1");
    let shoal = crate::support::Running::spawn(command);
    let how = shoal.wait_for("--isolate: every instance runs in a");
    if how.contains("copy-on-write copy") {
        eprintln!("NOT RUN: this kernel let shoal make a user namespace beyond the limit: {how}");
        return;
    }
    assert!(
        how.contains("copy-on-write is not possible: cannot enter a user namespace as uid 4242: ")
            && how.contains("the limit `user.max_user_namespaces` is reached"),
        "{how}"
    );
    shoal.wait_for(&wrote("worker.1", "mine.txt"));
    shoal.wait_for("worker.1 | 4242");
    assert!(!app.join("mine.txt").exists());
    shoal.signal(libc::SIGTERM);
    shoal.finish();
}

/// Stops shoal while its worker writes more files than the kernel queues events for
/// (`fs.inotify.max_queued_events`), so that events are dropped for real; `-d dir` when
/// `app_dir` is given.
fn writes_beyond_the_event_queue(app: &App, app_dir: Option<&str>) {
    let queued: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if queued > 200_000 {
        eprintln!("NOT RUN: the kernel queues {queued} file events, too many to overflow");
        return;
    }
    let files = queued + 2000;
    let signal = |name: &str| {
        let dir = app.path().file_name().unwrap().to_string_lossy();
        app.path().parent().unwrap().join(format!("{name}-{dir}"))
    };
    let (go, done, again) = (signal("go"), signal("done"), signal("again"));
    let wait = |file: &Path| format!("while [ ! -e {} ]; do sleep 0.05; done", file.display());
    let procfile = format!(
        "worker: sh -c 'echo ready; {}; i=0; while [ $i -lt {files} ]; do : > f$i; i=$((i+1)); done; mkdir late; : > late/a; : > {}; {}; : > late/b; echo wrote-b; exec sleep 600'\n",
        wait(&go),
        done.display(),
        wait(&again)
    );
    let dir = app.path().join(app_dir.unwrap_or(""));
    std::fs::create_dir_all(&dir).unwrap();
    app.write("Procfile", &procfile);
    let port = free_port().to_string();
    let mut args = vec!["start", "--isolate", "-p", &port];
    if let Some(app_dir) = app_dir {
        args.extend(["-d", app_dir, "-f", "Procfile"]);
    }
    let shoal = app.spawn(&args);
    shoal.wait_for("worker.1 | ready");
    shoal.signal(libc::SIGSTOP);
    std::fs::write(&go, "").unwrap();
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    while !done.exists() {
        if std::time::Instant::now() > deadline {
            shoal.signal(libc::SIGCONT);
            panic!("the worker did not write its {files} files in time");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    shoal.signal(libc::SIGCONT);
    let line = shoal.wait_for("some writes of worker.1 may not have been reported: ");
    assert!(
        line.contains(&format!("`fs.inotify.max_queued_events` ({queued})")),
        "{line}"
    );
    // The directory made while events were dropped is watched again.
    std::fs::write(&again, "").unwrap();
    shoal.wait_for("worker.1 | wrote-b");
    let expected = files as u64 + 2;
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    loop {
        let counted = local_writes(app, "worker.1");
        if counted == Some(expected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "local_writes is {counted:?}, not {expected}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    for file in [&go, &done, &again] {
        let _ = std::fs::remove_file(file);
    }
    assert_eq!(
        out.stdout.matches("may not have been reported").count(),
        1,
        "{}",
        out.stdout
    );
    assert!(!dir.join("late").exists());
}

#[test]
fn dropped_file_events_are_said_and_a_copy_on_write_copy_is_looked_through_again() {
    writes_beyond_the_event_queue(&App::new(""), None);
}

#[test]
fn dropped_file_events_are_said_and_a_plain_copy_is_looked_through_again() {
    // `,` in the app directory's path: overlayfs cannot be given it.
    writes_beyond_the_event_queue(&App::new(""), Some("with,comma"));
}

#[test]
fn file_names_are_escaped_so_that_they_neither_fake_lines_nor_steer_the_terminal() {
    let app = App::new(concat!(
        r#"worker: sh -c 'mkdir d1 d2 && : > "d1/$(printf "a\nfake | line\033[2J")" && : > "d2/$(printf "x\377y")" && echo done && exec sleep 600'"#,
        "\n"
    ));
    let shoal = app.spawn(&["start", "--isolate", "-p", &free_port().to_string()]);
    shoal.wait_for(&wrote("worker.1", r"d1/a\nfake | line\u{1b}[2J"));
    shoal.wait_for(&wrote("worker.1", r"d2/x\xffy"));
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert!(!out.stdout.contains('\u{1b}'), "{}", out.stdout);
    assert!(
        !out.stdout.lines().any(|line| line.starts_with("fake")),
        "{}",
        out.stdout
    );
}

#[test]
fn symlinks_that_lead_out_of_the_app_directory_are_named_once_at_start() {
    let app =
        App::new("worker: sh -c 'echo x > uploads/cat-$$.png && echo saved && exec sleep 600'\n");
    let outside = tempfile::tempdir().unwrap();
    let up = format!(
        "../{}",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    std::os::unix::fs::symlink(outside.path(), app.path().join("uploads")).unwrap();
    std::os::unix::fs::symlink(&up, app.path().join("shared")).unwrap();
    std::fs::create_dir(app.path().join("data")).unwrap();
    std::os::unix::fs::symlink("data", app.path().join("alias")).unwrap();
    let shoal = app.spawn(&[
        "start",
        "--isolate",
        "-m",
        "worker=2",
        "-p",
        &free_port().to_string(),
    ]);
    shoal.wait_for(&format!(
        "--isolate: `uploads` is a symlink to `{}`, outside the app directory: what instances write through it is shared by all of them and not isolated",
        outside.path().display()
    ));
    shoal.wait_for(&format!(
        "--isolate: `shared` is a symlink to `{up}`, outside the app directory:"
    ));
    shoal.wait_for_n(2, "from both workers", |l| l.ends_with("| saved"));
    // Both wrote through the link into the one directory outside.
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 2);
    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(
        out.stdout.matches("is a symlink to").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("`alias`"), "{}", out.stdout);
}
