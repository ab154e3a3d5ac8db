//! The control socket is only used when it and its directory belong to the user: the server
//! binds only inside a private directory, the client talks only to a socket of its own user.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_control::{Client, ClientError, ControlServer};

/// Another user (`nobody`).
const OTHER_UID: u32 = 65534;

/// A private temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "shoal-control-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    shoal_supervisor::scratch::effective_uid() == 0
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The client's error for `path`, which must be a refusal.
async fn refusal(path: &Path) -> String {
    match Client::connect(path).await {
        Err(err @ ClientError::Unsafe { .. }) => err.to_string(),
        Err(err) => panic!("not refused as unsafe: {err}"),
        Ok(_) => panic!("`{}` was accepted", path.display()),
    }
}

#[tokio::test]
async fn the_server_binds_in_a_private_directory_it_makes() {
    let temp = TempDir::new();
    let socket = temp.join("sockets/control.sock");
    let _server = ControlServer::bind(&socket).unwrap();
    let dir = std::fs::symlink_metadata(temp.join("sockets")).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&socket).unwrap().mode() & 0o777, 0o600);
    // And the client accepts what the server made.
    assert!(Client::connect(&socket).await.is_ok());
}

#[tokio::test]
async fn the_server_refuses_a_directory_someone_else_could_have_made() {
    let temp = TempDir::new();
    let refused = |dir: &str| {
        let socket = temp.join(dir).join("control.sock");
        match ControlServer::bind(&socket) {
            Ok(_) => panic!("bound in `{dir}`"),
            Err(err) => err.to_string(),
        }
    };

    std::fs::write(temp.join("file"), "").unwrap();
    assert!(refused("file").contains("it is not a directory"));

    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(temp.join("real"))
        .unwrap();
    std::os::unix::fs::symlink(temp.join("real"), temp.join("link")).unwrap();
    let err = refused("link");
    assert!(err.contains("it is a symbolic link"), "{err}");
    assert!(!temp.join("real/control.sock").exists());

    std::fs::create_dir(temp.join("open")).unwrap();
    chmod(&temp.join("open"), 0o777);
    assert!(refused("open").contains("other users can access it"));

    if is_root() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(temp.join("foreign"))
            .unwrap();
        std::os::unix::fs::chown(temp.join("foreign"), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
        let err = refused("foreign");
        assert_eq!(
            err,
            format!(
                "refusing to use `{}`: it belongs to another user; remove it or set `TMPDIR` to \
                 another directory",
                temp.join("foreign").display()
            )
        );
    }
}

#[tokio::test]
async fn the_client_refuses_a_socket_of_another_user() {
    if !is_root() {
        eprintln!("skipped: only root can give a socket to another user");
        return;
    }
    let temp = TempDir::new();
    let socket = temp.join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert!(Client::connect(&socket).await.is_ok());
    std::os::unix::fs::chown(&socket, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let err = refusal(&socket).await;
    assert!(
        err.contains(&format!("it belongs to another user (uid {OTHER_UID})")),
        "{err}"
    );
}

#[tokio::test]
async fn the_client_refuses_a_socket_that_could_be_swapped() {
    let temp = TempDir::new();
    let socket = temp.join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();

    // A link: whoever made it can point it elsewhere.
    let link = temp.join("link.sock");
    std::os::unix::fs::symlink(&socket, &link).unwrap();
    assert!(refusal(&link).await.contains("it is a symbolic link"));

    // Not a socket at all.
    std::fs::write(temp.join("plain"), "").unwrap();
    assert!(
        refusal(&temp.join("plain"))
            .await
            .contains("it is not a socket")
    );

    // In a directory others can write to (as `/tmp`), another user can swap the socket.
    chmod(&temp.0, 0o1777);
    let err = refusal(&socket).await;
    assert!(
        err.contains("other users can write to its directory"),
        "{err}"
    );
    chmod(&temp.0, 0o700);
    assert!(Client::connect(&socket).await.is_ok());
}

#[tokio::test]
async fn a_missing_socket_is_still_a_formation_that_is_not_running() {
    let temp = TempDir::new();
    for path in [temp.join("control.sock"), temp.join("missing/control.sock")] {
        match Client::connect(&path).await {
            Err(ClientError::NotRunning { .. }) => {}
            Err(err) => panic!("{err}"),
            Ok(_) => panic!("connected"),
        }
    }
}
