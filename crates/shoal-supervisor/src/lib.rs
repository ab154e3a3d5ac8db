//! Runs a [`Plan`](shoal_procfile::Plan): starts every instance in its own process group, gives
//! it its environment and scratch directory, multiplexes its output line by line, restarts it
//! with backoff when it exits, and stops the whole formation with a grace period and no orphans.
//!
//! One controller task ([`supervisor`]) owns the instance table; each instance has a task
//! ([`instance`]) that only reports what happens to its process. Others observe the formation
//! through [`Handle::watch`] (the router asks it which `web` instances are ready) and steer it
//! through [`Handle`]; the supervisor never reaches into them.
//!
//! # Layout
//! - [`supervisor`]: the controller, the one owner of the instance table.
//! - `handle`: how others steer and observe a formation.
//! - `snapshot`: what the controller publishes (each instance's state).
//! - [`instance`]: the life of one process, from spawn to an empty process group.
//! - [`process`]: spawning (`sh -c`, process groups, parent-death signal) and group signals.
//! - [`ports`]: who holds a TCP port (from `/proc`): the loopback address an instance is
//!   verified to serve, another process in its way, the ephemeral port range.
//! - [`output`]: the `HH:MM:SS web.1 | line` log multiplexer.
//! - [`scratch`]: the formation's runtime directory and each instance's scratch directory.
//! - [`backoff`]: restart delays.
//! - [`exit`]: how a process ended, and the matching shell exit code.
//! - [`watchdog`]: the guard that kills the formation if shoal itself is killed.
//! - [`work_dir`]: where each instance runs (the app directory, or a directory of its own).

pub mod backoff;
pub mod exit;
mod handle;
mod instance;
pub mod output;
pub mod ports;
pub mod process;
mod reader;
pub mod scratch;
mod snapshot;
pub mod supervisor;
pub mod watchdog;
pub mod work_dir;

pub use backoff::Backoff;
pub use exit::Exit;
pub use handle::{Handle, IfItFails};
pub use output::{Log, LogWriter, Style};
pub use scratch::RuntimeDir;
pub use snapshot::{InstanceInfo, Outcome, Phase, Snapshot, State};
pub use supervisor::{Options, Supervisor};
pub use watchdog::Watchdog;
pub use work_dir::WorkDirs;
