//! What a Procfile command is to the shell: a simple command that names a program can be run
//! as `exec COMMAND`, so that the program replaces `sh` and is the instance's main process (and
//! gets signals itself); anything else — operators, redirections, assignments, expansions in
//! the first word, shell keywords and builtins — must stay under `sh`.

/// Shell words that `exec` cannot run: keywords, and builtins that are no program.
const NOT_PROGRAMS: &[&str] = &[
    "!", "{", "}", "[[", ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue",
    "do", "done", "elif", "else", "esac", "eval", "exec", "exit", "export", "fg", "fi", "for",
    "function", "getopts", "hash", "if", "jobs", "local", "read", "readonly", "return", "select",
    "set", "shift", "source", "then", "times", "trap", "type", "ulimit", "umask", "unalias",
    "unset", "until", "wait", "while",
];

/// The program a simple command runs (its first word), or `None` for anything `exec` cannot
/// replace the shell with.
pub fn simple_program(command: &str) -> Option<&str> {
    let first = command.split_whitespace().next()?;
    let compound = command.contains([';', '&', '|', '(', ')', '`', '\n', '{', '}', '<', '>'])
        || first.contains(['=', '$', '"', '\'', '\\', '*', '?', '['])
        || NOT_PROGRAMS.contains(&first);
    (!compound).then_some(first)
}

/// The command as `sh -c` should run it: `exec COMMAND` when it is a simple command whose
/// program `runs` accepts (e.g. one found on `PATH`), the command unchanged otherwise.
pub fn exec_form(command: &str, runs: impl FnOnce(&str) -> bool) -> String {
    let command = command.trim();
    match simple_program(command) {
        Some(program) if runs(program) => format!("exec {command}"),
        _ => command.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_name_their_program() {
        assert_eq!(simple_program("bundle exec puma -p $PORT"), Some("bundle"));
        assert_eq!(simple_program("./server --port 80"), Some("./server"));
        for not_simple in [
            "a && b",
            "a; b",
            "a | b",
            "FOO=1 b",
            "exec b",
            "(a)",
            "if true; then a; fi",
            "a\nb",
            "./server > log",
            "exit 3",
            "eval echo hi",
            ". ./env.sh",
            ": nothing",
            "wait",
            "$CMD --flag",
            "",
        ] {
            assert_eq!(simple_program(not_simple), None, "{not_simple:?}");
        }
        assert_eq!(exec_form(" sleep 1 ", |_| true), "exec sleep 1");
        assert_eq!(exec_form("sleep 1", |_| false), "sleep 1");
    }
}
