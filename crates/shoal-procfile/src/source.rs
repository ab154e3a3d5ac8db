//! Reading an input file as UTF-8 text, line by line, with the errors a user can act on.

use std::path::{Path, PathBuf};

/// Why an input file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("`{}`:{line}: not valid UTF-8 (byte {byte:#04x} at column {column}); expected UTF-8 text", path.display())]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
        byte: u8,
    },
}

/// Reads `path` as UTF-8, dropping a leading byte-order mark.
pub(crate) fn read_text(path: &Path) -> Result<String, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, bytes)
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
