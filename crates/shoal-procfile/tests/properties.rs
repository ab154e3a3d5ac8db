//! Property tests: no input makes the parsers panic, and what they accept obeys the grammar.

use std::path::Path;

use proptest::prelude::*;
use shoal_procfile::dotenv;
use shoal_procfile::formation::Spec;
use shoal_procfile::procfile::Procfile;

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
