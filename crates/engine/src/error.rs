//! Typed errors: each names the container, path or value at fault and, for refusals, what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the message (one line, crun-style), not a separate source, so
    // printing the error chain does not repeat it.
    #[error("{op} '{}': {cause}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{op}: {cause}")]
    Sys { op: String, cause: std::io::Error },
    #[error("invalid spec '{}': {reason}", path.display())]
    InvalidSpec { path: PathBuf, reason: String },
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {id} is {status}: {what}")]
    BadState {
        id: String,
        status: String,
        what: String,
    },
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("container {id}: state file '{}' is corrupt: {reason}", path.display())]
    CorruptState {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Account(#[from] crate::plan::account::AccountError),
    #[error(transparent)]
    Resources(#[from] crate::plan::resources::ResourceError),
    #[error(transparent)]
    Mount(#[from] crate::plan::mounts::MountError),
    #[error(transparent)]
    Command(#[from] crate::plan::process::CommandError),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }

    pub fn sys(op: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Sys {
            op: op.into(),
            cause: source.into(),
        }
    }

    pub fn container(id: &str, message: impl Into<String>) -> Error {
        Error::Container {
            id: id.to_string(),
            message: message.into(),
        }
    }

    /// True when the thing to operate on is already gone (idempotent cleanup).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Io { cause, .. } | Error::Sys { cause, .. } => {
                cause.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}
