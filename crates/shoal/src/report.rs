//! How shoal reports errors and warnings on stderr: `error: what failed`, then each cause on a
//! line of its own.

use shoal_procfile::procfile::ProcfileError;
use shoal_procfile::{PlanError, Warning};

use crate::exit;

/// An error that is the user's to fix (bad flags or input files): exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for UsageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Prints `err` with its causes and returns the exit code it calls for.
pub(crate) fn error(err: &anyhow::Error) -> i32 {
    let not_running = err.downcast_ref::<crate::commands::NotRunning>().is_some();
    let (top, code): (&dyn std::error::Error, i32) = match err.downcast_ref::<UsageError>() {
        Some(usage) => (usage.0.as_ref(), exit::USAGE),
        None if not_running => (err.as_ref(), exit::NOT_RUNNING),
        None => (err.as_ref(), exit::FAILURE),
    };
    eprintln!("error: {top}");
    let mut source = top.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if let Some(PlanError::Procfile(ProcfileError::NoEntries { warnings, .. })) = err
        .downcast_ref::<UsageError>()
        .and_then(|u| u.0.downcast_ref::<PlanError>())
    {
        for warning in warnings {
            eprintln!("  note: {warning}");
        }
    }
    code
}

/// Prints one warning.
pub(crate) fn warning(warning: &Warning) {
    eprintln!("warning: {warning}");
}
