//! Shared helpers for the cross-crate integration tests and the lab scenarios.

pub mod golddisk;
pub mod lab;
