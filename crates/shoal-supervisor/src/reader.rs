//! Reads a child's stdout or stderr and hands complete lines to the log.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::output::{Log, Source};

/// Longest line passed on whole; a longer one is cut into pieces of this size, so a child that
/// never writes a newline cannot make shoal buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// Reads `pipe` until end of file, sending every complete line to `log` as soon as it is read
/// (all complete lines of one read together), and the unterminated last line at the end.
pub(crate) async fn pump(mut pipe: impl AsyncRead + Unpin, source: Arc<Source>, log: Log) {
    let mut pending: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..read]);
        let complete = match pending.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => last_newline + 1,
            None if pending.len() > MAX_LINE => {
                // A line too long to keep: pass on its beginning, cut between characters.
                let cut = char_boundary(&pending, MAX_LINE);
                let rest = pending.split_off(cut);
                let mut piece = std::mem::replace(&mut pending, rest);
                piece.push(b'\n');
                log.lines(&source, piece).await;
                continue;
            }
            None => continue,
        };
        let rest = pending.split_off(complete);
        let lines = std::mem::replace(&mut pending, rest);
        log.lines(&source, split_long_lines(lines)).await;
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        log.lines(&source, split_long_lines(pending)).await;
    }
}

/// Breaks lines longer than [`MAX_LINE`] into several.
fn split_long_lines(lines: Vec<u8>) -> Vec<u8> {
    if lines.len() <= MAX_LINE || lines.split(|&b| b == b'\n').all(|l| l.len() < MAX_LINE) {
        return lines;
    }
    let mut out = Vec::with_capacity(lines.len() + lines.len() / MAX_LINE + 1);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let mut body = line.strip_suffix(b"\n").unwrap_or(line);
        while !body.is_empty() {
            let cut = char_boundary(body, MAX_LINE);
            out.extend_from_slice(&body[..cut]);
            out.push(b'\n');
            body = &body[cut..];
        }
    }
    out
}

/// The largest cut of at most `max` bytes that does not split a UTF-8 character (any cut, when
/// the bytes are not UTF-8 there).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&cut| cut > 0 && !is_continuation(bytes[cut]))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{MemoryOut, Style};

    async fn run(input: &[u8]) -> Vec<String> {
        let out = MemoryOut::default();
        let (log, writer) = Log::start(Box::new(out.clone()), Style { color: false }, 1);
        let source = log.source("x".into(), 0);
        pump(input, source, log).await;
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| l[9..].to_owned()).collect()
    }

    #[tokio::test]
    async fn complete_and_partial_lines() {
        assert_eq!(
            run(b"a\nb\nlast").await,
            ["x      | a", "x      | b", "x      | last"]
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_between_characters() {
        let mut long = vec![b'x'; MAX_LINE - 1];
        long.extend_from_slice("é and more".as_bytes());
        let lines = run(&long).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], "x      | é and more");
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let lines = run(&long).await;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], format!("x      | {}", "x".repeat(5)));
    }
}
