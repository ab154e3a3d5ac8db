//! Property tests: no input makes the parsers panic, what they accept obeys the grammar, what
//! is written by the grammar parses back to what was written, and every error names a line
//! of the input.
//!
//! Inputs are bounded so that each case is quick; `PROPTEST_CASES` raises the number of cases
//! (proptest's default, 256, keeps the suite to a few seconds in a debug build), and
//! `bench/fuzz.sh` runs these with a large count in release mode.

use std::path::Path;

use proptest::prelude::*;
use shoal_procfile::dotenv::{self, DotenvError};
use shoal_procfile::formation::Spec;
use shoal_procfile::procfile::{Procfile, ProcfileError};

fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

/// A process type name and a command as the grammar allows them (no leading or trailing
/// space in the command, which the parser trims).
fn entry() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9_-]{1,12}",
        // Not starting or ending with a space of any kind (U+00A0 included): it is trimmed.
        "[!-~\u{c0}-\u{167f}]([ -~\t\u{a0}-\u{2fff}]{0,30}[!-~\u{c0}-\u{167f}])?",
    )
}

/// Lines that are not entries and say nothing: blank lines and comments.
fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ \t]{1,3}",
        "[ \t]{0,2}#[ -~]{0,20}",
        "[ \t]{0,2}//[ -~]{0,20}",
    ]
}

/// Text made of the characters that matter to the grammars, so that the interesting shapes come
/// up often.
fn grammar_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("web".to_owned()),
            Just(":".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("\\".to_owned()),
            Just("#".to_owned()),
            Just("//".to_owned()),
            Just("export ".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\u{feff}".to_owned()),
            Just(",".to_owned()),
            "[a-zA-Z0-9_.-]{1,4}",
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn a_written_procfile_parses_to_its_entries(
        lines in prop::collection::vec(
            prop_oneof![3 => entry().prop_map(Ok), 1 => filler().prop_map(Err)],
            1..40,
        ),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let mut text = String::from(if bom { "\u{feff}" } else { "" });
        // What the parser must make of it: first position, last command and line.
        let mut expected: Vec<(String, String, usize)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match line {
                Ok((name, command)) => {
                    text.push_str(&format!("{name}:{}{command}", if i % 2 == 0 { " " } else { "" }));
                    match expected.iter_mut().find(|(n, _, _)| n == name) {
                        Some(earlier) => *earlier = (name.clone(), command.clone(), i + 1),
                        None => expected.push((name.clone(), command.clone(), i + 1)),
                    }
                }
                Err(filler) => text.push_str(filler),
            }
            text.push_str(if crlf { "\r\n" } else { "\n" });
        }
        match Procfile::parse(Path::new("Procfile"), &text) {
            Ok(procfile) => {
                let got: Vec<(String, String, usize)> = procfile
                    .entries
                    .iter()
                    .map(|e| (e.name.clone(), e.command.clone(), e.line))
                    .collect();
                prop_assert_eq!(got, expected);
            }
            Err(ProcfileError::NoEntries { .. }) => prop_assert!(expected.is_empty()),
            Err(err) => prop_assert!(false, "{err}"),
        }
    }

    #[test]
    fn procfile_errors_and_warnings_name_a_line_of_the_input(text in prop_oneof![grammar_soup(), "\\PC{0,400}"]) {
        let lines = line_count(&text);
        let warnings = match Procfile::parse(Path::new("Procfile"), &text) {
            Ok(procfile) => procfile.warnings,
            Err(ProcfileError::NoEntries { warnings, .. }) => warnings,
            Err(ProcfileError::EmptyCommand { line, .. }) => {
                prop_assert!((1..=lines).contains(&line));
                Vec::new()
            }
            Err(err) => return Err(TestCaseError::fail(format!("{err}"))),
        };
        for warning in warnings {
            prop_assert!((1..=lines).contains(&warning.line), "{warning}");
        }
    }

    #[test]
    fn dotenv_errors_name_a_line_of_the_input(text in prop_oneof![grammar_soup(), "\\PC{0,400}"]) {
        let lines = line_count(&text);
        match dotenv::parse(Path::new(".env"), &text) {
            Ok(vars) => {
                for var in vars {
                    prop_assert!((1..=lines).contains(&var.line));
                }
            }
            Err(DotenvError::Syntax { line, .. }) => prop_assert!((1..=lines).contains(&line)),
            Err(err) => return Err(TestCaseError::fail(format!("{err}"))),
        }
    }

    #[test]
    fn a_written_dotenv_file_parses_to_its_values(
        vars in prop::collection::vec(
            (
                "[A-Za-z_][A-Za-z0-9_]{0,10}",
                any::<String>(),
                0u8..3,
                any::<bool>(),
                prop_oneof![Just(String::new()), "[ \t]{1,3}", "[ \t]{0,2}#[ -~]{0,20}"],
            ),
            0..20,
        ),
    ) {
        let mut text = String::new();
        let mut expected: Vec<(String, String, usize)> = Vec::new();
        let mut line = 1;
        for (key, value, quoting, export, filler) in &vars {
            // Each value in the quoting that can carry it: double quotes escape anything,
            // single quotes carry all but `'`, bare values are trimmed and end at ` #`.
            let (written, value) = match quoting {
                0 => {
                    let escaped = value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\r', "\\r");
                    (format!("\"{escaped}\""), value.clone())
                }
                1 => {
                    let value = value.replace(['\'', '\r'], "");
                    (format!("'{value}'"), value)
                }
                _ => {
                    let value: String = value
                        .split(['\n', '\r', '#'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches(['"', '\''])
                        .trim()
                        .to_owned();
                    (value.clone(), value)
                }
            };
            let export = if *export { "export " } else { "" };
            text.push_str(&format!("{export}{key} = {written}\n"));
            match expected.iter_mut().find(|(k, _, _)| k == key) {
                Some(earlier) => *earlier = (key.clone(), value.clone(), line),
                None => expected.push((key.clone(), value.clone(), line)),
            }
            line += line_count(&written);
            text.push_str(filler);
            text.push('\n');
            line += 1;
        }
        let got: Vec<(String, String, usize)> = dotenv::parse(Path::new(".env"), &text)
            .map_err(|err| TestCaseError::fail(format!("{err}\n{text}")))?
            .into_iter()
            .map(|v| (v.key, v.value, v.line))
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn procfile_never_panics_and_entries_are_well_formed(text in grammar_soup()) {
        if let Ok(procfile) = Procfile::parse(Path::new("Procfile"), &text) {
            let line_count = text.split('\n').count();
            for entry in &procfile.entries {
                prop_assert!(!entry.name.is_empty());
                prop_assert!(entry.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                prop_assert!(!entry.command.trim().is_empty());
                prop_assert!(entry.line >= 1 && entry.line <= line_count);
            }
            for warning in &procfile.warnings {
                prop_assert!(warning.line >= 1 && warning.line <= line_count);
            }
        }
    }

    #[test]
    fn procfile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Procfile");
        std::fs::write(&path, &bytes).unwrap();
        let _ = Procfile::read(&path);
        let _ = dotenv::read(&path);
    }

    #[test]
    fn dotenv_never_panics(text in grammar_soup()) {
        if let Ok(vars) = dotenv::parse(Path::new(".env"), &text) {
            for var in vars {
                prop_assert!(!var.key.is_empty());
                prop_assert!(!var.key.starts_with(|c: char| c.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn dotenv_double_quoted_values_round_trip(key in "[A-Za-z_][A-Za-z0-9_]{0,10}", value in any::<String>()) {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('\r', "\\r");
        let text = format!("{key}=\"{escaped}\"\n");
        let vars = dotenv::parse(Path::new(".env"), &text).unwrap();
        prop_assert_eq!(vars.len(), 1);
        prop_assert_eq!(&vars[0].key, &key);
        prop_assert_eq!(&vars[0].value, &value);
    }

    #[test]
    fn formation_spec_never_panics(text in grammar_soup()) {
        if let Ok(spec) = Spec::parse(&text) {
            // What parses prints back to something that parses to the same spec.
            prop_assert_eq!(Spec::parse(&spec.to_string()).unwrap(), spec);
        }
    }
}

/// Runs `work` on another thread, so that a run-away fails the test instead of hanging it.
fn within_deadline<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("did not finish within 60 s")
}

#[test]
fn long_files_of_distinct_names_parse_in_linear_time() {
    // Each new name used to be looked for among all the earlier ones: 100 000 lines made
    // 5 * 10^9 comparisons (over a minute in a debug build); now each is one hash lookup.
    const LINES: usize = 100_000;
    let (procfile, env) = within_deadline(|| {
        let procfile: String = (0..LINES).map(|i| format!("p{i}: run {i}\n")).collect();
        let env: String = (0..LINES).map(|i| format!("K{i}={i}\n")).collect();
        (
            Procfile::parse(Path::new("Procfile"), &procfile).map(|p| p.entries.len()),
            dotenv::parse(Path::new(".env"), &env).map(|v| v.len()),
        )
    });
    assert_eq!(procfile.unwrap(), LINES);
    assert_eq!(env.unwrap(), LINES);
}
