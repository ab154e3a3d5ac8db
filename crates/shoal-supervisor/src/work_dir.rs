//! Where each instance runs. By default every instance runs in the plan's app directory, as
//! foreman runs them. A [`WorkDirs`] provider in [`Options`](crate::Options) can give every
//! start of every instance a directory of its own instead — `shoal verify` gives each one a
//! private copy of the app, so that what one instance writes to local disk the others never
//! see, as on separate machines.

use std::io;
use std::path::PathBuf;

use shoal_procfile::InstanceName;

/// Gives each start of an instance its working directory.
pub trait WorkDirs: Send + Sync + std::fmt::Debug {
    /// The directory instance `name` runs in this time. Called before every start of every
    /// instance, restarts and `release` included, on the instance's own task (so it may take
    /// a moment, e.g. to copy files). An error keeps the instance from starting: it is
    /// reported like a failed spawn, and the instance is restarted with backoff.
    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf>;
}
