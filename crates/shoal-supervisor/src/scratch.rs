//! The formation's runtime directory and the scratch directory of each instance.
//!
//! A formation keeps its runtime files under `${TMPDIR:-/tmp}/shoal-UID/NAME-HASH/`, where
//! `NAME` is the app directory's name and `HASH` is derived from the Procfile's absolute path:
//! the same Procfile always gets the same directory, and two Procfiles never share one. The
//! per-user directory must be owned by the user with mode 0700, so another user cannot plant
//! files or links in it.
//!
//! Each instance gets `scratch/TYPE.N` inside it, as `SHOAL_SCRATCH` and `TMPDIR`. It is made
//! empty before every start of the instance and emptied again when the instance exits, so
//! nothing on local disk survives a restart — as on a platform.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use shoal_procfile::InstanceName;

/// Why a runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("cannot create `{}`", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to use `{}`: {reason}; remove it or set `TMPDIR` to another directory", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("another shoal{} is already running this formation; stop it first", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { pid: Option<u32> },
    #[error("cannot lock `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Held while a formation runs: no second `shoal start` of the same Procfile can start, and no
/// other shoal removes the runtime directory.
#[derive(Debug)]
pub struct FormationLock {
    _lock: Flock<File>,
}

/// Held while `shoal run` uses a scratch directory in the runtime directory.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<File>,
}

/// Runtime directories younger than this are never swept: one may be in the middle of being
/// set up by a shoal that has not taken its lock yet.
const SWEEP_AFTER: Duration = Duration::from_secs(60);

/// Where one formation keeps its runtime files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    root: PathBuf,
}

impl RuntimeDir {
    /// The runtime directory of the formation of `procfile` (an absolute path), under the
    /// system's temporary directory. Nothing is created yet.
    pub fn for_procfile(procfile: &Path) -> Self {
        Self::under(&std::env::temp_dir(), procfile)
    }

    /// The runtime directory of `procfile` under `base`.
    pub fn under(base: &Path, procfile: &Path) -> Self {
        let uid = nix::unistd::getuid();
        let name: String = procfile
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let hash = fnv1a(procfile.as_os_str().as_encoded_bytes());
        RuntimeDir {
            root: base
                .join(format!("shoal-{uid}"))
                .join(format!("{name}-{:08x}", hash as u32)),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (and the private per-user directory above it).
    pub fn create(&self) -> Result<(), RuntimeDirError> {
        let user_dir = self
            .root
            .parent()
            .expect("the runtime directory has a parent");
        create_private(user_dir)?;
        check_private(user_dir)?;
        create_private(&self.root)?;
        create_private(&self.root.join("scratch"))
    }

    /// Takes the formation lock, or says which shoal holds it.
    pub fn lock_formation(&self) -> Result<FormationLock, RuntimeDirError> {
        let path = self.root.join("formation.lock");
        let mut file = open_lock_file(&path)?;
        match Flock::lock(
            file.try_clone()
                .map_err(|source| lock_error(&path, source))?,
            FlockArg::LockExclusiveNonblock,
        ) {
            Ok(lock) => {
                let _ = file.set_len(0);
                let _ = write!(file, "{}", std::process::id());
                Ok(FormationLock { _lock: lock })
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Err(RuntimeDirError::Busy {
                    pid: text.trim().parse().ok(),
                })
            }
            Err((_, errno)) => Err(lock_error(&path, errno.into())),
        }
    }

    /// Takes a shared lock for `shoal run` (several may run at once, also beside a formation).
    pub fn lock_run(&self) -> Result<RunLock, RuntimeDirError> {
        let path = self.root.join("run.lock");
        let file = open_lock_file(&path)?;
        Flock::lock(file, FlockArg::LockShared)
            .map(|lock| RunLock { _lock: lock })
            .map_err(|(_, errno)| lock_error(&path, errno.into()))
    }

    /// Removes the runtime directories of other formations that nobody uses any more (left by
    /// a shoal that was killed): those whose locks are free and that are over a minute old.
    pub fn sweep_stale(&self) {
        let Some(user_dir) = self.root.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(user_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir == self.root {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > SWEEP_AFTER);
            if !old {
                continue;
            }
            // Both locks free means no formation and no `shoal run` uses it; hold them while
            // removing so that neither can start using it meanwhile.
            let held: Option<Vec<Flock<File>>> = ["formation.lock", "run.lock"]
                .iter()
                .filter_map(|name| {
                    File::options()
                        .read(true)
                        .write(true)
                        .open(dir.join(name))
                        .ok()
                })
                .map(|file| Flock::lock(file, FlockArg::LockExclusiveNonblock).ok())
                .collect();
            if held.is_some() {
                let _ = remove_all(&dir);
            }
        }
    }

    /// The formation's control socket: `control.sock` in the runtime directory, or, when that
    /// path is too long for a unix socket (108 bytes), `/tmp/shoal-UID-sockets/HASH.sock`.
    /// The server makes the socket's directory with [`private_dir`] before binding, so the
    /// fallback sits in a directory only its user can enter, never in `/tmp` itself where
    /// another user could take the name first.
    pub fn control_socket(&self) -> PathBuf {
        const MAX: usize = 100;
        let path = self.root.join("control.sock");
        if path.as_os_str().len() <= MAX {
            return path;
        }
        let hash = fnv1a(self.root.as_os_str().as_encoded_bytes());
        PathBuf::from(format!(
            "/tmp/shoal-{}-sockets/{hash:016x}.sock",
            nix::unistd::getuid()
        ))
    }

    /// Where instance `name` keeps its scratch files.
    pub fn scratch(&self, name: &InstanceName) -> PathBuf {
        self.root.join("scratch").join(name.to_string())
    }

    /// Makes a fresh, empty scratch directory for `name`, removing anything an earlier run
    /// left there.
    pub fn fresh_scratch(&self, name: &InstanceName) -> Result<PathBuf, RuntimeDirError> {
        let path = self.scratch(name);
        remove_all(&path).map_err(|source| RuntimeDirError::Create {
            path: path.clone(),
            source,
        })?;
        create_private(&path)?;
        Ok(path)
    }

    /// Removes `name`'s scratch directory and everything in it.
    pub fn remove_scratch(&self, name: &InstanceName) -> io::Result<()> {
        remove_all(&self.scratch(name))
    }

    /// Removes what is left of the runtime directory once it is empty: each instance removes
    /// its own scratch directory when it exits, and a `shoal run` of the same app may still be
    /// using its own. A directory that still holds lock files stays, and a later `shoal start`
    /// sweeps it once nobody holds them.
    pub fn remove_unused(&self) {
        let _ = std::fs::remove_dir(self.root.join("scratch"));
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn open_lock_file(path: &Path) -> Result<File, RuntimeDirError> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| lock_error(path, source))
}

fn lock_error(path: &Path, source: io::Error) -> RuntimeDirError {
    RuntimeDirError::Lock {
        path: path.to_path_buf(),
        source,
    }
}

fn create_private(path: &Path) -> Result<(), RuntimeDirError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(RuntimeDirError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes `path` (its parent must exist) a directory only this user can use, or checks that it
/// already is one: a real directory, not a link, owned by this user, mode 0700. Anything else
/// is refused, since another user may have put it there first.
pub fn private_dir(path: &Path) -> Result<(), RuntimeDirError> {
    create_private(path)?;
    check_private(path)
}

/// The user id that owns the files this process creates, and that `SO_PEERCRED` reports for
/// its connections.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn check_private(path: &Path) -> Result<(), RuntimeDirError> {
    let unsafe_dir = |reason: &str| RuntimeDirError::Unsafe {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let meta = std::fs::symlink_metadata(path).map_err(|source| RuntimeDirError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symbolic link"));
    }
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("it is not a directory"));
    }
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(unsafe_dir("it belongs to another user"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_dir("other users can access it (expected mode 0700)"));
    }
    Ok(())
}

/// Removes `path` and everything below it, also where an app took away its own write
/// permission; a path that does not exist is not an error.
pub fn remove_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            match std::fs::remove_dir_all(path) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
        Err(err) => Err(err),
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and processes, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_scratch_is_empty_and_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = RuntimeDir::under(base.path(), Path::new("/srv/my app/Procfile"));
        assert!(dir.path().ends_with(format!(
            "shoal-{}/my_app-{:08x}",
            nix::unistd::getuid(),
            fnv1a(b"/srv/my app/Procfile") as u32
        )));
        dir.create().unwrap();
        let name = InstanceName::new("web", 1);
        let scratch = dir.fresh_scratch(&name).unwrap();
        std::fs::create_dir(scratch.join("locked")).unwrap();
        std::fs::write(scratch.join("locked/file"), "x").unwrap();
        std::fs::set_permissions(
            scratch.join("locked"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        let again = dir.fresh_scratch(&name).unwrap();
        assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
        assert_eq!(std::fs::metadata(&again).unwrap().mode() & 0o777, 0o700);
        dir.remove_scratch(&name).unwrap();
        dir.remove_unused();
        assert!(!dir.path().exists());
    }

    #[test]
    fn one_formation_at_a_time_and_stale_directories_are_swept() {
        let base = tempfile::tempdir().unwrap();
        let dir = RuntimeDir::under(base.path(), Path::new("/srv/app/Procfile"));
        dir.create().unwrap();
        let lock = dir.lock_formation().unwrap();
        let err = dir.lock_formation().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "another shoal (pid {}) is already running this formation; stop it first",
                std::process::id()
            )
        );
        let _run = dir.lock_run().unwrap();
        drop(lock);
        let again = dir.lock_formation();
        assert!(again.is_ok());
        drop(again);

        let other = RuntimeDir::under(base.path(), Path::new("/srv/other/Procfile"));
        other.create().unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let age = |d: &RuntimeDir| File::open(d.path()).unwrap().set_modified(old).unwrap();
        age(&other);
        age(&dir);
        // `dir` is in use by a `shoal run`: kept. `other` is stale: swept.
        let third = RuntimeDir::under(base.path(), Path::new("/srv/third/Procfile"));
        third.create().unwrap();
        third.sweep_stale();
        assert!(!other.path().exists());
        assert!(dir.path().exists());
    }

    #[test]
    fn control_sockets_stay_under_the_length_limit() {
        let short = RuntimeDir::under(Path::new("/tmp"), Path::new("/srv/app/Procfile"));
        assert_eq!(short.control_socket(), short.path().join("control.sock"));
        let deep = Path::new("/tmp").join("d".repeat(120));
        let long = RuntimeDir::under(&deep, Path::new("/srv/app/Procfile"));
        let socket = long.control_socket();
        assert!(socket.as_os_str().len() < 108, "{}", socket.display());
        assert_ne!(socket, short.control_socket());
        // Never in `/tmp` itself, where another user could take the name first.
        assert_eq!(
            socket.parent().unwrap(),
            Path::new(&format!("/tmp/shoal-{}-sockets", nix::unistd::getuid()))
        );
    }

    #[test]
    fn a_private_directory_is_made_private_or_refused() {
        let base = tempfile::tempdir().unwrap();
        let fresh = base.path().join("fresh");
        private_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        private_dir(&fresh).unwrap();

        let refused = |path: &Path| private_dir(path).unwrap_err().to_string();
        let file = base.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(refused(&file).contains("it is not a directory"));
        // A link to a directory of our own is refused too: whoever made it can point it
        // elsewhere later.
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(refused(&link).contains("it is a symbolic link"));
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(refused(&open).contains("other users can access it"));
        if nix::unistd::geteuid().is_root() {
            let foreign = base.path().join("foreign");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&foreign)
                .unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            let err = refused(&foreign);
            assert!(err.contains("it belongs to another user"), "{err}");
            assert!(err.starts_with("refusing to use `"), "{err}");
        }
    }

    #[test]
    fn refuses_a_shared_user_directory() {
        let base = tempfile::tempdir().unwrap();
        let dir = RuntimeDir::under(base.path(), Path::new("/srv/app/Procfile"));
        let user_dir = dir.path().parent().unwrap();
        std::fs::create_dir(user_dir).unwrap();
        std::fs::set_permissions(user_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = dir.create().unwrap_err().to_string();
        assert!(err.contains("other users can access it"), "{err}");
    }
}
