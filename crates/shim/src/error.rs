//! Task API errors: a ttrpc status code containerd understands (`NotFound` makes `kill` of a
//! finished process harmless, `AlreadyExists` and `FailedPrecondition` become its own error
//! kinds) and a message that reaches the user of `ctr` or the kubelet unchanged.

use containerd_shim::protos::ttrpc::{self, Code};
use hostprocess_engine::Error as EngineError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Code::NOT_FOUND, message)
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::INVALID_ARGUMENT, message)
    }

    pub fn precondition(message: impl Into<String>) -> Error {
        Error::new(Code::FAILED_PRECONDITION, message)
    }

    pub fn exists(message: impl Into<String>) -> Error {
        Error::new(Code::ALREADY_EXISTS, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Code::INTERNAL, message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Error {
        Error::new(Code::UNIMPLEMENTED, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        let code = match &e {
            EngineError::NotFound(_) => Code::NOT_FOUND,
            EngineError::Exists(_) => Code::ALREADY_EXISTS,
            EngineError::BadState { .. } => Code::FAILED_PRECONDITION,
            EngineError::InvalidSpec { .. }
            | EngineError::Spec(_)
            | EngineError::InvalidId { .. }
            | EngineError::Account(_)
            | EngineError::Resources(_)
            | EngineError::Mount(_)
            | EngineError::Command(_) => Code::INVALID_ARGUMENT,
            _ if e.is_not_found() => Code::NOT_FOUND,
            _ => Code::UNKNOWN,
        };
        Error::new(code, e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => Code::NOT_FOUND,
            std::io::ErrorKind::InvalidInput => Code::INVALID_ARGUMENT,
            _ => Code::UNKNOWN,
        };
        Error::new(code, e.to_string())
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code, e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_refusals_keep_their_message_and_get_a_matching_code() {
        let e: Error = EngineError::NotFound("c1".into()).into();
        assert_eq!(e.code, Code::NOT_FOUND);
        assert_eq!(e.message, "container c1 does not exist");
        let e: Error = EngineError::Spec("process is missing".into()).into();
        assert_eq!(e.code, Code::INVALID_ARGUMENT);
        assert!(e.message.contains("process is missing"));
        let e: Error = EngineError::BadState {
            id: "c1".into(),
            status: "running".into(),
            what: "stop it first".into(),
        }
        .into();
        assert_eq!(e.code, Code::FAILED_PRECONDITION);
    }

    #[test]
    fn a_ttrpc_status_carries_code_and_message() {
        let e: ttrpc::Error = Error::not_found("process already finished").into();
        match e {
            ttrpc::Error::RpcStatus(status) => {
                assert_eq!(status.code(), Code::NOT_FOUND);
                assert_eq!(status.message(), "process already finished");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
