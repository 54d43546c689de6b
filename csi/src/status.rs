//! Engine error kinds to gRPC codes, and the driver's own request errors,
//! so a CO can decide on the code and a human on the message.

use connector::engine::{EngineError, ErrorKind};
use tonic::{Code, Status};

/// What a request lacks or gets wrong, before anything is asked of the engine.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A required field is empty.
    #[error("{field} is missing: the CSI spec requires it for this call")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field has a value the driver cannot use.
    #[error("{field} is invalid: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was expected and what was found.
        why: String,
    },
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

/// The gRPC status for an engine error. `conflict` is the code the calling
/// RPC uses for a collision with what exists (the CSI spec says
/// ALREADY_EXISTS for an incompatible repeat, FAILED_PRECONDITION for a
/// state the call cannot proceed from).
pub fn engine_status(e: &EngineError, conflict: Code) -> Status {
    let code = match e.kind {
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => conflict,
        ErrorKind::Busy => Code::Aborted,
        ErrorKind::Unavailable | ErrorKind::Internal => Code::Internal,
    };
    let message = match &e.hint {
        Some(hint) => format!("{}: {hint}", e.message),
        None => e.message.clone(),
    };
    Status::new(code, message)
}

/// An engine call that could not be run at all (its blocking task died).
pub fn task_failed(e: tokio::task::JoinError) -> Status {
    Status::internal(format!(
        "the engine call did not finish ({e}); check the driver's log, then retry"
    ))
}
