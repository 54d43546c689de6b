//! Shared helpers for the cross-crate integration tests and the lab scenarios.

pub mod appliance_proc;
pub mod dockerd;
pub mod gmcli;
pub mod golddisk;
pub mod lab;
pub mod livegold;
pub mod lvmgold;
