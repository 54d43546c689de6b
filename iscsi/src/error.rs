//! The crate's typed errors. Each names the object it was about (portal,
//! target IQN, session, device) and, for iscsiadm, its exit code with the
//! meaning open-iscsi documents and its stderr, so a caller can act on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::Portal;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum IscsiError {
    /// A portal string that is not `host[:port]`, `ip[:port]` or `[v6][:port]`.
    #[error("invalid iSCSI portal {0:?} (expected host[:port], ipv4[:port] or [ipv6][:port], port 1-65535)")]
    BadPortal(String),

    /// A file or sysfs attribute could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// What was read.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A file had unexpected content.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// libopeniscsiusr could not be loaded (not installed, wrong version).
    #[error("libopeniscsiusr.so.0 unavailable ({0}); install the Debian package libopeniscsiusr (open-iscsi)")]
    LibraryUnavailable(String),

    /// A libopeniscsiusr call returned an error code.
    #[error("libopeniscsiusr {call} failed: {message} (LIBISCSI rc {code})")]
    Library {
        /// The C function.
        call: &'static str,
        /// Its return code.
        code: i32,
        /// `iscsi_strerror(code)`.
        message: String,
    },

    /// `iscsiadm` could not be started.
    #[error("cannot run {program}: {source} (install the Debian package open-iscsi)")]
    Spawn {
        /// Program name.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// `iscsiadm` exited non-zero (boxed: it carries a lot of context).
    #[error("{0}")]
    Iscsiadm(Box<IscsiadmFailure>),

    /// `iscsiadm` did not finish in time and was killed.
    #[error("iscsiadm {op} for {subject} timed out after {timeout:?}: {stderr}")]
    Timeout {
        /// What was attempted.
        op: String,
        /// Target and/or portal concerned.
        subject: String,
        /// The limit.
        timeout: Duration,
        /// Whatever stderr it had written.
        stderr: String,
    },

    /// Login failed on every portal asked for.
    #[error("login to {target} failed on every portal: {}", failures.iter().map(|(p, e)| format!("{p}: {e}")).collect::<Vec<_>>().join("; "))]
    LoginFailed {
        /// Target IQN.
        target: String,
        /// Per-portal failure messages.
        failures: Vec<(Portal, String)>,
    },

    /// Logout refused: a SCSI device of the session is still in use.
    #[error("not logging out of {target} at {portal} (session {sid}): /dev/{device} is {holder}")]
    InUse {
        /// Target IQN.
        target: String,
        /// Portal of the session.
        portal: Portal,
        /// Session id.
        sid: u32,
        /// The busy device (`sdX` or a partition).
        device: String,
        /// Who uses it (`mounted on /x`, `held by dm-3`, `open by pid 42 (dd)`).
        holder: String,
    },

    /// No session matched where one was required.
    #[error("no iSCSI session to {target} at {portal}")]
    NoSession {
        /// Target IQN.
        target: String,
        /// Portal.
        portal: Portal,
    },
}

/// A non-zero iscsiadm exit, with what it was about and what the code means.
#[derive(Debug)]
pub struct IscsiadmFailure {
    /// What was attempted (`login`, `logout`, `discovery`, `update node.session.scan`…).
    pub op: String,
    /// Target IQN concerned, if any.
    pub target: Option<String>,
    /// Portal concerned, if any.
    pub portal: Option<Portal>,
    /// Exit code.
    pub code: i32,
    /// Symbolic name of the code (`ISCSI_ERR_LOGIN_AUTH_FAILED`, …).
    pub name: &'static str,
    /// What open-iscsi says the code means.
    pub meaning: &'static str,
    /// iscsiadm's stderr (trimmed).
    pub stderr: String,
}

impl std::fmt::Display for IscsiadmFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "iscsiadm {} failed for {}: exit {} ({}: {}): {}",
            self.op,
            subject(&self.target, &self.portal),
            self.code,
            self.name,
            self.meaning,
            self.stderr
        )
    }
}

pub(crate) fn subject(target: &Option<String>, portal: &Option<Portal>) -> String {
    match (target, portal) {
        (Some(t), Some(p)) => format!("target {t} at {p}"),
        (Some(t), None) => format!("target {t}"),
        (None, Some(p)) => format!("portal {p}"),
        (None, None) => "-".to_string(),
    }
}

impl IscsiError {
    /// The iscsiadm exit code, when this error came from one.
    pub fn iscsiadm_code(&self) -> Option<i32> {
        match self {
            IscsiError::Iscsiadm(f) => Some(f.code),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IscsiError::Io {
            path: path.into(),
            source,
        }
    }
}
