//! The `.env` grammar.
//!
//! - `KEY=VALUE` per line, with an optional `export ` prefix and optional spaces around `=`.
//!   Keys match `[A-Za-z_][A-Za-z0-9_]*`.
//! - Unquoted values end at the end of the line or at ` #` (an inline comment) and are trimmed.
//! - `'single quotes'` keep everything literally. `"double quotes"` understand `\n`, `\r`, `\t`,
//!   `\"`, `\\` and `\$`; other backslashes are kept. Both kinds of quotes may span lines.
//! - Blank lines and lines starting with `#` are ignored. A key set twice keeps the later value.
//! - `$VAR` and `${VAR}` are **not** expanded, as foreman and Heroku do not expand them: a value
//!   means the same under every tool, and a password containing `$` arrives intact. A command in
//!   the Procfile runs through `sh -c`, which expands variables there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::source::{self, SourceError};

/// One variable from a `.env` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub key: String,
    pub value: String,
    /// 1-based line where the assignment starts.
    pub line: usize,
}

/// Why a `.env` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    /// The file could not be read as text.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A line that is not an assignment, a comment or blank.
    #[error("`{}`:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads and parses the `.env` file at `path`.
pub fn read(path: &Path) -> Result<Vec<Var>, DotenvError> {
    let text = source::read_text(path)?;
    parse(path, &text)
}

/// Parses `.env` text; `path` is only used in messages. Later assignments of a key replace
/// earlier ones in place.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Var>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars: Vec<Var> = Vec::new();
    // Where each key is in `vars`: a long (generated) file stays linear.
    let mut positions: HashMap<String, usize> = HashMap::new();
    let mut lines = source::lines(text).peekable();
    let syntax = |line, message: String| DotenvError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };

    while let Some((line_no, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let assignment = trimmed
            .strip_prefix("export")
            // `export = 1` sets a variable named `export`.
            .filter(|rest| rest.starts_with([' ', '\t']) && !rest.trim_start().starts_with('='))
            .map_or(trimmed, str::trim_start);
        let Some((key, rest)) = assignment.split_once('=') else {
            return Err(syntax(
                line_no,
                format!("expected `KEY=VALUE`, found `{}`", shorten(trimmed)),
            ));
        };
        let key = key.trim_end();
        if !is_valid_key(key) {
            return Err(syntax(
                line_no,
                format!(
                    "`{}` is not a valid variable name; expected letters, digits and `_`, not starting with a digit",
                    shorten(key)
                ),
            ));
        }
        let raw = rest;
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (value, after) = quoted(&rest[1..], quote, &mut lines).ok_or_else(|| {
                    syntax(
                        line_no,
                        format!(
                            "the {quote} quote that opens the value of `{key}` is never closed"
                        ),
                    )
                })?;
                let after = after.trim_start();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(syntax(
                        line_no,
                        format!(
                            "unexpected `{}` after the closing quote of `{key}`; expected the end of the line or a `#` comment",
                            shorten(after)
                        ),
                    ));
                }
                value
            }
            _ => unquoted(raw),
        };
        let var = Var {
            key: key.to_owned(),
            value,
            line: line_no,
        };
        match positions.get(&var.key) {
            Some(&at) => vars[at] = var,
            None => {
                positions.insert(var.key.clone(), vars.len());
                vars.push(var);
            }
        }
    }
    Ok(vars)
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An unquoted value (everything after `=`): up to an inline comment — a `#` after a space —
/// and trimmed. `A= # note` is empty; `A=#1` is `#1`.
fn unquoted(raw: &str) -> String {
    let end = raw
        .char_indices()
        .find(|&(i, c)| c == '#' && raw[..i].ends_with([' ', '\t']))
        .map_or(raw.len(), |(i, _)| i);
    raw[..end].trim().to_owned()
}

/// Reads a quoted value starting just after the opening quote, pulling further lines while the
/// quote is open. Returns the value and the text after the closing quote, or `None` when the
/// input ends first.
fn quoted<'a>(
    first: &'a str,
    quote: char,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut current = first;
    loop {
        let mut chars = current.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                return Some((value, &current[i + 1..]));
            }
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped @ ('"' | '\\' | '$'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        let (_, next) = lines.next()?;
        value.push('\n');
        current = next;
    }
}

/// Keeps messages readable when a line is long.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(Path::new(".env"), text)
            .unwrap()
            .into_iter()
            .map(|v| (v.key, v.value))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(text: &str) -> String {
        parse(Path::new(".env"), text).unwrap_err().to_string()
    }

    #[test]
    fn plain_values_comments_and_export() {
        let got = vars(
            "# a comment\n\nA=1\nexport B = two words  # inline\nC=x#not-a-comment\nD=\nexported=3\nE= # only a comment\nF=#1\n",
        );
        assert_eq!(
            got,
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "x#not-a-comment"),
                ("D", ""),
                ("exported", "3"),
                ("E", ""),
                ("F", "#1"),
            ])
        );
    }

    #[test]
    fn quotes_escapes_and_multiline() {
        let got = vars(
            "S='a $B \\n # kept'\nD=\"tab\\there \\\"q\\\" \\$HOME\"\nM=\"line one\nline two\" # done\nN=after\n",
        );
        assert_eq!(
            got,
            pairs(&[
                ("S", "a $B \\n # kept"),
                ("D", "tab\there \"q\" $HOME"),
                ("M", "line one\nline two"),
                ("N", "after"),
            ])
        );
    }

    #[test]
    fn variables_are_not_expanded() {
        assert_eq!(
            vars("A=1\nB=$A ${A}\n"),
            pairs(&[("A", "1"), ("B", "$A ${A}")])
        );
    }

    #[test]
    fn export_is_also_a_key() {
        // Found while writing the property tests: the prefix was taken for `export ` and left `= 1`.
        assert_eq!(
            vars("export = 1\nexport export = 2\nexport\t= 3\n"),
            pairs(&[("export", "3")])
        );
    }

    #[test]
    fn later_assignment_wins_in_place() {
        assert_eq!(vars("A=1\nB=2\nA=3\n"), pairs(&[("A", "3"), ("B", "2")]));
    }

    #[test]
    fn crlf_is_accepted() {
        assert_eq!(
            vars("A=1\r\nB=\"x\r\ny\"\r\n"),
            pairs(&[("A", "1"), ("B", "x\ny")])
        );
    }

    #[test]
    fn errors_name_line_and_expectation() {
        assert_eq!(
            error("A=1\njust words\n"),
            "`.env`:2: expected `KEY=VALUE`, found `just words`"
        );
        assert_eq!(
            error("1A=x\n"),
            "`.env`:1: `1A` is not a valid variable name; expected letters, digits and `_`, not starting with a digit"
        );
        assert_eq!(
            error("A=1\nB=\"open\nstill open\n"),
            "`.env`:2: the \" quote that opens the value of `B` is never closed"
        );
        assert_eq!(
            error("A='x' y\n"),
            "`.env`:1: unexpected `y` after the closing quote of `A`; expected the end of the line or a `#` comment"
        );
    }
}
