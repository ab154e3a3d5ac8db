//! Why an instance's run ended: what `shoal ps` shows as `LAST EXIT`, what the log says when it
//! restarts, and the `cause` label of `shoal_instance_restarts_total`.

use std::fmt;

use crate::exit::{Exit, signal_name};

/// What the end of a run is put down to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It exited with this code.
    Exit(i32),
    /// It was killed by this signal, not sent by shoal for a reason of its own.
    Signal(i32),
    /// Chaos mode killed it.
    Chaos,
    /// It was not ready within its boot timeout, so shoal killed it.
    FailedReadiness,
    /// It used twice its memory limit (shoal restarted it), or the kernel's OOM killer ended
    /// it in its memory cgroup.
    MemoryLimit,
    /// It could not be started at all.
    NotStarted(String),
}

impl Cause {
    /// Every kind of cause, as [`Cause::label`] names them: each instance exports a restart
    /// count for each, so that a counter exists (at 0) before its first restart.
    pub const LABELS: [&'static str; 6] = [
        "exit",
        "signal",
        "chaos",
        "failed_readiness",
        "memory_limit",
        "not_started",
    ];

    /// The kind of cause, for a metric label: a few fixed values, never the code or the
    /// signal, so the number of series stays bounded.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Exit(_) => "exit",
            Cause::Signal(_) => "signal",
            Cause::Chaos => "chaos",
            Cause::FailedReadiness => "failed_readiness",
            Cause::MemoryLimit => "memory_limit",
            Cause::NotStarted(_) => "not_started",
        }
    }

    /// The position of [`Cause::label`] in [`Cause::LABELS`].
    pub fn index(&self) -> usize {
        Cause::LABELS
            .iter()
            .position(|label| *label == self.label())
            .unwrap_or(0)
    }
}

impl From<&Exit> for Cause {
    fn from(exit: &Exit) -> Self {
        match exit {
            Exit::Code(code) => Cause::Exit(*code),
            Exit::Signal(signal) => Cause::Signal(*signal),
            Exit::SpawnFailed(error) => Cause::NotStarted(error.clone()),
        }
    }
}

/// As `shoal ps` shows it: `code 3`, `signal SIGKILL`, `chaos`, `failed readiness`,
/// `memory limit`, `not started: …`.
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Exit(code) => write!(f, "code {code}"),
            Cause::Signal(signal) => write!(f, "signal {}", signal_name(*signal)),
            Cause::Chaos => f.write_str("chaos"),
            Cause::FailedReadiness => f.write_str("failed readiness"),
            Cause::MemoryLimit => f.write_str("memory limit"),
            Cause::NotStarted(error) => write!(f, "not started: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_as_ps_shows_them() {
        assert_eq!(Cause::from(&Exit::Code(3)).to_string(), "code 3");
        assert_eq!(Cause::from(&Exit::Signal(9)).to_string(), "signal SIGKILL");
        assert_eq!(Cause::MemoryLimit.to_string(), "memory limit");
        assert_eq!(Cause::FailedReadiness.to_string(), "failed readiness");
        assert_eq!(Cause::MemoryLimit.label(), "memory_limit");
        for cause in [Cause::Exit(1), Cause::Chaos, Cause::NotStarted("x".into())] {
            assert_eq!(Cause::LABELS[cause.index()], cause.label());
        }
    }
}
