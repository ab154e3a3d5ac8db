//! Why the supervisor refused or could not carry out a request made through
//! [`Handle`](crate::Handle). Each error knows at its source whether it is the asker's mistake
//! ([`Refused::is_usage`]) or something the formation could not do, so that the control socket
//! and the command line need not guess from the text.

use shoal_procfile::InstanceName;

/// A request to the supervisor that was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The process type is not in the Procfile.
    #[error("unknown process type `{kind}`")]
    UnknownType { kind: String },
    /// No instance of that name is part of the formation (or it is on its way out).
    #[error("no instance `{name}` is running")]
    NoSuchInstance { name: InstanceName },
    /// An instance of that name is still in the formation.
    #[error("`{name}` is still in the formation")]
    StillThere { name: InstanceName },
    /// The index is outside what a type may have.
    #[error("`{kind}.{index}` is out of range (1 to {max})")]
    OutOfRange { kind: String, index: u32, max: u32 },
    /// The type already has the most instances one type can have.
    #[error("`{kind}` already has {max} instances, the most one type can have")]
    TooMany { kind: String, max: u32 },
    /// The instance's port would lie beyond 65535.
    #[error("`{name}` would need port {port}")]
    NoPort { name: InstanceName, port: u32 },
    /// The formation's `release` command still runs.
    #[error("the formation is starting (its `release` command runs)")]
    Starting,
    /// The formation is stopping (or has stopped).
    #[error("the formation is stopping")]
    Stopping,
    /// The formation is not running (it is starting or stopping).
    #[error("the formation is not running")]
    NotRunning,
    /// The instance exited and waits for its restart.
    #[error("`{name}` is not running (it is waiting to restart)")]
    WaitingToRestart { name: InstanceName },
    /// The instance has no running process.
    #[error("`{name}` is not running")]
    NoProcess { name: InstanceName },
    /// An instance started with [`Handle::boot`](crate::Handle::boot) exited or was killed
    /// before it was up; the text says which.
    #[error("{why}")]
    NotUp { name: InstanceName, why: String },
}

impl Refused {
    /// Whether the request itself was wrong (a type or instance that does not exist, an index
    /// out of range), rather than something the formation could not do as it is now.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Refused::UnknownType { .. }
                | Refused::NoSuchInstance { .. }
                | Refused::StillThere { .. }
                | Refused::OutOfRange { .. }
                | Refused::TooMany { .. }
                | Refused::NoPort { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asker_s_mistakes_are_usage_errors() {
        let name = InstanceName::new("web", 2);
        assert!(Refused::UnknownType { kind: "wbe".into() }.is_usage());
        assert!(Refused::NoSuchInstance { name: name.clone() }.is_usage());
        assert!(!Refused::Stopping.is_usage());
        assert!(!Refused::WaitingToRestart { name: name.clone() }.is_usage());
        assert_eq!(
            Refused::WaitingToRestart { name }.to_string(),
            "`web.2` is not running (it is waiting to restart)"
        );
    }
}
