//! `Scratch`: created private, removed on drop and after a panic, stale ones swept.

use std::os::unix::fs::PermissionsExt;

use shoal_kit::Scratch;

#[test]
fn is_private_and_removed_on_drop() {
    let base = tempfile::tempdir().unwrap();
    let s = Scratch::new_in(base.path()).unwrap();
    let path = s.path().to_owned();
    assert!(path.starts_with(base.path()));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o700
    );
    std::fs::create_dir(path.join("sub")).unwrap();
    std::fs::write(path.join("sub/file"), b"data").unwrap();
    let other = Scratch::new_in(base.path()).unwrap();
    assert_ne!(other.path(), path);
    drop(s);
    assert!(!path.exists());
    assert!(other.path().exists());
}

#[test]
fn is_removed_after_a_panic() {
    let base = tempfile::tempdir().unwrap();
    let base_path = base.path().to_owned();
    let result = std::panic::catch_unwind(move || {
        let s = Scratch::new_in(&base_path).unwrap();
        std::fs::write(s.path().join("half-done"), b"x").unwrap();
        panic!("job failed");
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
}

#[test]
fn stale_scratch_of_dead_processes_is_removed() {
    let base = tempfile::tempdir().unwrap();
    // A process that has exited: its pid is free (reuse within this test is not a concern).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = base
        .path()
        .join(format!("shoal-kit-scratch-{dead}-0-abcdef"));
    std::fs::create_dir_all(stale.join("deep")).unwrap();
    let alive = Scratch::new_in(base.path()).unwrap();
    let unrelated = base.path().join("not-ours");
    std::fs::create_dir(&unrelated).unwrap();

    assert_eq!(Scratch::remove_stale(base.path()).unwrap(), 1);
    assert!(!stale.exists());
    assert!(alive.path().exists(), "a live process's scratch is kept");
    assert!(unrelated.exists());
}
