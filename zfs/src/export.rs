//! Exporting a clone's pool: its datasets' mounts undone deepest first (by
//! mount id, found in mountinfo by dataset name, never by a path the
//! clone's properties name), then `zpool export`; busy holders named, force
//! only when asked. [`export_if_ours`] first checks that the pool under the
//! name is the one that was imported (by GUID, or by its devices).

use std::path::{Path, PathBuf};

use hostfs::mountfd::{unmount_id, MountError, UnmountOutcome};
use serde::Serialize;
use toolrun::ToolError;

use crate::error::{holders_text, Result, ZfsError};
use crate::holders::holders;
use crate::list;
use crate::run::{self, IMPORT_TIMEOUT};

/// What [`export`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// The pool was not imported: nothing to do (teardown is idempotent).
    pub not_imported: bool,
    /// Datasets unmounted, deepest first.
    pub unmounted: Vec<String>,
    /// What `force` did that a plain export would not have (lazy unmounts,
    /// `zpool export -f`).
    pub forced: Vec<String>,
}

/// Mounts of `pool`'s datasets (and snapshots) in this mount namespace,
/// deepest first: (mount id, dataset, mount point).
fn pool_mounts(pool: &str) -> Result<Vec<(u32, String, PathBuf)>> {
    let all = mountinfo::current().map_err(|e| ZfsError::Path {
        what: "reading /proc/self/mountinfo".into(),
        error: hostfs::clonefs::PathError::Io {
            op: "read",
            path: "/proc/self/mountinfo".into(),
            source: e,
        },
    })?;
    let mut v: Vec<(u32, String, PathBuf)> = all
        .into_iter()
        .filter(|m| m.fstype == "zfs" && dataset_of_pool(&m.source, pool))
        .map(|m| (m.id, m.source, m.mount_point))
        .collect();
    v.sort_by_key(|(_, _, mp)| std::cmp::Reverse(mp.components().count()));
    Ok(v)
}

/// True if `source` (a ZFS mount's source: `pool`, `pool/fs`,
/// `pool/fs@snap`) belongs to `pool`.
pub(crate) fn dataset_of_pool(source: &str, pool: &str) -> bool {
    source
        .strip_prefix(pool)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('@'))
}

/// Unmounts a clone pool's datasets (deepest first) and exports it. Only a
/// pool with an altroot (every goldmount import has one) is exported. When
/// something uses a dataset it fails with [`ZfsError::Busy`] naming the
/// holders, unless `force`: then busy datasets are detached lazily and the
/// export is forced, and the report says so. A process that keeps a file
/// open in a detached dataset still blocks even a forced export: that is a
/// `Busy` error naming it, with the pool left imported and unmounted, and a
/// later export finishes the job. A pool that is not imported is
/// not an error. Directories made for mount points are the caller's to
/// remove (the engine journals them); none is removed here, since the
/// paths the pool's properties name are the clone's.
///
/// This does not check whose pool it is beyond the altroot: a caller that
/// recorded what it imported uses [`export_if_ours`].
pub fn export(name: &str, force: bool) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    if !list::imported_pools()?.iter().any(|(n, _)| n == name) {
        report.not_imported = true;
        return Ok(report);
    }
    let Some(altroot) = list::pool_altroot(name)? else {
        return Err(ZfsError::NotOurs {
            name: name.to_string(),
        });
    };
    // Holders of datasets detached lazily: once detached they cannot be
    // found by path any more, but they still keep the pool busy.
    let mut detached_holders: Vec<String> = Vec::new();
    for (id, dataset, mp) in pool_mounts(name)? {
        let mount_error = |error| ZfsError::Mount {
            dataset: dataset.clone(),
            target: mp.clone(),
            error: Box::new(error),
        };
        match unmount_id(id, false) {
            Ok(UnmountOutcome::Gone) => {}
            Ok(_) => report.unmounted.push(dataset.clone()),
            Err(MountError::Busy { .. }) => {
                let found = holders(&mp);
                if !force {
                    return Err(ZfsError::Busy {
                        what: format!("dataset {dataset} at {}", mp.display()),
                        holders: found,
                    });
                }
                unmount_id(id, true).map_err(mount_error)?;
                report.forced.push(format!(
                    "lazily unmounted busy dataset {dataset} at {} (holders: {})",
                    mp.display(),
                    holders_text(&found)
                ));
                detached_holders.extend(found);
                report.unmounted.push(dataset.clone());
            }
            Err(e) => return Err(mount_error(e)),
        }
    }
    let mut args = vec!["export"];
    if force {
        args.push("-f");
    }
    args.push(name);
    match run::raw("zpool", &args, IMPORT_TIMEOUT) {
        Ok(_) => {}
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("busy") => {
            // Even `zpool export -f` fails while a lazily detached dataset
            // is still open (seen in the lab with OpenZFS 2.1): the pool
            // stays imported, its datasets unmounted; exporting again once
            // the holders are gone finishes the teardown.
            let mut found = holders(&altroot);
            found.extend(detached_holders);
            return Err(ZfsError::Busy {
                what: format!("pool {name}"),
                holders: found,
            });
        }
        Err(e) => return Err(run::tool_error(format!("exporting pool {name}"), e)),
    }
    if force {
        report.forced.push(format!("zpool export -f {name}"));
    }
    tracing::info!(pool = name, "exported ZFS clone pool");
    Ok(report)
}

/// What [`export_if_ours`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExportOutcome {
    /// No pool of that name is imported: nothing to do.
    NotImported,
    /// A pool of that name is imported but it is not the recorded one (its
    /// GUID is none of the recorded, and its devices are not the recorded
    /// ones): left alone.
    NotOurs {
        /// The GUID the pool under that name has.
        found_guid: u64,
    },
    /// It was ours and is exported.
    Exported(ExportReport),
}

/// Exports pool `name` only if it is the pool that was imported: its GUID
/// is one of `guids` (the GUID recorded at import, and after a reguid the
/// new one), or — only when `devices` is given, for a step whose import or
/// reguid may have happened without its result being recorded (a crash in
/// between) — every device of the pool is one of `devices` (the clone's
/// own, claimed by one volume). Anything else under that name is another
/// volume's or the host's and is left alone.
pub fn export_if_ours(
    name: &str,
    guids: &[u64],
    devices: Option<&[PathBuf]>,
    force: bool,
) -> Result<ExportOutcome> {
    let Some(found) = list::imported_pools()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, g)| g)
    else {
        return Ok(ExportOutcome::NotImported);
    };
    let ours = guids.contains(&found)
        || match devices {
            Some(devs) => {
                let vdevs = list::pool_devices(name)?;
                let same = same_devices(&vdevs, devs);
                tracing::info!(pool = name, found_guid = found, ?vdevs, recorded = ?devs, same, "pool GUID not recorded; compared its devices");
                same
            }
            None => false,
        };
    if !ours {
        tracing::warn!(
            pool = name,
            found_guid = found,
            recorded = ?guids,
            "a pool of this name is imported but it is not the one recorded: left alone"
        );
        return Ok(ExportOutcome::NotOurs { found_guid: found });
    }
    export(name, force).map(ExportOutcome::Exported)
}

/// True if `vdevs` is not empty and each is the same block device (by
/// device number) as one of `recorded`.
pub(crate) fn same_devices(vdevs: &[PathBuf], recorded: &[PathBuf]) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rdev = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|m| m.rdev())
    };
    let mine: Vec<u64> = recorded.iter().filter_map(|p| rdev(p)).collect();
    !vdevs.is_empty()
        && vdevs
            .iter()
            .all(|v| rdev(v).is_some_and(|r| mine.contains(&r)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::run::DEFAULT_TIMEOUT;

    #[test]
    fn mounts_of_a_pool_by_source() {
        assert!(dataset_of_pool("tank", "tank"));
        assert!(dataset_of_pool("tank/a/b", "tank"));
        assert!(dataset_of_pool("tank@s", "tank"));
        assert!(dataset_of_pool("tank/a@s", "tank"));
        assert!(!dataset_of_pool("tank2", "tank"));
        assert!(!dataset_of_pool("tank-x/a", "tank"));
        assert!(!dataset_of_pool("tan", "tank"));
    }

    /// Real device numbers: a loop-less host still has /dev/null (a char
    /// device, never a match) and whatever block devices it has.
    #[test]
    fn devices_compare_by_number() {
        let blocks: Vec<PathBuf> = std::fs::read_dir("/dev")
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                use std::os::unix::fs::FileTypeExt;
                std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
            })
            .take(2)
            .collect();
        assert!(!same_devices(&[], &blocks), "no vdevs: not ours");
        assert!(!same_devices(
            &[PathBuf::from("/dev/null")],
            &[PathBuf::from("/dev/null")]
        ));
        if let [a, b] = blocks.as_slice() {
            assert!(same_devices(std::slice::from_ref(a), &blocks));
            assert!(same_devices(&[a.clone(), b.clone()], &blocks));
            assert!(!same_devices(
                &[a.clone(), b.clone()],
                std::slice::from_ref(a)
            ));
        }
    }

    /// Exporting a pool that is not imported is not an error (teardown is
    /// idempotent); with no working zpool on the machine (CI hosts have no
    /// OpenZFS, the lab has), it fails on the first tool run and says what
    /// it was doing.
    #[test]
    fn export_of_an_absent_pool() {
        let name = format!("gm-no-such-pool-{}", std::process::id());
        // The same listing export starts with (zfs-fuse's zpool, which the
        // host tests install, runs but has no `-p`).
        match toolrun::run(
            "zpool",
            &["list", "-H", "-p", "-o", "name,guid"],
            DEFAULT_TIMEOUT,
        ) {
            Ok(_) => {
                let r = export(&name, false).unwrap();
                assert!(r.not_imported && r.unmounted.is_empty() && r.forced.is_empty());
                let r = export_if_ours(&name, &[1], None, false).unwrap();
                assert_eq!(r, ExportOutcome::NotImported);
            }
            Err(tool) => {
                let s = export(&name, false).unwrap_err().to_string();
                let prefix = "listing imported ZFS pools (apt: zfsutils-linux): ";
                assert!(s.starts_with(prefix) && s.contains("zpool"), "{s}");
                assert!(s.ends_with(tool.stderr()), "{s} / {tool}");
            }
        }
    }
}
