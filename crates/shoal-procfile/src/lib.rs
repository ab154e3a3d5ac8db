//! Turns a Procfile, `.env` files and a formation spec (`web=3,worker=2`) into one validated
//! [`Plan`]: which process types exist, how many instances of each run, on which ports, and with
//! which environment.
//!
//! This crate only reads and validates; it starts nothing. The supervisor runs a plan, `shoal
//! check` prints one, and the exporters translate one for other engines.
//!
//! # Layout
//! - [`procfile`]: the foreman/Heroku-compatible Procfile grammar, with warnings for lines that
//!   are not entries.
//! - [`dotenv`]: the `.env` grammar (`KEY=VALUE`, quotes, multi-line values, no `$VAR` expansion).
//! - [`formation`]: the `-m` spec (`all=2,worker=0`).
//! - [`plan`]: the three combined, with ports and the environment of every instance.
//! - [`memory`]: `--memory-limit` sizes, set on the plan's process types.
//! - [`secret`]: which values are masked when a plan is shown.
//! - [`command`]: which commands can be run as `exec COMMAND`.

pub mod command;
mod diagnostic;
pub mod dotenv;
pub mod formation;
pub mod memory;
pub mod plan;
pub mod procfile;
pub mod regular;
pub mod secret;
mod source;
mod suggest;

pub use diagnostic::Warning;
pub use plan::{
    Instance, InstanceName, InstanceNameError, Plan, PlanError, PlanOptions, ProcessType, Release,
};
pub use source::MAX_SOURCE_BYTES;
