//! The appliance's typed error and how each variant maps to an HTTP status
//! and a stable machine-readable `code`, so the API, the CLI and the client
//! all speak the same error language.

use serde::{Deserialize, Serialize};

/// Stable error codes carried in the JSON error body `{"error","code"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or path could not be parsed (HTTP 400).
    BadRequest,
    /// A name outside `[A-Za-z0-9_.-]{1,64}` (HTTP 400).
    BadName,
    /// No or a wrong `Authorization: Bearer` token (HTTP 401).
    Unauthorized,
    /// Authenticated, but the appliance's policy does not allow this, e.g. a
    /// gold copy source outside `--import-from`/`--allow-device` (HTTP 403).
    Forbidden,
    /// The named object does not exist (HTTP 404).
    NotFound,
    /// The request contradicts existing state (HTTP 409).
    Conflict,
    /// Well-formed but semantically invalid (HTTP 422).
    Invalid,
    /// A real internal failure: I/O, store, external tool (HTTP 500).
    Internal,
    /// A host's connector could not be reached or answered an error while
    /// the appliance mounted or unmounted through it (HTTP 502).
    ConnectorFailed,
    /// A host's connector did not answer within the deadline (HTTP 504).
    ConnectorTimeout,
}

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadName => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Invalid => 422,
            ErrorCode::Internal => 500,
            ErrorCode::ConnectorFailed => 502,
            ErrorCode::ConnectorTimeout => 504,
        }
    }
}

/// Everything that can go wrong in the appliance library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Request could not be parsed.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// Object name fails validation.
    #[error("bad {what} name {found:?}: expected 1 to 64 characters of [A-Za-z0-9_.-] (not \".\" or \"..\")")]
    BadName {
        /// Which kind of object ("host", "clone", ...).
        what: String,
        /// The name that was given.
        found: String,
    },
    /// Refused by policy; the message says what is allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Unknown object.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// Which kind of object.
        what: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// Conflicts with existing state; the message says what exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Semantically invalid request; the message says what was expected.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// File system I/O on the data directory or an image failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// An external command failed or timed out.
    #[error(transparent)]
    Command(#[from] crate::cmd::CmdError),
    /// The LIO configfs layer failed.
    #[error("LIO: {0}")]
    Lio(#[from] crate::lio::LioError),
    /// A presentation backend failed in some other way.
    #[error("presentation backend: {0}")]
    Backend(String),
    /// The one-call mount or unmount failed at the host's connector; says
    /// what the connector answered and what the appliance undid.
    #[error("{}", .0.message)]
    Connector(Box<ConnectorFailure>),
}

/// Why a mount or unmount through a host's connector failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorFailure {
    /// [`ErrorCode::Conflict`] when the connector refused (409),
    /// [`ErrorCode::ConnectorTimeout`] when it did not answer in time,
    /// [`ErrorCode::ConnectorFailed`] otherwise.
    pub code: ErrorCode,
    /// What was asked, what happened, what to try.
    pub message: String,
    /// What the connector answered, when it answered.
    pub connector: Option<ConnectorAnswer>,
    /// The appliance's own steps it undid (e.g. `unpresented clone "v1"`).
    pub undone: Vec<String>,
    /// What is still in place because it could not be undone safely.
    pub left: Vec<String>,
}

/// A connector's error answer, passed on unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorAnswer {
    /// The URL the appliance called.
    pub url: String,
    /// The HTTP status the connector answered.
    pub status: u16,
    /// Its JSON body (`{"kind","message","hint"}`), or the text when not JSON.
    pub body: serde_json::Value,
}

impl Error {
    /// The stable code (and thereby HTTP status) for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::BadName { .. } => ErrorCode::BadName,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Invalid(_) => ErrorCode::Invalid,
            Error::Io { .. }
            | Error::Store(_)
            | Error::Command(_)
            | Error::Lio(_)
            | Error::Backend(_) => ErrorCode::Internal,
            Error::Connector(f) => f.code,
        }
    }

    /// Shorthand for an [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The JSON error body of every non-2xx API response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Human-readable: what was expected and what was found.
    pub error: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// For a failure at a host's connector: its answer, what the appliance
    /// undid and what it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_failure: Option<Box<ConnectorFailure>>,
}

impl ErrorBody {
    /// A body with just a message and a code.
    pub fn new(error: String, code: ErrorCode) -> Self {
        ErrorBody {
            error,
            code,
            connector_failure: None,
        }
    }
}

impl From<&Error> for ErrorBody {
    fn from(e: &Error) -> Self {
        ErrorBody {
            error: e.to_string(),
            code: e.code(),
            connector_failure: match e {
                Error::Connector(f) => Some(f.clone()),
                _ => None,
            },
        }
    }
}
