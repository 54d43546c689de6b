//! Engine errors with a kind, so every front door can map them without
//! matching strings: the CLI to exit codes, the control API to HTTP status,
//! the Docker plugin to its `Err` text, CSI to gRPC codes.

use std::fmt;

/// What sort of failure it is — the one thing a front door decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong (a bad name, a bad path, conflicting
    /// options); retrying the same request cannot succeed.
    Invalid,
    /// Something the request names does not exist (a volume, a device).
    NotFound,
    /// The request collides with what exists: the data is claimed by another
    /// volume, the volume exists with other devices, it is in use.
    Conflict,
    /// Another operation on the same volume is in progress; retry later.
    Busy,
    /// Something outside goldmount is not there or not answering (a LUN that
    /// never appears, a missing kernel feature, a tool that is not installed).
    Unavailable,
    /// A failure goldmount did not foresee; the message says what happened.
    Internal,
}

impl ErrorKind {
    /// The CLI's exit status for this kind (documented in `goldmount --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal | ErrorKind::Unavailable => 1,
            ErrorKind::Invalid => 2,
            ErrorKind::Conflict => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Busy => 5,
        }
    }
}

/// An engine failure: its kind, what happened, and — as data, not CLI
/// wording — what the caller can do about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineError {
    /// What sort of failure.
    pub kind: ErrorKind,
    /// What was expected, what was found.
    pub message: String,
    /// What to try next, if anything helps.
    pub hint: Option<String>,
}

impl EngineError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    /// Adds what the caller can do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Shorthand for [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Turns an error chain from a pipeline stage into an engine error: an
    /// `EngineError` anywhere in the chain keeps its kind (with the outer
    /// context prepended), anything else is `Internal`.
    pub fn from_chain(e: anyhow::Error) -> Self {
        let text = format!("{e:#}");
        if let Some(inner) = e.chain().find_map(|c| c.downcast_ref::<EngineError>()) {
            let mut out = inner.clone();
            out.message = text;
            return out;
        }
        if let Some(l) = e.chain().find_map(|c| c.downcast_ref::<lvm::LvmError>()) {
            return Self::new(lvm_kind(l), text);
        }
        if let Some(z) = e.chain().find_map(|c| c.downcast_ref::<::zfs::ZfsError>()) {
            let kind = match z.class() {
                ::zfs::ErrorClass::Conflict => ErrorKind::Conflict,
                ::zfs::ErrorClass::Invalid => ErrorKind::Invalid,
                ::zfs::ErrorClass::NotFound => ErrorKind::NotFound,
                ::zfs::ErrorClass::Internal => ErrorKind::Internal,
            };
            return Self::new(kind, text);
        }
        Self::internal(text)
    }
}

/// What an LVM error means to a caller: the clone's VG is in use or
/// collides (conflict), the clone's metadata is damaged or incomplete
/// (invalid: retrying will not help), or the host's tools failed (internal).
fn lvm_kind(e: &lvm::LvmError) -> ErrorKind {
    use lvm::LvmError as L;
    match e {
        L::Busy { .. } | L::NameTaken { .. } | L::DuplicatePv { .. } | L::MixedDm { .. } => {
            ErrorKind::Conflict
        }
        L::Truncated { .. }
        | L::NoLabel
        | L::BadLabel { .. }
        | L::BadCrc { .. }
        | L::Corrupt { .. }
        | L::NoMetadata(_)
        | L::Syntax { .. }
        | L::Invalid(_)
        | L::MissingPvs { .. }
        | L::NotOneVg { .. }
        | L::BadName(_) => ErrorKind::Invalid,
        L::Timeout { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<crate::state::StateError> for EngineError {
    fn from(e: crate::state::StateError) -> Self {
        Self::new(ErrorKind::Unavailable, e.to_string()).with_hint(
            "check that the state store's directory is writable and not on a full filesystem",
        )
    }
}

/// The engine's result type.
pub type EngineResult<T> = Result<T, EngineError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_keep_their_meaning_through_context() {
        let busy = anyhow::Error::new(lvm::LvmError::Busy {
            device: "vg_x/lv".into(),
            holder: "mounted at /m".into(),
        })
        .context("deactivating volume group vg_x");
        assert_eq!(EngineError::from_chain(busy).kind, ErrorKind::Conflict);
        let damaged = anyhow::Error::new(lvm::LvmError::NoLabel).context("reading the PV");
        assert_eq!(EngineError::from_chain(damaged).kind, ErrorKind::Invalid);
        let gone = anyhow::Error::new(::zfs::ZfsError::NotFound {
            guid: 7,
            devices: "/dev/loop0".into(),
            stderr: String::new(),
        })
        .context("importing");
        let e = EngineError::from_chain(gone);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.starts_with("importing"), "{}", e.message);
        let other = anyhow::anyhow!("something else");
        assert_eq!(EngineError::from_chain(other).kind, ErrorKind::Internal);
    }
}
