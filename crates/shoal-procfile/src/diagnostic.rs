//! Warnings about input that shoal accepts but that is probably not what the author meant.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A line of an input file that shoal accepted with a reservation; `shoal check --strict` treats
/// each one as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The file the line is in.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, in a sentence fragment.
    pub message: String,
    /// What the author probably meant, when that can be guessed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean `{suggestion}`?)")?;
        }
        Ok(())
    }
}
