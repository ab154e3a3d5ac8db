//! The Procfile grammar, as foreman and Heroku read it.
//!
//! An entry is a line `name: command` where `name` matches `[A-Za-z0-9_-]+` and starts the line.
//! Every other line is not an entry, exactly as foreman treats it; shoal says so with a warning
//! for each line that is neither blank nor a comment (`#` or `//`), with a suggestion where the
//! line looks like a mistyped entry. A name defined twice keeps its first position and takes the
//! later command, with a warning naming both lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Warning;
use crate::source::{self, SourceError};

/// One `name: command` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The process type, e.g. `web`.
    pub name: String,
    /// The command, run through `sh -c`.
    pub command: String,
    /// 1-based line number of the definition in force.
    pub line: usize,
}

/// A parsed Procfile: its entries in file order, and warnings about the lines that are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfile {
    /// Where the Procfile was read from.
    pub path: PathBuf,
    /// Entries in order of first definition.
    pub entries: Vec<Entry>,
    /// Lines that were skipped or overridden.
    pub warnings: Vec<Warning>,
}

/// Why a Procfile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcfileError {
    /// The file could not be read as text.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An entry has nothing after its colon.
    #[error("`{}`:{line}: process type `{name}` has an empty command; expected `{name}: COMMAND`", path.display())]
    EmptyCommand {
        path: PathBuf,
        line: usize,
        name: String,
    },
    /// Not a single line is an entry.
    #[error("`{}` defines no process types; expected lines like `web: bundle exec puma -p $PORT`", path.display())]
    NoEntries {
        path: PathBuf,
        /// Why each non-blank line was not an entry.
        warnings: Vec<Warning>,
    },
}

impl Procfile {
    /// Reads and parses the Procfile at `path`.
    pub fn read(path: &Path) -> Result<Self, ProcfileError> {
        let text = source::read_text(path)?;
        Self::parse(path, &text)
    }

    /// Parses Procfile text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ProcfileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut entries: Vec<Entry> = Vec::new();
        // Where each name is in `entries`: a long (generated) Procfile stays linear.
        let mut positions: HashMap<&str, usize> = HashMap::new();
        let mut warnings = Vec::new();
        let warn = |line, message: String, suggestion: Option<String>| Warning {
            file: path.to_path_buf(),
            line,
            message,
            suggestion,
        };

        for (line_no, line) in source::lines(text) {
            match classify(line) {
                Line::Ignored => {}
                Line::NotAnEntry {
                    message,
                    suggestion,
                } => {
                    warnings.push(warn(line_no, message, suggestion));
                }
                Line::Entry { name, command } => {
                    if command.is_empty() {
                        return Err(ProcfileError::EmptyCommand {
                            path: path.to_path_buf(),
                            line: line_no,
                            name: name.to_owned(),
                        });
                    }
                    let entry = Entry {
                        name: name.to_owned(),
                        command: command.to_owned(),
                        line: line_no,
                    };
                    match positions.get(name) {
                        Some(&at) => {
                            let earlier = &mut entries[at];
                            warnings.push(warn(
                                line_no,
                                format!(
                                    "process type `{name}` is defined again (first on line {}); the later command is used",
                                    earlier.line
                                ),
                                None,
                            ));
                            *earlier = entry;
                        }
                        None => {
                            positions.insert(name, entries.len());
                            entries.push(entry);
                        }
                    }
                }
            }
        }

        if entries.is_empty() {
            return Err(ProcfileError::NoEntries {
                path: path.to_path_buf(),
                warnings,
            });
        }
        Ok(Procfile {
            path: path.to_path_buf(),
            entries,
            warnings,
        })
    }

    /// The entry named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

enum Line<'a> {
    Ignored,
    Entry {
        name: &'a str,
        command: &'a str,
    },
    NotAnEntry {
        message: String,
        suggestion: Option<String>,
    },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn classify(line: &str) -> Line<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
        return Line::Ignored;
    }

    let name_len = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    if name_len > 0 && line[name_len..].starts_with(':') {
        let command = line[name_len + 1..].trim();
        return Line::Entry {
            name: &line[..name_len],
            command,
        };
    }

    // Not an entry. Say why, and guess the entry the author meant.
    let not_entry = |message: &str, suggestion: Option<String>| Line::NotAnEntry {
        message: format!("not a process entry, ignored: {message}"),
        suggestion,
    };
    let Some((head, command)) = trimmed.split_once(':') else {
        return not_entry("expected `name: command`", None);
    };
    let head = head.trim();
    let command = command.trim();
    let suggest = |name: &str| (!command.is_empty()).then(|| format!("{name}: {command}"));
    if line.starts_with(char::is_whitespace) && !head.is_empty() && head.chars().all(is_name_char) {
        not_entry(
            "entries must start at the beginning of the line",
            suggest(head),
        )
    } else if !head.is_empty() && head.chars().all(is_name_char) {
        not_entry(
            "no space is allowed between the name and the colon",
            suggest(head),
        )
    } else if !head.is_empty() && !head.contains(char::is_whitespace) {
        let fixed: String = head
            .chars()
            .map(|c| if is_name_char(c) { c } else { '-' })
            .collect();
        not_entry(
            "process type names may contain only letters, digits, `_` and `-`",
            suggest(&fixed),
        )
    } else {
        not_entry("expected `name: command`", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Procfile, ProcfileError> {
        Procfile::parse(Path::new("Procfile"), text)
    }

    fn names(p: &Procfile) -> Vec<(&str, &str, usize)> {
        p.entries
            .iter()
            .map(|e| (e.name.as_str(), e.command.as_str(), e.line))
            .collect()
    }

    #[test]
    fn reads_entries_in_order() {
        let p = parse("web: bundle exec puma -p $PORT\nworker:rake jobs:work\n").unwrap();
        assert_eq!(
            names(&p),
            [
                ("web", "bundle exec puma -p $PORT", 1),
                ("worker", "rake jobs:work", 2)
            ]
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn accepts_crlf_bom_and_comments_silently() {
        let p = parse("\u{feff}# comment\r\n// also a comment\r\n\r\nweb: run\r\n").unwrap();
        assert_eq!(names(&p), [("web", "run", 4)]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn space_before_colon_is_a_warning_with_suggestion() {
        let p = parse("web : ./server\nworker: ./work\n").unwrap();
        assert_eq!(names(&p), [("worker", "./work", 2)]);
        let w = &p.warnings[0];
        assert_eq!(w.line, 1);
        assert_eq!(w.suggestion.as_deref(), Some("web: ./server"));
        assert_eq!(
            w.to_string(),
            "Procfile:1: not a process entry, ignored: no space is allowed between the name and the colon (did you mean `web: ./server`?)"
        );
    }

    #[test]
    fn indented_and_stray_lines_are_warnings() {
        let p = parse("web: a\n  worker: b\nhello world\nweb.api: c\n").unwrap();
        assert_eq!(names(&p), [("web", "a", 1)]);
        let got: Vec<_> = p
            .warnings
            .iter()
            .map(|w| (w.line, w.suggestion.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(2, Some("worker: b")), (3, None), (4, Some("web-api: c"))]
        );
    }

    #[test]
    fn duplicate_keeps_first_position_and_last_command() {
        let p = parse("web: one\nworker: w\nweb: two\n").unwrap();
        assert_eq!(names(&p), [("web", "two", 3), ("worker", "w", 2)]);
        assert!(p.warnings[0].message.contains("first on line 1"));
        assert_eq!(p.warnings[0].line, 3);
    }

    #[test]
    fn empty_command_is_an_error() {
        let err = parse("web: a\nworker:   \n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`Procfile`:2: process type `worker` has an empty command; expected `worker: COMMAND`"
        );
    }

    #[test]
    fn no_entries_is_an_error_that_keeps_the_reasons() {
        let err = parse("# nothing\nweb : x\n").unwrap_err();
        let ProcfileError::NoEntries { warnings, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(warnings.len(), 1);
        assert!(parse("").is_err());
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let err =
            source::decode(Path::new("Procfile"), b"web: a\nworker: b\xff\n".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`Procfile`:2: not valid UTF-8 (byte 0xff at column 10); expected UTF-8 text"
        );
    }
}
