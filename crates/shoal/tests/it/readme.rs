//! The README's claims as a checked list: its flag tables against `--help`, its exit codes, the
//! router's error codes and the environment of an instance, each read from README.md itself, so
//! that a sentence that stops being true fails a test named after its section.
//!
//! Claims that other modules already pin are listed here with the test that pins them, and the
//! list is checked: the test must exist and still assert the claim.

mod environment;
mod exit_codes;
mod flags;
mod metrics;
mod router_errors;

use std::path::{Path, PathBuf};

/// The workspace's root directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// The text under the heading line `heading` (exactly as written, e.g. ``### `shoal start` ``),
/// up to the next heading of the same or a higher level; subsections are included.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.bytes().take_while(|&b| b == b'#').count();
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        match start {
            None if trimmed == heading => start = Some(offset + line.len()),
            Some(begin) if heading_level(trimmed).is_some_and(|l| l <= level) => {
                return &text[begin..offset];
            }
            _ => {}
        }
        offset += line.len();
    }
    let begin = start.unwrap_or_else(|| panic!("README.md has no heading `{heading}`"));
    &text[begin..]
}

/// The part of a section before its first subsection.
fn lead(section: &str) -> &str {
    let mut offset = 0;
    for line in section.split_inclusive('\n') {
        if heading_level(line.trim_end()).is_some() {
            return &section[..offset];
        }
        offset += line.len();
    }
    section
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    (level > 0 && line[level..].starts_with(' ')).then_some(level)
}

/// A Markdown table: its header cells and rows of cells, trimmed.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Every table in `text`: runs of lines starting with `|` (indentation allowed). A blank line
/// ends a table, so a row separated from its table by one is not part of it.
fn tables(text: &str) -> Vec<Table> {
    let mut found = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().chain([""]) {
        let line = line.trim();
        if line.starts_with('|') {
            lines.push(line);
            continue;
        }
        if lines.len() >= 2 {
            let mut rows = lines.iter().map(|l| cells(l));
            let header = rows.next().unwrap();
            // The second line is the `|---|---|` separator.
            let rows = rows.skip(1).collect();
            found.push(Table { header, rows });
        }
        lines.clear();
    }
    found
}

fn cells(line: &str) -> Vec<String> {
    // `\|` is a pipe inside a cell.
    let line = line.replace("\\|", "\u{0}");
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().replace('\u{0}', "|"))
        .collect()
}

/// The `code spans` of a Markdown text, in order.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// A test elsewhere in the tree that pins a claim: `file` (from `crates/`) has `fn test(` and
/// its body contains `needle`. Returns what is wrong, if anything.
struct Pinned {
    file: &'static str,
    test: &'static str,
    needle: &'static str,
}

impl Pinned {
    fn problem(&self) -> Option<String> {
        let path = root().join("crates").join(self.file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Some(format!("`{}` is missing", self.file));
        };
        let Some(start) = text.find(&format!("fn {}(", self.test)) else {
            return Some(format!("`{}` has no test `{}`", self.file, self.test));
        };
        // rustfmt closes a top-level function with `}` alone on a line.
        let body = &text[start..];
        let body = &body[..body.find("\n}\n").map_or(body.len(), |end| end + 3)];
        (!body.contains(self.needle)).then(|| {
            format!(
                "`{}` in `{}` no longer contains `{}`",
                self.test, self.file, self.needle
            )
        })
    }
}

/// Panics with every problem, one per line, if there are any.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn tables_end_at_a_blank_line() {
    let text = "| flag | meaning |\n|---|---|\n| `-a` | one |\n\n| `-b` | two |\n";
    let found = tables(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].header, ["flag", "meaning"]);
    assert_eq!(found[0].rows, [["`-a`", "one"]]);
    assert_eq!(code_spans("`-f`, `-d` (or `X`)"), ["-f", "-d", "X"]);
}
