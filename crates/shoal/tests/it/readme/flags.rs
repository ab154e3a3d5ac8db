//! The README's flag tables (`| flag | meaning | default |`) against what `shoal COMMAND -h`
//! prints: every flag of the CLI is in its command's table and every row is a flag of the
//! command, with the default the CLI shows (`[default: …]`).

use std::process::Command;

use super::{assert_no_problems, code_spans, lead, readme, section, tables};
use crate::support::shoal_bin;

/// The commands that take the app flags (`-f`, `-e`, `-d`, `-p`) of the table under
/// `## Commands`; the control commands have a table of their own.
const APP_FLAG_COMMANDS: [&str; 5] = ["start", "check", "run", "export", "verify"];
const CONTROL_COMMANDS: [&str; 4] = ["ps", "scale", "restart", "stop"];

/// A default the README words otherwise than `-h` shows it, both texts pinned, so that a change
/// on either side is looked at again.
struct Worded {
    flag: &'static str,
    readme: &'static str,
    /// The `[default: …]` of `-h`, if it shows one.
    help: Option<&'static str>,
    /// Text the flag's help must contain instead, when the default is said there.
    help_says: Option<&'static str>,
    why: &'static str,
}

const WORDED: &[Worded] = &[
    Worded {
        flag: "--procfile",
        readme: "`Procfile` in `-d`, else in the current directory",
        help: Some("Procfile in DIR, else in the current directory"),
        help_says: None,
        why: "computed at run time; the README names the flag `-d`, the help its value DIR",
    },
    Worded {
        flag: "--env",
        readme: "`.env` in the app directory, if present",
        help: Some(".env in DIR, if present"),
        help_says: None,
        why: "computed at run time; the app directory is DIR in the help",
    },
    Worded {
        flag: "--no-restart",
        readme: "restarts on",
        help: None,
        help_says: None,
        why: "a switch: clap shows no default for it",
    },
    Worded {
        flag: "--chaos",
        readme: "off; `--chaos` alone is `kill=10s`",
        help: None,
        help_says: Some("(`--chaos` alone: `kill=10s`)"),
        why: "the value of a bare `--chaos` is clap's missing value, which -h does not show",
    },
    Worded {
        flag: "--health-path",
        readme: "none: the port accepting connections is enough",
        help: None,
        help_says: Some("(on top of its port accepting connections)"),
        why: "`shoal start`: no path is a value clap cannot show",
    },
    Worded {
        flag: "--health-path",
        readme: "TCP check",
        help: Some("a TCP check on its port"),
        help_says: None,
        why: "`shoal export`: the probe Kubernetes gets without a path",
    },
    Worded {
        flag: "--hpa-max",
        readme: "4 × web, at least 2",
        help: Some("4 times the web count, at least 2"),
        help_says: None,
        why: "computed from the formation",
    },
];

/// One argument of a command, as `-h` shows it: `--long` for an option, `NAME` for a
/// positional.
#[derive(Debug)]
struct Arg {
    id: String,
    short: Option<char>,
    default: Option<String>,
    env: Option<String>,
    required: bool,
    help: String,
}

/// The arguments of `shoal COMMAND`, without `--help` and `--version`.
fn cli(command: &str) -> Vec<Arg> {
    let output = Command::new(shoal_bin())
        .args([command, "-h"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run shoal -h");
    assert!(output.status.success(), "shoal {command} -h failed");
    let text = String::from_utf8(output.stdout).expect("help is UTF-8");
    let usage = text
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .expect("a usage line");
    let mut args = Vec::new();
    let mut in_arguments = false;
    for line in text.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_arguments = line == "Arguments:";
            continue;
        }
        let trimmed = line.trim_start();
        let (spec, help) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
        let help = help.trim().to_owned();
        let bracketed = |key: &str, end: char| {
            let start = help.find(key)? + key.len();
            Some(help[start..].split(end).next()?.to_owned())
        };
        if trimmed.starts_with('-') {
            let long = spec
                .find("--")
                .map(|at| {
                    spec[at..]
                        .chars()
                        .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
                        .collect::<String>()
                })
                .unwrap_or_default();
            if long == "--help" || long == "--version" || long.is_empty() {
                continue;
            }
            args.push(Arg {
                short: spec
                    .strip_prefix('-')
                    .and_then(|s| s.chars().next())
                    .filter(|c| *c != '-'),
                default: bracketed("[default: ", ']'),
                env: bracketed("[env: ", '='),
                required: usage.split_whitespace().any(|w| w == long),
                id: long,
                help,
            });
        } else if in_arguments && (trimmed.starts_with('<') || trimmed.starts_with('[')) {
            args.push(Arg {
                id: spec.trim_matches(['<', '>', '[', ']', '.']).to_owned(),
                short: None,
                default: bracketed("[default: ", ']'),
                env: None,
                required: trimmed.starts_with('<'),
                help,
            });
        }
    }
    args
}

#[derive(Debug, PartialEq)]
enum Key {
    Short(char),
    Long(String),
    Positional(String),
}

/// A row of a flag table.
#[derive(Debug)]
struct Row {
    /// The first cell, as written.
    cell: String,
    keys: Vec<Key>,
    /// The default cell; `None` when the table has no default column.
    default: Option<String>,
    /// `(or `VAR`)`: the environment variable that sets it.
    env: Option<String>,
    /// `(`ps`)`: the only commands that have it.
    only: Vec<String>,
}

/// The rows of every flag table in `text`.
fn flag_rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in tables(text) {
        if table.header.first().map(String::as_str) != Some("flag") {
            continue;
        }
        let has_default = table.header.get(2).map(String::as_str) == Some("default");
        for row in table.rows {
            let cell = row[0].clone();
            let (flags, qualifier) = cell.split_once(" (").unwrap_or((&cell, ""));
            let mut keys = Vec::new();
            for span in code_spans(flags) {
                let tokens: Vec<&str> = span
                    .split([' ', ','])
                    .filter(|t| t.starts_with('-'))
                    .collect();
                if tokens.is_empty() {
                    keys.push(Key::Positional(span.trim_end_matches('.').to_owned()));
                }
                for token in tokens {
                    if let Some(long) = token.strip_prefix("--") {
                        let name: String = long
                            .chars()
                            .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
                            .collect();
                        keys.push(Key::Long(format!("--{name}")));
                    } else if let Some(short) = token.strip_prefix('-') {
                        keys.push(Key::Short(short.chars().next().unwrap_or(' ')));
                    }
                }
            }
            let (env, only) = match qualifier.strip_prefix("or ") {
                Some(rest) => (code_spans(rest).first().map(|s| s.to_string()), vec![]),
                None => (
                    None,
                    code_spans(qualifier)
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ),
            };
            rows.push(Row {
                default: has_default.then(|| row.get(2).cloned().unwrap_or_default()),
                cell,
                keys,
                env,
                only,
            });
        }
    }
    rows
}

fn resolve<'a>(key: &Key, args: &'a [Arg]) -> Option<&'a Arg> {
    args.iter().find(|arg| match key {
        Key::Short(c) => arg.short == Some(*c),
        Key::Long(long) => arg.id == *long,
        Key::Positional(name) => arg.id == *name,
    })
}

/// What is wrong with `rows` as the documentation of `shoal command`: rows that are not its
/// arguments, or whose default or variable differs from `-h`.
fn row_problems(command: &str, rows: &[&Row], args: &[Arg]) -> Vec<String> {
    let mut problems = Vec::new();
    for row in rows {
        let mut resolved = Vec::new();
        for key in &row.keys {
            match resolve(key, args) {
                Some(arg) => resolved.push(arg),
                None => problems.push(format!(
                    "`shoal {command}` has no {key:?} (README row `{}`)",
                    row.cell
                )),
            }
        }
        resolved.dedup_by_key(|arg| arg.id.as_str());
        if let (Some(env), [arg]) = (&row.env, resolved.as_slice())
            && arg.env.as_ref() != Some(env)
        {
            problems.push(format!(
                "`shoal {command} {}`: README says `{env}` sets it, -h says {:?}",
                arg.id, arg.env
            ));
        }
        // A row naming several flags refers to their own rows for the defaults.
        if let (Some(readme), [arg]) = (&row.default, resolved.as_slice())
            && let Some(problem) = default_problem(command, arg, readme)
        {
            problems.push(problem);
        }
    }
    problems
}

fn default_problem(command: &str, arg: &Arg, readme: &str) -> Option<String> {
    let wrong = |help: &dyn std::fmt::Debug| {
        Some(format!(
            "`shoal {command} {}`: README says default `{readme}`, -h says {help:?}",
            arg.id
        ))
    };
    if let Some(worded) = WORDED
        .iter()
        .find(|w| w.flag == arg.id && w.readme == readme)
    {
        let why = worded.why;
        if arg.default.as_deref() != worded.help {
            return wrong(&format!(
                "{:?} (worded apart on purpose: {why})",
                arg.default
            ));
        }
        return worded
            .help_says
            .filter(|says| !arg.help.contains(says))
            .and_then(|says| wrong(&format!("no `{says}` in {:?} ({why})", arg.help)));
    }
    if readme == "required" {
        return (!arg.required).then(|| {
            format!(
                "`shoal {command} {}`: README says required, -h does not",
                arg.id
            )
        });
    }
    // Code spans are Markdown, and the help may carry the same backticks.
    let plain = |text: &str| text.replace('`', "");
    match &arg.default {
        None if readme.is_empty() => None,
        Some(default) if plain(default) == plain(readme) => None,
        other => wrong(other),
    }
}

/// Arguments (options, and positionals too if `positionals`) that no row names.
fn undocumented<'a>(rows: &[&Row], args: &'a [Arg], positionals: bool) -> Vec<&'a Arg> {
    let named = |arg: &Arg| {
        rows.iter().any(|row| {
            row.keys
                .iter()
                .any(|key| resolve(key, args).is_some_and(|a| a.id == arg.id))
        })
    };
    args.iter()
        .filter(|arg| (positionals || arg.id.starts_with('-')) && !named(arg))
        .collect()
}

fn not_in_a_table(command: &str, arg: &Arg) -> String {
    format!("`shoal {command} {}` is in no README flag table", arg.id)
}

fn app_rows(text: &str) -> Vec<Row> {
    flag_rows(lead(section(text, "## Commands")))
}

/// `command`'s rows: the app flags' and those of its own section.
fn check_command(command: &str, heading: &str) -> Vec<String> {
    let text = readme();
    let app = app_rows(&text);
    let own = flag_rows(section(&text, heading));
    assert!(!own.is_empty(), "no flag table under `{heading}`");
    let rows: Vec<&Row> = app.iter().chain(&own).collect();
    let args = cli(command);
    let mut problems = row_problems(command, &rows, &args);
    problems.extend(
        undocumented(&rows, &args, true)
            .into_iter()
            .map(|arg| not_in_a_table(command, arg)),
    );
    problems
}

#[test]
fn commands_app_flags_match_the_cli() {
    let text = readme();
    let app = app_rows(&text);
    assert_eq!(app.len(), 4, "the app flags table: {app:?}");
    let rows: Vec<&Row> = app.iter().collect();
    let mut problems = Vec::new();
    let says = lead(section(&text, "## Commands"));
    for command in APP_FLAG_COMMANDS {
        if !says.contains(&format!("`{command}`")) {
            problems.push(format!("`{command}` is not named as taking the app flags"));
        }
        problems.extend(row_problems(command, &rows, &cli(command)));
    }
    // The sentence names the commands that take them: the others must not.
    for command in CONTROL_COMMANDS {
        if cli(command).iter().any(|arg| arg.id == "--env") {
            problems.push(format!("`shoal {command}` takes the app flags now"));
        }
    }
    assert_no_problems("the app flags (README `## Commands`)", &problems);
}

#[test]
fn start_flag_defaults_match_the_cli() {
    assert_no_problems(
        "README `shoal start`",
        &check_command("start", "### `shoal start`"),
    );
}

#[test]
fn verify_flag_defaults_match_the_cli() {
    assert_no_problems(
        "README `shoal verify`",
        &check_command("verify", "### `shoal verify`"),
    );
}

#[test]
fn export_flag_defaults_match_the_cli() {
    assert_no_problems(
        "README `shoal export`",
        &check_command("export", "### `shoal export`"),
    );
}

#[test]
fn ps_scale_restart_stop_flags_match_the_cli() {
    let text = readme();
    let rows = flag_rows(section(&text, "### `shoal ps`, `scale`, `restart`, `stop`"));
    assert!(!rows.is_empty(), "no flag table for the control commands");
    let mut problems = Vec::new();
    for command in CONTROL_COMMANDS {
        let args = cli(command);
        let (mine, others): (Vec<&Row>, Vec<&Row>) = rows
            .iter()
            .partition(|row| row.only.is_empty() || row.only.iter().any(|c| c == command));
        problems.extend(row_problems(command, &mine, &args));
        // `(`ps`)`: the others do not have it.
        for row in others {
            if row.keys.iter().any(|key| resolve(key, &args).is_some()) {
                problems.push(format!(
                    "`shoal {command}` has `{}`, which the README gives only to {:?}",
                    row.cell, row.only
                ));
            }
        }
        // The positionals (TARGET, TYPE=COUNT) are documented by the examples above the table.
        problems.extend(
            undocumented(&mine, &args, false)
                .into_iter()
                .map(|arg| not_in_a_table(command, arg)),
        );
    }
    assert_no_problems("README `shoal ps`, `scale`, `restart`, `stop`", &problems);
}

/// `check` and `run` have no table of their own: their flags beyond the app flags are shown in
/// their sections' examples.
#[test]
fn check_and_run_flags_are_in_their_sections() {
    let text = readme();
    let app = app_rows(&text);
    let app: Vec<&Row> = app.iter().collect();
    let mut problems = Vec::new();
    for (command, heading) in [("check", "### `shoal check`"), ("run", "### `shoal run`")] {
        let own = section(&text, heading);
        let args = cli(command);
        for arg in undocumented(&app, &args, false) {
            let short = arg.short.map(|c| format!(" -{c} "));
            let mentioned = own.contains(&format!("{}`", arg.id))
                || own.contains(&format!("{} ", arg.id))
                || short.is_some_and(|s| own.contains(&s));
            if !mentioned {
                problems.push(format!(
                    "{}, nor in the text of `{heading}`",
                    not_in_a_table(command, arg)
                ));
            }
        }
    }
    assert_no_problems("README `shoal check`, `shoal run`", &problems);
}

#[test]
fn a_flag_table_row_names_its_flags_default_variable_and_commands() {
    let rows = flag_rows(
        "| flag | meaning | default |\n|---|---|---|\n\
         | `-m, --formation SPEC` | counts | `all=1` |\n\
         | `--chaos[=kill=PERIOD[,wipe]]` | chaos | off |\n\
         | `SCENARIO...` | files | required |\n\
         | `--socket PATH` (or `SHOAL_SOCKET`) | socket | |\n\
         | `--json` (`ps`) | JSON | |\n",
    );
    let keys: Vec<&Vec<Key>> = rows.iter().map(|r| &r.keys).collect();
    assert_eq!(
        keys,
        [
            &vec![Key::Short('m'), Key::Long("--formation".into())],
            &vec![Key::Long("--chaos".into())],
            &vec![Key::Positional("SCENARIO".into())],
            &vec![Key::Long("--socket".into())],
            &vec![Key::Long("--json".into())],
        ]
    );
    assert_eq!(rows[0].default.as_deref(), Some("`all=1`"));
    assert_eq!(rows[3].env.as_deref(), Some("SHOAL_SOCKET"));
    assert_eq!(rows[4].only, ["ps"]);
}

#[test]
fn a_default_other_than_the_help_says_is_a_problem() {
    let arg = |id: &str, default: Option<&str>| Arg {
        id: id.into(),
        short: None,
        default: default.map(Into::into),
        env: None,
        required: false,
        help: String::new(),
    };
    let timeout = |default| arg("--timeout", default);
    assert_eq!(default_problem("start", &timeout(Some("10")), "10"), None);
    assert_eq!(default_problem("start", &timeout(Some("10")), "`10`"), None);
    assert!(default_problem("start", &timeout(Some("10")), "11").is_some());
    assert!(default_problem("start", &timeout(Some("10")), "").is_some());
    assert!(default_problem("start", &timeout(None), "10").is_some());
    assert!(default_problem("start", &timeout(None), "required").is_some());
    // Worded apart on purpose: both texts are pinned.
    let readme = "4 × web, at least 2";
    let hpa_max = |default| arg("--hpa-max", Some(default));
    assert_eq!(
        default_problem(
            "export",
            &hpa_max("4 times the web count, at least 2"),
            readme
        ),
        None
    );
    assert!(default_problem("export", &hpa_max("8 times the web count"), readme).is_some());
}
