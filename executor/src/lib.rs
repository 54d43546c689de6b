//! goldmount's host executor: host identity, block-device inventory,
//! targeted SCSI rescans, verified wait-for-device and clean device removal.
//! Synchronous, no async runtime: it backs the tiny `goldmount-executor`
//! binary and is called directly by the connector and the lab tests.
//!
//! Every reader takes a [`sysfs::Root`], so it runs on the live host or on a
//! sysfs tree captured in the lab (tests/fixtures).

pub mod cmd;
pub mod error;
pub mod hctl;
pub mod identity;
pub mod inventory;
pub mod iscsi_sysfs;
pub mod mounts;
pub mod remove;
pub mod rescan;
pub mod sysfs;
pub mod uevent;
pub mod vpd;
pub mod wait;

pub use error::{Error, Result};
pub use hctl::Hctl;
pub use sysfs::Root;
