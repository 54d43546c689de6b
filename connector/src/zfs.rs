//! Clone-safe ZFS pool import and export, from the `zfs` crate, under the
//! names and signatures the connector (and the lab's `connector::zfs`
//! scenarios) have always used.
//!
//! The types and pure functions are the crate's own. The fallible functions
//! keep their `anyhow::Result` signatures: callers add context with
//! `anyhow::Context` and reach the typed cause with
//! `e.downcast_ref::<ZfsError>()`, which works because the crate's
//! [`ZfsError`] is the error wrapped, unchanged. An error whose class is
//! conflict, invalid or not-found also carries an [`EngineError`] of that
//! kind under it in the chain, so `EngineError::from_chain` reports it with
//! that kind instead of `Internal` (a busy dataset, a pool name or GUID in
//! use, a pool that is not ours are conflicts the caller can act on).

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use ::zfs::{
    unique_pool_name, Dataset, ErrorClass, ExportOutcome, ExportReport, ImportedPool, MountFlags,
    ZfsError,
};

use crate::engine::error::{EngineError, ErrorKind};

/// Wraps a crate error for the engine: the typed [`ZfsError`] stays the
/// outermost, reachable by downcast and first in the message, and an
/// [`EngineError`] of the matching kind (with a hint) is underneath it in
/// the chain, where `EngineError::from_chain` finds it, when the class says
/// what sort of failure it is.
fn engine(e: ZfsError) -> anyhow::Error {
    let (kind, what, hint) = match e.class() {
        ErrorClass::Conflict => (
            ErrorKind::Conflict,
            "it conflicts with what is imported or in use on this host",
            "export or stop what holds the pool or dataset, or use another volume name",
        ),
        ErrorClass::Invalid => (
            ErrorKind::Invalid,
            "the request cannot succeed as it is",
            "check the clone's devices and the pool name",
        ),
        ErrorClass::NotFound => (
            ErrorKind::NotFound,
            "no such pool on the clone's devices",
            "check that the devices given are the clone's LUNs that carry the pool",
        ),
        ErrorClass::Internal => return anyhow::Error::new(e),
    };
    anyhow::Error::new(EngineError::new(kind, what).with_hint(hint)).context(e)
}

/// Pools imported on this host now, as (name, GUID); see
/// [`::zfs::imported_pools`].
pub fn imported_pools() -> Result<Vec<(String, u64)>> {
    ::zfs::imported_pools().map_err(engine)
}

/// Fails with [`ZfsError::NameInUse`] or [`ZfsError::InvalidName`]; see
/// [`::zfs::ensure_name_free`].
pub fn ensure_name_free(name: &str) -> Result<()> {
    ::zfs::ensure_name_free(name).map_err(engine)
}

/// Imports a clone's pool by GUID from its own devices under a new name,
/// mounting nothing; see [`::zfs::import_clone`].
pub fn import_clone(
    devices: &[PathBuf],
    pool_guid: u64,
    new_name: &str,
    altroot: &Path,
    reguid: bool,
) -> Result<ImportedPool> {
    ::zfs::import_clone(devices, pool_guid, new_name, altroot, reguid).map_err(engine)
}

/// Mounts every planned dataset of `pool` under its altroot, confined and
/// without a journal (undone by [`export`]); see [`::zfs::mount_all`].
pub fn mount_all(pool: &mut ImportedPool, flags: MountFlags) -> Result<()> {
    ::zfs::mount_all(pool, flags).map_err(engine)
}

/// Resolves (creating what is missing, told to `journal`) the directory
/// for a dataset's `target` inside `altroot`; `Ok(Err(reason))` when the
/// clone's content refuses it; see [`::zfs::resolve_target`].
pub fn resolve_target(
    altroot: &Path,
    target: &str,
    journal: &mut dyn hostfs::clonefs::DirJournal,
) -> Result<std::result::Result<hostfs::clonefs::ResolvedDir, String>> {
    ::zfs::resolve_target(altroot, target, journal).map_err(engine)
}

/// Mounts `dataset` on the resolved `dir` through its fd; see
/// [`::zfs::mount_dataset`].
pub fn mount_dataset(
    dir: &hostfs::clonefs::ResolvedDir,
    dataset: &str,
    flags: MountFlags,
) -> Result<hostfs::mountfd::MountId> {
    ::zfs::mount_dataset(dir, dataset, flags).map_err(engine)
}

/// The host path `target` has inside `altroot` when no symlink is on the
/// way; see [`::zfs::mount::plain_host_path`].
pub fn plain_host_path(altroot: &Path, target: &str) -> Option<PathBuf> {
    ::zfs::mount::plain_host_path(altroot, target)
}

/// Unmounts a clone pool's datasets and exports it; see [`::zfs::export`].
pub fn export(name: &str, force: bool) -> Result<ExportReport> {
    ::zfs::export(name, force).map_err(engine)
}

/// Exports pool `name` only if its GUID is one of `guids` (or, with
/// `devices`, it is built from exactly those devices); see
/// [`::zfs::export_if_ours`].
pub fn export_if_ours(
    name: &str,
    guids: &[u64],
    devices: Option<&[PathBuf]>,
    force: bool,
) -> Result<ExportOutcome> {
    ::zfs::export_if_ours(name, guids, devices, force).map_err(engine)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The typed cause survives the anyhow wrapping and added context, as
    /// the lab scenarios and callers rely on; and the engine sees the kind.
    #[test]
    fn typed_errors_are_reachable_through_anyhow() {
        let e = ensure_name_free("c0t0d0").unwrap_err();
        let e = e.context("checking the clone's pool name");
        assert!(
            matches!(e.downcast_ref::<ZfsError>(), Some(ZfsError::InvalidName { name, .. }) if name == "c0t0d0"),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("looks like a disk name"), "{e:#}");
        let ee = EngineError::from_chain(e);
        assert_eq!(ee.kind, ErrorKind::Invalid, "{}", ee.message);
        assert!(
            ee.message.contains("looks like a disk name"),
            "{}",
            ee.message
        );
    }

    /// Conflicts (busy, not ours, name or GUID in use) reach the engine as
    /// Conflict, with the crate's message; internal failures stay Internal.
    #[test]
    fn conflicts_are_engine_conflicts() {
        for z in [
            ZfsError::Busy {
                what: "dataset p/d at /v/p/d".into(),
                holders: vec!["pid 7 (sh): cwd /v/p/d".into()],
            },
            ZfsError::NotOurs { name: "p".into() },
            ZfsError::OfflineReguid {
                guid: 42,
                holder: "gold".into(),
                why: "libzpool missing".into(),
            },
        ] {
            let text = z.to_string();
            let e = engine(z).context("exporting ZFS pool p");
            assert!(e.downcast_ref::<ZfsError>().is_some());
            let ee = EngineError::from_chain(e);
            assert_eq!(ee.kind, ErrorKind::Conflict, "{}", ee.message);
            assert!(ee.message.contains(&text), "{} / {text}", ee.message);
        }
        let e = engine(ZfsError::NotListed { name: "p".into() });
        assert_eq!(EngineError::from_chain(e).kind, ErrorKind::Internal);
    }
}
