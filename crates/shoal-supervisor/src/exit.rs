//! How a process ended.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// How an instance's main process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
    /// It could not be started at all.
    SpawnFailed(String),
}

impl Exit {
    /// The exit code a shell would report: the code, 128 + the signal number, or 127 when the
    /// process could not be started.
    pub fn shell_code(&self) -> i32 {
        match self {
            Exit::Code(code) => *code,
            Exit::Signal(signal) => 128 + signal,
            Exit::SpawnFailed(_) => 127,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal(signal) => write!(f, "was killed by {}", signal_name(*signal)),
            Exit::SpawnFailed(error) => write!(f, "could not be started: {error}"),
        }
    }
}

/// `SIGTERM` for 15, `signal 99` for numbers without a name.
pub fn signal_name(number: i32) -> String {
    Signal::try_from(number).map_or_else(|_| format!("signal {number}"), |s| s.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_codes_and_messages() {
        assert_eq!(Exit::Code(3).shell_code(), 3);
        assert_eq!(Exit::Signal(9).shell_code(), 137);
        assert_eq!(Exit::Signal(9).to_string(), "was killed by SIGKILL");
        assert_eq!(Exit::Code(1).to_string(), "exited with code 1");
        assert!(Exit::Code(0).success());
    }
}
