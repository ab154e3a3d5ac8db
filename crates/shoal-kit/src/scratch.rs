//! [`Scratch`]: a temporary directory for one request or job, under `SHOAL_SCRATCH` (which
//! shoal gives every instance) or else `TMPDIR`. It is removed when the value is dropped,
//! also while a panic unwinds. A process killed before that leaves a directory named with its
//! pid; the first `Scratch` of a later process removes those whose pid is no longer alive.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "shoal-kit-scratch-";

/// A private (mode 0700) directory that exists until this value is dropped.
///
/// ```no_run
/// let scratch = shoal_kit::Scratch::new()?;
/// std::fs::write(scratch.path().join("upload.bin"), b"...")?;
/// // ... hash it, store the result in the database ...
/// drop(scratch); // the directory and the file are gone
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory under `SHOAL_SCRATCH`, else the system temporary directory.
    pub fn new() -> io::Result<Scratch> {
        let base = std::env::var_os("SHOAL_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from);
        Scratch::new_in(&base)
    }

    /// Creates a fresh directory under `base` (created when missing).
    pub fn new_in(base: &Path) -> io::Result<Scratch> {
        static SWEEP: Once = Once::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(base)?;
        SWEEP.call_once(|| {
            // Best effort: a directory we cannot remove is left for the next start.
            let _ = Scratch::remove_stale(base);
        });
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(io::Error::other)?;
        let name = format!(
            "{PREFIX}{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let path = base.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes scratch directories under `base` left by processes that no longer run.
    /// Returns how many were removed. [`Scratch::new`] does this once per process.
    pub fn remove_stale(base: &Path) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(base)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            if !is_alive(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn is_alive(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
