//! The subcommands, and what they share: turning the app flags into a plan.

mod check;
mod control;
mod export;
mod run;
mod start;
mod verify;

pub(crate) use control::NotRunning;

use std::path::PathBuf;

use anyhow::Context as _;
use shoal_procfile::{Plan, PlanOptions};

use crate::cli::{AppArgs, Cli, Command};
use crate::report::UsageError;

/// Runs the subcommand and returns shoal's exit code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Start(args) => start::start(args),
        Command::Check(args) => check::check(args),
        Command::Run(args) => run::run(args),
        Command::Ps(args) => control::ps(args),
        Command::Scale(args) => control::scale(args),
        Command::Restart(args) => control::restart(args),
        Command::Stop(args) => control::stop(args),
        Command::Watchdog => {
            shoal_supervisor::watchdog::run(std::io::stdin().lock());
            Ok(crate::exit::OK)
        }
        Command::Export(args) => export::export(args),
        Command::Verify(args) => verify::verify(args),
    }
}

/// The plan options for the app flags and a formation spec.
fn plan_options(app: &AppArgs, formation: Option<String>) -> PlanOptions {
    let procfile = match (&app.procfile, &app.dir) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => dir.join("Procfile"),
        (None, None) => PathBuf::from("Procfile"),
    };
    PlanOptions {
        procfile,
        app_dir: app.dir.clone(),
        env_files: app.env_files.clone(),
        formation,
        port: app.port,
        inherited_port: std::env::var("PORT").ok(),
        without_router: false,
    }
}

/// Loads the plan; what is wrong with the input is a usage error.
fn load_plan(options: &PlanOptions) -> anyhow::Result<Plan> {
    Plan::load(options).map_err(|err| UsageError(err.into()).into())
}

/// The runtime for the commands that supervise: one worker thread per CPU that shoal may run
/// on (`TOKIO_WORKER_THREADS` overrides the count). With a single one it is a current-thread
/// runtime, which does the same work without handing tasks and wake-ups between threads: a
/// router pinned to one core spends about a quarter less CPU per request that way.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .thread_name("shoal")
        .build()
        .context("cannot start the async runtime")
}
