//! systemd units, as foreman exports them: `APP.target` wants one service per instance,
//! `APP-TYPE.N.service`, each with its own `PORT` and name, `Restart=always`, `KillMode=mixed`
//! and `TimeoutStopSec` = `--timeout`. The `.env` variables go to `APP.env`, read with
//! `EnvironmentFile=`; `release`, when the Procfile has one, is a oneshot `APP-release.service`
//! that every instance requires and starts after. A private `/tmp` (`PrivateTmp=yes`) is each
//! instance's scratch directory, emptied when it stops, as under `shoal start`.
//!
//! Unit files have their own quoting: `%` starts a specifier and `$` a variable everywhere, so
//! both are doubled in what comes from the user; the command is one double-quoted argument to
//! `/bin/sh -c`.

use std::fmt::Write as _;
use std::path::Path;

use crate::formation::{self, Formation};
use crate::{Export, ExportError, File, Options};

/// The scratch directory: the unit's private `/tmp`.
pub const SCRATCH_DIR: &str = "/tmp";
/// How long systemd waits before restarting an instance that exited.
pub const RESTART_DELAY: &str = "1s";

pub(crate) fn render(formation: &Formation<'_>, options: &Options) -> Result<Export, ExportError> {
    let app = &formation.app;
    let app_dir = unit_path(&formation.plan.app_dir)?;
    let env_file = (!formation.env().is_empty())
        .then(|| unit_path(&options.output_dir.join(format!("{app}.env"))))
        .transpose()?;
    let release_unit = format!("{app}-release.service");
    let timeout = formation::duration(options.timeout);

    let mut files = Vec::new();
    let mut instances = Vec::new();
    let service = |unit: &str,
                   description: &str,
                   name: &str,
                   port: u16,
                   command: &str,
                   memory: Option<u64>| {
        let mut text = String::new();
        let _ = writeln!(text, "[Unit]");
        let _ = writeln!(text, "Description={}", specifiers(description));
        let _ = writeln!(text, "PartOf={app}.target");
        if formation.release.is_some() && unit != release_unit {
            let _ = writeln!(text, "Requires={release_unit}");
            let _ = writeln!(text, "After=network.target {release_unit}");
        } else {
            let _ = writeln!(text, "After=network.target");
        }
        if unit != release_unit {
            // Never give up restarting, as `shoal start` does not.
            let _ = writeln!(text, "StartLimitIntervalSec=0");
        }
        let _ = writeln!(text, "\n[Service]");
        if unit == release_unit {
            let _ = writeln!(text, "Type=oneshot\nRemainAfterExit=yes");
        }
        let _ = writeln!(text, "WorkingDirectory={app_dir}");
        if let Some(env_file) = &env_file {
            let _ = writeln!(text, "EnvironmentFile={env_file}");
        }
        let _ = writeln!(
            text,
            "Environment=PORT={port} PS={name} DYNO={name} SHOAL_INSTANCE={name} SHOAL_SCRATCH={SCRATCH_DIR} TMPDIR={SCRATCH_DIR}"
        );
        let _ = writeln!(text, "ExecStart=/bin/sh -c {}", exec_argument(command));
        if unit != release_unit {
            let _ = writeln!(text, "Restart=always\nRestartSec={RESTART_DELAY}");
        }
        let _ = writeln!(text, "KillMode=mixed\nTimeoutStopSec={timeout}");
        if let Some(bytes) = memory {
            // The kernel ends the service beyond it (and systemd restarts it).
            let _ = writeln!(
                text,
                "MemoryMax={}",
                Formation::memory(bytes, ["K", "M", "G", "T"], "")
            );
        }
        let _ = writeln!(text, "PrivateTmp=yes\nStandardInput=null");
        let _ = writeln!(
            text,
            "SyslogIdentifier={}",
            specifiers(unit.trim_end_matches(".service"))
        );
        File {
            name: unit.to_owned(),
            contents: text,
            private: false,
        }
    };

    if let Some(release) = &formation.release {
        files.push(service(
            &release_unit,
            &format!("{app} release (runs once before the formation starts)"),
            "release.1",
            release.port,
            &release.command,
            None,
        ));
    }
    for kind in &formation.types {
        for index in 1..=kind.count {
            let unit = format!("{app}-{}.{index}.service", kind.name);
            let name = format!("{}.{index}", kind.procfile_name);
            let port = kind.port + (index - 1) as u16;
            files.push(service(
                &unit,
                &format!("{app} {name}"),
                &name,
                port,
                &kind.command,
                kind.memory_limit,
            ));
            instances.push(unit);
        }
    }

    let mut target = String::new();
    let _ = writeln!(target, "[Unit]");
    let _ = writeln!(
        target,
        "Description={} (formation: {})",
        specifiers(app),
        formation.spec()
    );
    if !instances.is_empty() {
        let _ = writeln!(target, "Wants={}", instances.join(" "));
    }
    let _ = writeln!(target, "\n[Install]\nWantedBy=multi-user.target");
    files.insert(
        0,
        File {
            name: format!("{app}.target"),
            contents: target,
            private: false,
        },
    );
    if env_file.is_some() {
        files.insert(
            1,
            File {
                name: format!("{app}.env"),
                contents: environment_file(&formation.env()),
                private: !formation.secrets.is_empty(),
            },
        );
    }

    let dir = options.output_dir.display();
    let mut next_steps = Vec::new();
    if options.output_dir != Path::new("/etc/systemd/system") {
        next_steps.push(format!(
            "install the units: sudo cp {dir}/*.target {dir}/*.service /etc/systemd/system/ (the environment file stays in {dir})"
        ));
    }
    next_steps.push(format!(
        "start the formation: sudo systemctl daemon-reload && sudo systemctl enable --now {app}.target"
    ));
    Ok(Export {
        app: formation.app.clone(),
        files,
        warnings: Vec::new(),
        next_steps,
    })
}

/// An absolute path for a unit file setting.
fn unit_path(path: &Path) -> Result<String, ExportError> {
    let text = path.display().to_string();
    if text.contains(['\n', '\r']) {
        return Err(ExportError::UnitPath(path.to_path_buf()));
    }
    Ok(specifiers(&text))
}

/// `text` with `%` doubled, so that systemd does not read it as a specifier.
fn specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// One double-quoted argument of `ExecStart=`, taken literally: systemd unescapes `\\` and
/// `\"` inside quotes and expands `$VAR` and `%x` everywhere, so all four are escaped.
fn exec_argument(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The variables in `EnvironmentFile=` syntax: each value double-quoted, with `\`, `"`, `$`
/// and `` ` `` escaped; line breaks inside the quotes are kept as they are.
fn environment_file(vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in vars {
        let _ = write!(out, "{key}=\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arguments_are_taken_literally() {
        assert_eq!(
            exec_argument(r#"exec ./server -p $PORT --name "a\b" 100%"#),
            r#""exec ./server -p $$PORT --name \"a\\b\" 100%%""#
        );
    }

    #[test]
    fn environment_file_quotes_everything() {
        assert_eq!(
            environment_file(&[("A", "x y"), ("B", "p$w\"d`\\"), ("C", "two\nlines")]),
            "A=\"x y\"\nB=\"p\\$w\\\"d\\`\\\\\"\nC=\"two\nlines\"\n"
        );
    }
}
