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
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..read]);
        let complete = match pending.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => last_newline + 1,
            None if pending.len() >= MAX_LINE => {
                pending.push(b'\n');
                pending.len()
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
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        for piece in body.chunks(MAX_LINE) {
            out.extend_from_slice(piece);
            out.push(b'\n');
        }
    }
    out
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
    async fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let lines = run(&long).await;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], format!("x      | {}", "x".repeat(5)));
    }
}
