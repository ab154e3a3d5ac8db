//! The command line: every subcommand and flag, with the help text users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run any app as a formation of stateless processes.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the formation in the foreground until interrupted
    Start(StartArgs),
    /// Validate the Procfile, .env files and formation, and print the resolved plan
    Check(CheckArgs),
    /// Run one command with the environment a formation instance gets
    Run(RunArgs),
}

/// Where the app and its configuration are.
#[derive(Debug, Args, Clone)]
pub(crate) struct AppArgs {
    /// The Procfile [default: Procfile in DIR, else in the current directory]
    #[arg(short = 'f', long, value_name = "FILE")]
    pub(crate) procfile: Option<PathBuf>,
    /// A .env file to read; repeat for several, later files win [default: .env in DIR, if present]
    #[arg(short = 'e', long = "env", value_name = "FILE")]
    pub(crate) env_files: Vec<PathBuf>,
    /// The directory instances run in [default: the Procfile's directory]
    #[arg(short = 'd', long = "directory", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The formation's port: instances get PORT from here up [default: PORT from .env, else from the environment, else 5000]
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// How many instances of each type run, e.g. `web=3,worker=2` or `all=2,worker=0` [default: all=1]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub(crate) timeout: f64,
    /// Do not restart instances that exit: the first exit stops the formation, and shoal exits with that instance's code
    #[arg(long)]
    pub(crate) no_restart: bool,
    /// Never colour the output (NO_COLOR is also honoured)
    #[arg(long)]
    pub(crate) no_color: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// How many instances of each type run, e.g. `web=3,worker=2` [default: all=1]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// Print the plan as JSON (schema in the README)
    #[arg(long)]
    pub(crate) json: bool,
    /// Treat every warning as an error (for CI)
    #[arg(long)]
    pub(crate) strict: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// The command: a Procfile process type, one shell command line, or a program and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<String>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 to 86400"
        )),
    }
}
