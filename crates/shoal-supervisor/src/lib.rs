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
//! - [`memory`]: memory limits: a cgroup per instance, or sampling its resident memory.
//! - `life`: where one instance is in its life, and the pure transitions between its stages.
//! - `cause`: what the end of a run is put down to (`LAST EXIT`, the restart's cause).
//! - `error`: why a request made through the handle was refused, usage or failure.
//! - [`instance`]: the task that runs one process, from spawn to an empty process group.
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
mod cause;
mod error;
pub mod exit;
mod handle;
mod instance;
mod life;
pub mod memory;
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
pub use cause::Cause;
pub use error::Refused;
pub use exit::Exit;
pub use handle::{Handle, IfItFails};
pub use output::{Log, LogWriter, Style};
pub use scratch::RuntimeDir;
pub use snapshot::{InstanceInfo, Outcome, Phase, Snapshot, State};
pub use supervisor::{Options, Supervisor, UntilIdle};
pub use watchdog::Watchdog;
pub use work_dir::WorkDirs;
