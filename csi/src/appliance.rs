//! The appliance as the controller service uses it: where it is, how to
//! authenticate (the token file is re-read at every call, so rotating the
//! Secret needs no restart), and what its errors mean as gRPC codes.
//! The appliance's own client is blocking; it is only called on blocking
//! threads.

use std::path::PathBuf;

use appliance::client::{Client, ClientError};
use appliance::ErrorCode;
use tonic::{Code, Status};

/// How to reach the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceAccess {
    /// Base URL (`https://appliance:8470`).
    pub url: String,
    /// The CA that signed an https appliance's certificate.
    pub ca: Option<PathBuf>,
    /// The API token file (a mounted Secret).
    pub token_file: Option<PathBuf>,
}

impl ApplianceAccess {
    /// A client with the current token; UNAVAILABLE when the token or CA
    /// cannot be read (the CO retries; a fixed Secret is picked up).
    pub fn client(&self) -> Result<Client, Status> {
        let mut c = Client::new(&self.url);
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f).map_err(|e| {
                Status::unavailable(format!(
                    "cannot read the appliance API token {} ({e}): check the controller's Secret and --appliance-token-file",
                    f.display()
                ))
            })?;
            c = c.with_token(t.trim());
        }
        if let Some(ca) = &self.ca {
            c = c.with_ca_file(ca).map_err(|e| {
                Status::unavailable(format!(
                    "{e}: check the controller's Secret and --appliance-ca ({})",
                    ca.display()
                ))
            })?;
        }
        Ok(c)
    }
}

/// True when the appliance said "no such object".
pub fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { body, .. } if body.code == ErrorCode::NotFound)
}

/// The gRPC status for an appliance error during `action`. `conflict` is
/// the code the calling RPC's spec uses for a clash with existing state.
pub fn appliance_status(action: &str, e: &ClientError, conflict: Code) -> Status {
    match e {
        ClientError::Api { status, body } => {
            let code = match body.code {
                ErrorCode::NotFound => Code::NotFound,
                ErrorCode::Conflict => conflict,
                ErrorCode::BadRequest | ErrorCode::BadName | ErrorCode::Invalid => {
                    Code::InvalidArgument
                }
                ErrorCode::Unauthorized => Code::Unauthenticated,
                ErrorCode::Forbidden => Code::PermissionDenied,
                ErrorCode::ConnectorFailed | ErrorCode::ConnectorTimeout => Code::Unavailable,
                ErrorCode::Internal => Code::Internal,
            };
            Status::new(
                code,
                format!("{action}: the appliance answered {status}: {}", body.error),
            )
        }
        ClientError::Transport { url, message } => Status::unavailable(format!(
            "{action}: cannot reach the appliance at {url} ({message}); the call can be retried once it answers"
        )),
    }
}
