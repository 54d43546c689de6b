//! goldmount reference copy-data appliance.
//!
//! Keeps gold copies (raw images) and thin writable clones of them in a data
//! directory, presents clones to registered hosts over LIO iSCSI or local loop
//! devices, and exposes all of it through a small JSON REST API
//! (see `openapi.yaml`). State lives in a `redb` file so a restart re-applies
//! every presentation.

pub mod api;
pub mod auth;
pub mod callback;
pub mod client;
pub mod cmd;
pub mod connector_api;
pub mod copy;
pub mod error;
pub mod lio;
pub mod model;
pub mod names;
pub mod present;
pub mod service;
pub mod source;
pub mod store;
pub mod tls;

pub use error::{Error, ErrorCode};
pub use service::{Appliance, ApplianceConfig};
