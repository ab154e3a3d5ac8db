//! shoal's exit codes. Documented in the README; keep the two in step.

/// The formation was stopped on request (a control command), or a command succeeded.
pub(crate) const OK: i32 = 0;
/// shoal itself failed at run time (e.g. its runtime directory could not be created).
pub(crate) const FAILURE: i32 = 1;
/// Wrong flags, or a Procfile, `.env` file or formation spec that is not valid.
pub(crate) const USAGE: i32 = 2;

/// A control command found no running formation.
pub(crate) const NOT_RUNNING: i32 = 3;

/// The exit code for a stop caused by `signal`: 128 + its number, as shells report it.
pub(crate) fn for_signal(signal: i32) -> i32 {
    128 + signal
}
