//! Reading an input file as UTF-8 text, line by line, with the errors a user can act on.
//!
//! A Procfile or `.env` file is read only when it is a regular file of at most
//! [`MAX_SOURCE_BYTES`] (see [`crate::regular`]): `-f /dev/zero` or `-e` naming a FIFO is
//! refused before it fills memory or blocks.

use std::io;
use std::path::{Path, PathBuf};

use crate::regular::Refusal;

/// The largest Procfile or `.env` file shoal reads: 16 MiB. Real ones are a few kilobytes, so a
/// larger file is certainly a wrong path, refused before it fills memory.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// Why an input file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A device, FIFO, socket or directory.
    #[error("cannot read `{}`: it is {kind}; expected a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than [`MAX_SOURCE_BYTES`].
    #[error(
        "cannot read `{}`: it is larger than {} MiB ({}); expected a file of at most {} MiB",
        path.display(),
        MAX_SOURCE_BYTES >> 20,
        size.map_or_else(|| "it grew while it was read".to_owned(), |s| format!("{s} bytes")),
        MAX_SOURCE_BYTES >> 20
    )]
    TooLarge { path: PathBuf, size: Option<u64> },
    /// The file is not UTF-8 text.
    #[error("`{}`:{line}: not valid UTF-8 (byte {byte:#04x} at column {column}); expected UTF-8 text", path.display())]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
        byte: u8,
    },
}

/// Reads the regular file at `path`, of at most [`MAX_SOURCE_BYTES`], as UTF-8, dropping a
/// leading byte-order mark.
pub(crate) fn read_text(path: &Path) -> Result<String, SourceError> {
    decode(path, read_at_most(path, MAX_SOURCE_BYTES)?)
}

fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    let path_buf = path.to_path_buf();
    crate::regular::read(path, limit).map_err(|refusal| match refusal {
        Refusal::Io(source) => SourceError::Io {
            path: path_buf,
            source,
        },
        Refusal::NotRegular(kind) => SourceError::NotRegular {
            path: path_buf,
            kind,
        },
        Refusal::TooLarge(size) => SourceError::TooLarge {
            path: path_buf,
            size,
        },
    })
}

/// Decodes file contents as UTF-8, dropping a leading byte-order mark, and names the line and
/// column of the first invalid byte otherwise.
pub(crate) fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<String, SourceError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let at = err.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        SourceError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column: at - line_start + 1,
            byte: bytes[at],
        }
    })
}

/// Splits text into lines numbered from 1, accepting `\n` and `\r\n` endings.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(i, line)| (i + 1, line))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Runs `read_text` on another thread, so that a read that never ends fails the test
    /// instead of hanging it; the deadline is generous, a refusal takes microseconds.
    fn read_within_deadline(path: &Path) -> Result<String, SourceError> {
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read_text(&owned));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("reading `{}` did not end within 60 s", path.display()))
    }

    #[test]
    fn a_regular_file_is_read_without_its_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Procfile");
        std::fs::write(&path, "\u{feff}web: serve\n").unwrap();
        assert_eq!(read_text(&path).unwrap(), "web: serve\n");
    }

    #[test]
    fn devices_are_refused_before_anything_is_read() {
        // `/dev/zero` never ends: read as before, `shoal check -f /dev/zero` filled memory.
        let err = read_within_deadline(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read `/dev/zero`: it is a character device; expected a regular file"
        );
    }

    #[test]
    fn a_directory_is_refused_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_text(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(": it is a directory; expected a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_the_bound_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        // Sparse: no disk space and no time, and nothing is read.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_SOURCE_BYTES + 1)
            .unwrap();
        let err = read_within_deadline(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read `{}`: it is larger than 16 MiB (16777217 bytes); expected a file of at most 16 MiB",
                path.display()
            )
        );
        let small = dir.path().join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_at_most(&small, 5).unwrap(), b"12345");
        assert!(matches!(
            read_at_most(&small, 4),
            Err(SourceError::TooLarge { size: Some(5), .. })
        ));
    }
}
