//! Why a file could not be linted at all (as opposed to the findings in it).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("read '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML of one document does not parse; `doc_index` counts from 1.
    #[error("{file}: document {doc_index}: invalid YAML: {source}")]
    Parse {
        file: String,
        doc_index: usize,
        #[source]
        source: serde_yaml::Error,
    },
}
