//! The README's "Each instance" → "Environment" table: every variable it lists is set for
//! every instance as described, over what the `.env` files and shoal's own environment say.

use std::os::unix::fs::PermissionsExt;

use super::{assert_no_problems, code_spans, readme, section, tables};
use crate::support::{App, Running, body, free_port, text};

/// `(variables, value)` for each row of the table.
fn documented() -> Vec<(Vec<String>, String)> {
    let text = readme();
    let table = tables(section(&text, "### Environment"))
        .into_iter()
        .find(|t| t.header.first().map(String::as_str) == Some("variable"))
        .expect("the environment table");
    table
        .rows
        .iter()
        .map(|row| {
            let names = code_spans(&row[0]).iter().map(|s| s.to_string()).collect();
            (names, row[1].clone())
        })
        .collect()
}

#[test]
fn each_instance_environment_is_set_as_the_table_says() {
    let rows = documented();
    let names: Vec<String> = rows.iter().flat_map(|(names, _)| names.clone()).collect();
    assert!(
        names.len() >= 3,
        "too few variables in the table: {names:?}"
    );
    let list = names.join(" ");
    let app = App::new(&format!("web: FAKE env {list}\nworker: FAKE env {list}\n"));
    // Precedence: shoal's variables win over the `.env` files and shoal's own environment.
    let dotenv: String = names
        .iter()
        .filter(|name| *name != "PORT")
        .map(|name| format!("{name}=from-dotenv\n"))
        .collect();
    app.write(".env", &dotenv);
    let port = free_port();
    let mut command = app.command(&["start", "-p", &port.to_string()]);
    for name in names.iter().filter(|name| *name != "TMPDIR") {
        command.env(name, "from-shell");
    }
    let shoal = Running::spawn(command);
    let instances = [("web.1", port + 100), ("worker.1", port + 200)];
    shoal.wait_for_n(names.len() * instances.len(), "with a variable", |line| {
        names
            .iter()
            .any(|n| text(line).starts_with(&format!("{n}=")))
    });
    let value = |instance: &str, name: &str| {
        let prefix = format!("{name}=");
        shoal
            .stdout()
            .lines()
            .find_map(|line| {
                let (who, said) = body(line).split_once(" | ")?;
                (who.trim() == instance).then(|| said.strip_prefix(&prefix).map(str::to_owned))?
            })
            .unwrap_or_else(|| panic!("{instance} printed no {name}"))
    };

    let mut problems = Vec::new();
    let mut scratches = Vec::new();
    for (names, meaning) in &rows {
        for (instance, instance_port) in instances {
            let values: Vec<String> = names.iter().map(|n| value(instance, n)).collect();
            let mut expect = |what: &str, ok: bool| {
                if !ok {
                    problems.push(format!(
                        "{instance}: {names:?} = {values:?} is not {what} (README: {meaning})"
                    ));
                }
            };
            if meaning.starts_with("the instance's port") {
                expect(
                    "its port",
                    values.iter().all(|v| *v == instance_port.to_string()),
                );
            } else if meaning.starts_with("the instance's name, `TYPE.N`") {
                expect("its name", values.iter().all(|v| v == instance));
            } else if meaning.starts_with("the instance's private scratch directory") {
                let dir = values[0].clone();
                let mode = std::fs::metadata(&dir).map(|m| m.permissions().mode() & 0o777);
                expect(
                    "one private directory (mode 0700, named after the instance)",
                    values.iter().all(|v| *v == dir)
                        && dir.ends_with(&format!("/scratch/{instance}"))
                        && mode.is_ok_and(|m| m == 0o700),
                );
                scratches.push(dir);
            } else {
                expect("checked: add a check for this row", false);
            }
        }
    }
    scratches.dedup();
    if scratches.len() == 1 {
        problems.push(format!(
            "two instances share a scratch directory: {scratches:?}"
        ));
    }
    assert_no_problems("README `Environment`", &problems);
}
