//! Registration of this host with the copy-data appliance: the appliance
//! can present a clone to a host only once it knows the host's initiator
//! ports (iSCSI IQNs, FC WWPNs) and, to ask the host's connector before it
//! takes a clone away, the connector's callback URL and CA.
//!
//! [`register`] finds this host on the appliance by identity (each IQN,
//! then each WWPN, then the hostname), creates it when unknown, updates it
//! when its ports or callback differ, and writes nothing when they do not —
//! so it can run at every start and every few minutes. [`Backoff`] spaces
//! retries while the appliance is down.
//!
//! Blocking (ureq) and dependency-light, so both the CLI and the daemon
//! use it; libraries never print: everything is returned, errors typed.

pub mod backoff;
pub mod client;
pub mod error;
pub mod identity;
pub mod register;
mod tls;

pub use backoff::Backoff;
pub use client::{read_token_file, ApplianceClient, RegisteredHost};
pub use error::RegistrationError;
pub use identity::HostIdentity;
pub use register::{register, Change, Field, Registration};
