//! Reading the files a scenario's bodies include (`< ./file`, `<@ ./file`), for the checks
//! before a run and for every replay.
//!
//! A scenario may name any path, so an include is read only when it is a regular file of at
//! most [`MAX_INCLUDE_BYTES`] (the rule of `shoal_procfile::regular`): `< /dev/zero` or
//! `< /dev/stdin` would otherwise grow a body without end or wait for ever.

use std::io;
use std::path::{Path, PathBuf};

use shoal_procfile::regular::Refusal;

/// The largest file a scenario may include: 256 MiB, far above any request body a scenario
/// sends, and small enough that a mistaken path fails fast instead of filling memory.
pub const MAX_INCLUDE_BYTES: u64 = 256 * 1024 * 1024;

/// Why an included file is not sent.
#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    /// The file cannot be opened or read. The cause is part of the message because the
    /// message ends up on one scenario line (`file:line: …`).
    #[error("cannot read the included file `{}`: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A device, FIFO, socket or directory.
    #[error("the included file `{}` is {kind}; expected a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than [`MAX_INCLUDE_BYTES`].
    #[error(
        "the included file `{}` is larger than {} MiB ({}); expected a file of at most {} MiB",
        path.display(),
        MAX_INCLUDE_BYTES >> 20,
        size.map_or_else(|| "it grew while it was read".to_owned(), |s| format!("{s} bytes")),
        MAX_INCLUDE_BYTES >> 20
    )]
    TooLarge { path: PathBuf, size: Option<u64> },
}

/// The contents of the regular file at `path`, of at most [`MAX_INCLUDE_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, IncludeError> {
    read_at_most(path, MAX_INCLUDE_BYTES)
}

fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, IncludeError> {
    let path_buf = path.to_path_buf();
    shoal_procfile::regular::read(path, limit).map_err(|refusal| match refusal {
        Refusal::Io(source) => IncludeError::Read {
            path: path_buf,
            source,
        },
        Refusal::NotRegular(kind) => IncludeError::NotRegular {
            path: path_buf,
            kind,
        },
        Refusal::TooLarge(size) => IncludeError::TooLarge {
            path: path_buf,
            size,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Runs `read` on another thread, so that a read that never ends fails the test instead
    /// of hanging it; the deadline is generous, a refusal takes microseconds.
    fn read_within_deadline(path: &Path) -> Result<Vec<u8>, IncludeError> {
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read(&path));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("reading the include did not end within 60 s"))
    }

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.json");
        std::fs::write(&path, b"{\"a\": 1}").unwrap();
        assert_eq!(read(&path).unwrap(), b"{\"a\": 1}");
    }

    #[test]
    fn devices_are_refused_before_anything_is_read() {
        // `/dev/zero` never ends: read as before, it filled memory until the run died.
        let err = read_within_deadline(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the included file `/dev/zero` is a character device; expected a regular file"
        );
    }

    #[test]
    fn a_directory_is_refused_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a directory; expected a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_the_bound_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.bin");
        // Sparse: no disk space and no time, and nothing is read.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_INCLUDE_BYTES + 1)
            .unwrap();
        let err = read(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the included file `{}` is larger than 256 MiB (268435457 bytes); expected a file of at most 256 MiB",
                path.display()
            )
        );
        // At the bound exactly is fine (the lower limit keeps the test from reading 256 MiB).
        let small = dir.path().join("small.bin");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_at_most(&small, 5).unwrap(), b"12345");
        assert!(matches!(
            read_at_most(&small, 4),
            Err(IncludeError::TooLarge { size: Some(5), .. })
        ));
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_cause() {
        let err = read(Path::new("./surely-missing-file.txt")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the included file `./surely-missing-file.txt`: "),
            "{err}"
        );
    }
}
