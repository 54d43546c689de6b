//! The control API's error body and status: every failure — an engine
//! error, a malformed request, a busy volume — answers
//! `{"kind", "message", "hint"}` with the status its kind maps to, so a
//! client decides on `kind` and shows `message` and `hint` to a person.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use connector::engine::{EngineError, ErrorKind};
use serde::Serialize;

/// The HTTP status of an engine error kind. `Busy` is 409 like `Conflict`
/// (with `Retry-After`): the request is fine but collides with what is
/// happening now; clients tell the two apart by `kind`.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Busy => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// `invalid`, `not_found`, `conflict`, `busy`, `unavailable` or `internal`.
    pub kind: ErrorKind,
    /// What was expected, what was found.
    pub message: String,
    /// What to try next (`null` when nothing helps).
    pub hint: Option<String>,
}

impl ApiError {
    /// A request that cannot succeed as sent: 400.
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
    /// Another operation on the volume is running in this daemon.
    pub fn busy(volume: &str) -> Self {
        Self {
            kind: ErrorKind::Busy,
            message: format!("another operation on volume {volume} is in progress"),
            hint: Some("retry when it has finished; GET the volume to see its state".into()),
        }
    }
    /// Something the daemon did not foresee.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: message.into(),
            hint: None,
        }
    }
    /// Nothing at this path.
    pub fn no_route(what: String) -> Self {
        Self {
            kind: ErrorKind::NotFound,
            message: format!("no such endpoint: {what}"),
            hint: Some("GET /openapi.yaml lists the endpoints".into()),
        }
    }
    /// The metric label of this error's kind.
    pub fn kind_label(&self) -> &'static str {
        kind_label(self.kind)
    }
}

/// `kind` as it appears in bodies and metric labels.
pub fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "invalid",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Busy => "busy",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.kind);
        let busy = self.kind == ErrorKind::Busy;
        let mut r = (status, Json(self)).into_response();
        if busy {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status_and_label() {
        let all = [
            (ErrorKind::Invalid, 400, "invalid"),
            (ErrorKind::NotFound, 404, "not_found"),
            (ErrorKind::Conflict, 409, "conflict"),
            (ErrorKind::Busy, 409, "busy"),
            (ErrorKind::Unavailable, 503, "unavailable"),
            (ErrorKind::Internal, 500, "internal"),
        ];
        for (k, status, label) in all {
            assert_eq!(status_of(k).as_u16(), status, "{k:?}");
            assert_eq!(kind_label(k), label);
            // The body's kind is the engine's own serialisation.
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::from(label))
            );
        }
    }
}
