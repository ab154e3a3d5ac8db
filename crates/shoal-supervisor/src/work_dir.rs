//! Where each instance runs. By default every instance runs in the plan's app directory, as
//! foreman runs them. A [`WorkDirs`] provider in [`Options`](crate::Options) can give every
//! start of every instance a directory of its own instead — `shoal verify` gives each one a
//! private copy of the app, so that what one instance writes to local disk the others never
//! see, as on separate machines — and is told when each start ends, so that it can look at
//! what the instance left in its scratch directory before that is emptied.

use std::io;
use std::path::{Path, PathBuf};

use shoal_procfile::InstanceName;

/// Gives each start of an instance its working directory.
pub trait WorkDirs: Send + Sync + std::fmt::Debug {
    /// The directory instance `name` runs in this time. Called before every start of every
    /// instance, restarts and `release` included, on the instance's own task (so it may take
    /// a moment, e.g. to copy files). An error keeps the instance from starting: it is
    /// reported like a failed spawn, and the instance is restarted with backoff.
    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf>;

    /// Called when a start of instance `name` has ended (its process group has exited, or it
    /// never started), just before its scratch directory `scratch` is emptied: what the
    /// instance left there is still in place. Called on the instance's own task, before the
    /// exit is reported, so it should be quick. Does nothing unless the provider overrides it.
    fn exited(&self, name: &InstanceName, scratch: &Path) {
        let _ = (name, scratch);
    }
}
