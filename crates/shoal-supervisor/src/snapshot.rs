//! What the supervisor publishes about the formation: each instance's state, as the router,
//! `shoal ps` and the control commands see it.

use std::net::SocketAddr;
use std::time::Instant;

use shoal_procfile::InstanceName;

use crate::cause::Cause;
use crate::exit::Exit;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Spawned, not yet accepting connections (probed types only).
    Starting,
    /// Running (types that are not probed).
    Running,
    /// Accepting connections on its port.
    Ready,
    /// Running, but taken out of the router's rotation before it is stopped.
    Draining,
    /// Sent SIGTERM, not yet exited.
    Stopping,
    /// Exited unexpectedly; waiting for its restart.
    Crashed,
    /// Not running and not coming back.
    Stopped,
}

impl State {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Crashed => "crashed",
            State::Stopped => "stopped",
        }
    }
}

/// Where the formation as a whole is in its life. Changes (scale, restart, stopping one
/// instance) are accepted only while it is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Its `release` command runs; no instance has started yet.
    #[default]
    Starting,
    /// Its instances run (and are restarted when they exit).
    Running,
    /// It is stopping: nothing is started or restarted any more.
    Stopping,
}

/// One instance as last seen by the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    pub name: InstanceName,
    pub port: u16,
    pub pid: Option<u32>,
    /// The loopback address where the instance's own listener was verified to serve its port
    /// (set while it is ready or draining). The router connects there and nowhere else: the
    /// same port at the other loopback address may be another user's listener.
    pub addr: Option<SocketAddr>,
    pub state: State,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How many times it was restarted, by the kind of cause, in the order of
    /// [`Cause::LABELS`].
    pub restarts_by_cause: [u32; Cause::LABELS.len()],
    /// When the current run started.
    pub started_at: Option<Instant>,
    /// How the previous run ended.
    pub last_exit: Option<Exit>,
    /// What the end of the previous run is put down to (shown as `LAST EXIT`).
    pub last_cause: Option<Cause>,
    /// Its memory limit in bytes (`--memory-limit`), if it has one.
    pub memory_limit: Option<u64>,
}

/// The formation as last seen by the controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub instances: Vec<InstanceInfo>,
}

impl Snapshot {
    /// Instances of `kind` that accept connections, with their ports.
    pub fn ready(&self, kind: &str) -> impl Iterator<Item = &InstanceInfo> {
        self.instances
            .iter()
            .filter(move |i| i.name.kind == kind && i.state == State::Ready)
    }
}

/// Why the formation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A stop was requested (a signal, or a control command).
    Stopped,
    /// With restarts off, this instance exited and the formation was stopped.
    InstanceExited { name: InstanceName, exit: Exit },
    /// `release` failed, so the formation never started.
    ReleaseFailed { exit: Exit },
}
