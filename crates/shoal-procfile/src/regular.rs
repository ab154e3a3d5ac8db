//! Reading a file that a user or a scenario names, bounded: only a regular file of at most a
//! given size is read. `/dev/zero` would otherwise fill memory, `/dev/stdin` or a FIFO would wait
//! for ever, and a directory is never meant. The kind is looked up on the path first (following
//! symlinks), so that nothing but a regular file is even opened — opening a FIFO blocks until a
//! writer comes — and again on the opened file, with the size, so that a file swapped in
//! between is refused too. The read stops one byte past the bound, for a file that grows while
//! it is read. The Procfile and `.env` readers and `shoal verify`'s includes share this rule,
//! each with its own bound and messages.

use std::fs::{File, FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug)]
pub enum Refusal {
    /// It could not be opened or read.
    Io(io::Error),
    /// A device, FIFO, socket or directory: what it is, as in "it is a FIFO".
    NotRegular(&'static str),
    /// Larger than the bound: its size, or `None` when it grew past the bound while read.
    TooLarge(Option<u64>),
}

/// The contents of the regular file at `path`, of at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    check(&std::fs::metadata(path).map_err(Refusal::Io)?, limit)?;
    let file = File::open(path).map_err(Refusal::Io)?;
    let size = check(&file.metadata().map_err(Refusal::Io)?, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Refusal::TooLarge(None));
    }
    Ok(bytes)
}

/// The size of a regular file within `limit`, or why it is not one.
fn check(metadata: &Metadata, limit: u64) -> Result<u64, Refusal> {
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(Refusal::NotRegular(kind(file_type)));
    }
    if metadata.len() > limit {
        return Err(Refusal::TooLarge(Some(metadata.len())));
    }
    Ok(metadata.len())
}

fn kind(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The rule itself; the Procfile and `.env` readers and verify's includes test their messages.
#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `read` on another thread, so that a read that never ends (a FIFO without a
    /// writer, a device) fails the test instead of hanging it.
    fn read_within_deadline(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read(&owned, limit));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("reading `{}` did not end within 60 s", path.display()))
    }

    #[test]
    fn a_symlink_to_a_device_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("innocent.txt");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_within_deadline(&link, 1024),
            Err(Refusal::NotRegular("a character device"))
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening a FIFO for reading blocks until a writer opens it.
        assert!(matches!(
            read_within_deadline(&fifo, 1024),
            Err(Refusal::NotRegular("a FIFO"))
        ));
    }

    #[test]
    fn the_bound_is_inclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("five");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read(&path, 5).unwrap(), b"12345");
        assert!(matches!(read(&path, 4), Err(Refusal::TooLarge(Some(5)))));
        assert!(matches!(
            read(&dir.path().join("missing"), 5),
            Err(Refusal::Io(_))
        ));
    }
}
