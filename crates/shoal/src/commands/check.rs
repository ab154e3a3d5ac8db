//! `shoal check`: validates everything and prints the resolved plan, for people or (with
//! `--json`) for tools. The JSON layout is versioned and documented in the README.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::anyhow;
use serde::Serialize;
use shoal_procfile::plan::OWN_VARS;
use shoal_procfile::secret::display_value;
use shoal_procfile::{Plan, Warning};
use shoal_supervisor::{RuntimeDir, ports};

use super::{load_plan, plan_options};
use crate::cli::CheckArgs;
use crate::exit;
use crate::report::{self, UsageError};

/// Version of the `--json` layout; bumped on any change that is not an added field.
const JSON_VERSION: u32 = 1;

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let plan = load_plan(&plan_options(&args.app, args.formation.clone()))?;
    let runtime_dir = RuntimeDir::for_procfile(&plan.procfile);
    if args.json {
        let json = serde_json::to_string_pretty(&JsonPlan::new(&plan, &runtime_dir))?;
        println!("{json}");
    } else {
        print!("{}", human(&plan, &runtime_dir));
        for warning in &plan.warnings {
            report::warning(warning);
        }
    }
    // About this machine rather than the input, so not counted by `--strict`.
    if let Some(text) = ports::ephemeral_warning_for(&plan) {
        eprintln!("warning: {text}");
    }
    if args.strict && !plan.warnings.is_empty() {
        let count = plan.warnings.len();
        return Err(UsageError(anyhow!(
            "{count} warning{} with --strict; fix the lines named above",
            if count == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(exit::OK)
}

fn human(plan: &Plan, runtime_dir: &RuntimeDir) -> String {
    let mut out = String::new();
    let files: Vec<String> = plan
        .env_files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let _ = writeln!(out, "Procfile       {}", plan.procfile.display());
    let _ = writeln!(out, "app directory  {}", plan.app_dir.display());
    let _ = writeln!(
        out,
        "env files      {}",
        if files.is_empty() {
            "(none)".to_owned()
        } else {
            files.join(", ")
        }
    );
    if plan.routed {
        let _ = writeln!(
            out,
            "router         port {} → ready `web` instances",
            plan.port
        );
    } else {
        let _ = writeln!(out, "port           {}", plan.port);
    }
    if let Some(release) = &plan.release {
        let _ = writeln!(
            out,
            "release        port {}  {}  (runs once, before the formation starts)",
            release.port, release.command
        );
    }

    let instances = plan.instances();
    let width = instances
        .iter()
        .map(|i| i.name.to_string().len())
        .chain(plan.types.iter().map(|t| t.name.len()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "\ninstances");
    for kind in &plan.types {
        if kind.count == 0 {
            let _ = writeln!(
                out,
                "  {:<width$}  scaled to 0      {}",
                kind.name, kind.command
            );
        }
        for instance in instances.iter().filter(|i| i.name.kind == kind.name) {
            let _ = writeln!(
                out,
                "  {:<width$}  port {:<5}  {}",
                instance.name.to_string(),
                instance.port,
                instance.command
            );
        }
    }

    let _ = writeln!(
        out,
        "\nenvironment of every instance (on top of shoal's own environment)"
    );
    let key_width = plan
        .env
        .iter()
        .map(|v| v.key.len())
        .chain(["SHOAL_SCRATCH, TMPDIR".len()])
        .max()
        .unwrap_or(0);
    for var in plan
        .env
        .iter()
        .filter(|v| !OWN_VARS.contains(&v.key.as_str()))
    {
        let _ = writeln!(
            out,
            "  {:<key_width$}  {}    ({}:{})",
            var.key,
            display_value(&var.key, &var.value),
            var.file.display(),
            var.line
        );
    }
    let scratch = runtime_dir.path().join("scratch");
    for (keys, meaning) in [
        ("PORT", "the instance's port".to_owned()),
        (
            "PS, DYNO, SHOAL_INSTANCE",
            "the instance's name, e.g. web.1".to_owned(),
        ),
        (
            "SHOAL_SCRATCH, TMPDIR",
            format!("{}/NAME, emptied at every restart", scratch.display()),
        ),
    ] {
        let _ = writeln!(out, "  {keys:<key_width$}  {meaning}");
    }
    out
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    version: u32,
    procfile: &'a PathBuf,
    app_dir: &'a PathBuf,
    env_files: &'a [PathBuf],
    port: u16,
    routed: bool,
    runtime_dir: &'a std::path::Path,
    release: Option<JsonRelease<'a>>,
    process_types: Vec<JsonType<'a>>,
    instances: Vec<JsonInstance>,
    warnings: &'a [Warning],
}

#[derive(Serialize)]
struct JsonRelease<'a> {
    command: &'a str,
    line: usize,
    port: u16,
}

#[derive(Serialize)]
struct JsonType<'a> {
    name: &'a str,
    command: &'a str,
    line: usize,
    count: u32,
    first_port: u16,
}

#[derive(Serialize)]
struct JsonInstance {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    index: u32,
    command: String,
    port: u16,
    env: BTreeMap<String, String>,
}

impl<'a> JsonPlan<'a> {
    fn new(plan: &'a Plan, runtime_dir: &'a RuntimeDir) -> Self {
        JsonPlan {
            version: JSON_VERSION,
            procfile: &plan.procfile,
            app_dir: &plan.app_dir,
            env_files: &plan.env_files,
            port: plan.port,
            routed: plan.routed,
            runtime_dir: runtime_dir.path(),
            release: plan.release.as_ref().map(|r| JsonRelease {
                command: &r.command,
                line: r.line,
                port: r.port,
            }),
            process_types: plan
                .types
                .iter()
                .map(|t| JsonType {
                    name: &t.name,
                    command: &t.command,
                    line: t.line,
                    count: t.count,
                    first_port: t.first_port,
                })
                .collect(),
            instances: plan
                .instances()
                .into_iter()
                .map(|i| {
                    let scratch = runtime_dir.scratch(&i.name);
                    let env = plan
                        .instance_env(&i.name, i.port, &scratch)
                        .into_iter()
                        .map(|(k, v)| {
                            let shown = display_value(&k, &v);
                            (k, shown)
                        })
                        .collect();
                    JsonInstance {
                        name: i.name.to_string(),
                        kind: i.name.kind.clone(),
                        index: i.name.index,
                        command: i.command,
                        port: i.port,
                        env,
                    }
                })
                .collect(),
            warnings: &plan.warnings,
        }
    }
}
