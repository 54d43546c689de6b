//! Clone-safe ZFS pool import and export, from the `zfs` crate, under the
//! names and signatures the connector (and the lab's `connector::zfs`
//! scenarios) have always used.
//!
//! The types and pure functions are the crate's own. The fallible functions
//! keep their `anyhow::Result` signatures: callers add context with
//! `anyhow::Context` and reach the typed cause with
//! `e.downcast_ref::<ZfsError>()`, which works because the crate's
//! [`ZfsError`] is the error wrapped, unchanged.

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use ::zfs::{unique_pool_name, Dataset, ExportReport, ImportedPool, ZfsError};

/// Pools imported on this host now, as (name, GUID); see
/// [`::zfs::imported_pools`].
pub fn imported_pools() -> Result<Vec<(String, u64)>> {
    Ok(::zfs::imported_pools()?)
}

/// Fails with [`ZfsError::NameInUse`] or [`ZfsError::InvalidName`]; see
/// [`::zfs::ensure_name_free`].
pub fn ensure_name_free(name: &str) -> Result<()> {
    Ok(::zfs::ensure_name_free(name)?)
}

/// Imports a clone's pool by GUID from its own devices under a new name;
/// see [`::zfs::import_clone`].
pub fn import_clone(
    devices: &[PathBuf],
    pool_guid: u64,
    new_name: &str,
    altroot: &Path,
    reguid: bool,
) -> Result<ImportedPool> {
    Ok(::zfs::import_clone(
        devices, pool_guid, new_name, altroot, reguid,
    )?)
}

/// Unmounts a clone pool's datasets and exports it; see [`::zfs::export`].
pub fn export(name: &str, force: bool) -> Result<ExportReport> {
    Ok(::zfs::export(name, force)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The typed cause survives the anyhow wrapping and added context, as
    /// the lab scenarios and callers rely on.
    #[test]
    fn typed_errors_are_reachable_through_anyhow() {
        let e = ensure_name_free("c0t0d0").unwrap_err();
        let e = e.context("checking the clone's pool name");
        assert!(
            matches!(e.downcast_ref::<ZfsError>(), Some(ZfsError::InvalidName { name, .. }) if name == "c0t0d0"),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("looks like a disk name"), "{e:#}");
    }
}
