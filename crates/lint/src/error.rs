//! Why a file or a document could not be linted at all (as opposed to the findings in it).

use std::path::PathBuf;

use crate::yaml::Position;

/// Each message carries its cause once, so that it prints as one line (no `source()` chain).
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// A file or directory that cannot be read.
    #[error("read '{}': {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The YAML of one document does not parse; `doc_index` counts from 1.
    #[error("{file}:{}:{}: document {doc_index}: invalid YAML: {reason}", at.line, at.column)]
    Parse {
        file: String,
        doc_index: usize,
        at: Position,
        reason: String,
    },
}

impl LintError {
    /// The file or directory at fault, as the user named it.
    pub fn file(&self) -> String {
        match self {
            LintError::Read { path, .. } => path.display().to_string(),
            LintError::Parse { file, .. } => file.clone(),
        }
    }
}
