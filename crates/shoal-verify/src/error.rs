//! What can keep verify from reaching a verdict. None of these is a verdict: the command exits
//! with 2 (the user has something to fix), never with "stateless" or "stateful".

use std::io;
use std::path::PathBuf;

/// A scenario that cannot be read or used; always names the file, and the line when there is
/// one.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read the scenario `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("the scenario `{}` is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    /// Something wrong at a line of the file (a syntax error, an unknown variable, a URL to
    /// another host…).
    #[error("{}:{line}: {message}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Something wrong with the file as a whole.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// Why a verify run stopped without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The Procfile, `.env` files or formation spec.
    #[error(transparent)]
    Plan(#[from] shoal_procfile::PlanError),
    /// The flags or the formation cannot be verified as given.
    #[error("{0}")]
    Usage(String),
    /// The baseline runs disagree so much that nothing can be compared.
    #[error("{0}")]
    Baseline(String),
    /// The formation could not be started or did not become ready.
    #[error("{message}")]
    App {
        message: String,
        /// The last lines the instances printed, to show under the error.
        output: Vec<String>,
    },
    /// shoal's own files (the private copies, the runtime directory) could not be made.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Interrupted by the user (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl ScenarioError {
    pub(crate) fn at(path: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        ScenarioError::At {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}
