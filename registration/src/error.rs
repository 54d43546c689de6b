//! Why a registration failed, split by what the caller should do next:
//! retry later ([`RegistrationError::is_retryable`]: the appliance is down,
//! overloaded or broken) or fix something first (a refused token, a bad CA,
//! a request the appliance refuses).

use std::path::PathBuf;

/// A registration that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// No HTTP exchange: connection refused, DNS, timeout.
    #[error("cannot reach the appliance at {url}: {message}; is it running and reachable from this host? (retrying is safe)")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the transport said.
        message: String,
    },
    /// The appliance answered 5xx: its problem, maybe passing.
    #[error("the appliance at {url} failed ({status}): {message} (retrying is safe)")]
    Server {
        /// The URL called.
        url: String,
        /// HTTP status (500..=599).
        status: u16,
        /// Its error message, or the body.
        message: String,
    },
    /// 401: no token, or not the appliance's token.
    #[error("the appliance at {url} refused the API token (401: {message}); {hint}")]
    Unauthorized {
        /// The URL called.
        url: String,
        /// The appliance's message.
        message: String,
        /// What to do (check the token file, or configure one).
        hint: &'static str,
    },
    /// Another 4xx: the appliance understood and said no (a port owned by
    /// another host, presentations on a port being removed, a bad name).
    #[error("the appliance at {url} refused the registration ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// The URL called.
        url: String,
        /// HTTP status (400..=499).
        status: u16,
        /// Its machine-readable code (`conflict`, `invalid`, ...), if any.
        code: Option<String>,
        /// Its message: what it expected and found.
        message: String,
    },
    /// The TLS handshake failed: the certificate does not chain to the CA
    /// given, or names another host.
    #[error("TLS with the appliance at {url} failed: {message}; check that [appliance] ca / --ca is the CA that signed the appliance's certificate and that the URL's host name is in it")]
    Tls {
        /// The URL called.
        url: String,
        /// rustls' reason.
        message: String,
    },
    /// The CA file is unreadable or holds no usable certificate.
    #[error("appliance CA {}: {message}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The CA PEM handed to the appliance for callbacks cannot be read.
    #[error("callback CA {}: {message}", path.display())]
    BadCallbackCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The token file cannot be read or holds no token.
    #[error("API token file {}: {message}", path.display())]
    BadToken {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The appliance URL cannot be used.
    #[error("appliance URL {url:?}: {message}")]
    BadUrl {
        /// As given.
        url: String,
        /// What was expected.
        message: String,
    },
    /// The appliance answered something that is not its API.
    #[error("unexpected answer from the appliance at {url}: {message}")]
    BadResponse {
        /// The URL called.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// Nothing to register: no IQN and no online FC port.
    #[error("this host has no iSCSI initiator name and no online FC port to register; install open-iscsi (it writes /etc/iscsi/initiatorname.iscsi) or bring an HBA port online")]
    NoInitiator,
    /// The host is new to the appliance but its name cannot be a host name there.
    #[error("cannot register under the host name {found:?}: expected 1 to 64 characters of [A-Za-z0-9_.-]; set a valid hostname")]
    BadHostName {
        /// The hostname.
        found: String,
    },
    /// This host's ports belong to different hosts on the appliance.
    #[error("this host's ports are registered to different appliance hosts ({}): {details}; merge them on the appliance (remove the stale host's ports) before registering", hosts.join(", "))]
    Split {
        /// The appliance hosts involved.
        hosts: Vec<String>,
        /// Which port belongs to which host.
        details: String,
    },
}

impl RegistrationError {
    /// True when trying again later may succeed without anyone changing
    /// anything (the appliance is down, overloaded, restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Server { .. } | Self::BadResponse { .. }
        )
    }

    /// A short stable label (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Server { .. } => "server_error",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Refused { .. } => "refused",
            Self::Tls { .. } => "tls",
            Self::BadCa { .. }
            | Self::BadCallbackCa { .. }
            | Self::BadToken { .. }
            | Self::BadUrl { .. } => "config",
            Self::BadResponse { .. } => "bad_response",
            Self::NoInitiator | Self::BadHostName { .. } => "identity",
            Self::Split { .. } => "split",
        }
    }
}
