//! Importing a clone's pool: by GUID, from the clone's own devices only,
//! under a new name and an altroot, without mounting anything (`-N`), then
//! reguid; the datasets' mounts are planned here and made by the caller
//! (see [`crate::mount`]).

use std::path::{Path, PathBuf};

use serde::Serialize;
use toolrun::ToolError;

use crate::error::{Result, ZfsError};
use crate::export::export;
use crate::list;
use crate::name::pool_name_check;
use crate::run::{self, DEFAULT_TIMEOUT, IMPORT_TIMEOUT};

/// One filesystem dataset of an imported clone pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    /// Full dataset name under the new pool name (`pool/fs`).
    pub name: String,
    /// Where it is to be mounted: a path inside the altroot (`/tank/data`),
    /// from its mountpoint property, checked lexically (no `..`); resolved
    /// by fd when it is mounted. `None` when it is not to be mounted.
    pub target: Option<String>,
    /// Where it is mounted on the host, once a caller mounted it.
    pub mountpoint: Option<PathBuf>,
    /// Why it is not mounted (canmount, legacy/none mountpoint, no key, a
    /// mount point outside the volume).
    pub skipped: Option<String>,
}

/// A clone pool imported by [`import_clone`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedPool {
    /// The new, unique pool name.
    pub name: String,
    /// Pool GUID now (new if `reguid` was asked for).
    pub guid: u64,
    /// Pool GUID on the clone's labels before import (the gold's).
    pub original_guid: u64,
    /// The altroot every mount point is under.
    pub altroot: PathBuf,
    /// True when the GUID was changed: by `zpool reguid` after import, or
    /// before it (see [`ImportedPool::reguided_before_import`]).
    pub reguided: bool,
    /// Why the GUID was changed before the import, with libzpool
    /// ([`crate::offline`]): the clone's GUID was open on this host (its
    /// gold, or a clone that kept the gold's GUID).
    pub reguided_before_import: Option<String>,
    /// Why `zpool import -f` was needed, when it was.
    pub forced: Option<String>,
    /// Filesystem datasets, parents first (by target), the skipped last;
    /// none mounted yet.
    pub datasets: Vec<Dataset>,
}

/// Fails with [`ZfsError::NameInUse`] if a pool called `name` is imported,
/// and with [`ZfsError::InvalidName`] if ZFS would reject the name.
pub fn ensure_name_free(name: &str) -> Result<()> {
    pool_name_check(name).map_err(|why| ZfsError::InvalidName {
        name: name.to_string(),
        why,
    })?;
    if list::imported_pools()?.iter().any(|(n, _)| n == name) {
        return Err(ZfsError::NameInUse {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// `zpool import` refused because the labels say the pool is (or was last)
/// imported on another system: the normal state of a clone of a live pool.
pub(crate) fn needs_force(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    (s.contains("in use from another system") || s.contains("zpool import -f"))
        // Multihost (MMP) activity means a host is writing these very
        // devices right now: never forced.
        && !s.contains("multihost")
        && !s.contains("is imported on host")
}

/// Checks that each clone device is a block device or an image file.
fn check_devices(devices: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for d in devices {
        let bad = |found: String| ZfsError::BadDevice {
            path: d.clone(),
            found,
        };
        let meta = std::fs::metadata(d).map_err(|e| bad(e.to_string()))?;
        let t = meta.file_type();
        if !(t.is_block_device() || t.is_file()) {
            return Err(bad(if t.is_dir() {
                "a directory".into()
            } else {
                format!("{t:?}")
            }));
        }
    }
    Ok(())
}

/// Imports the pool with GUID `pool_guid` found on exactly `devices` (a
/// clone's LUNs, or their partitions) as `new_name`, with `-N` (nothing is
/// mounted), altroot `altroot` (so nothing the pool brings can be mounted
/// outside it by anyone else either) and `cachefile=none`; then `zpool
/// reguid` if asked, and plans where each filesystem dataset goes inside
/// the altroot. Mounting is the caller's: [`crate::mount::mount_all`], or
/// one by one with [`crate::mount::resolve_target`] and
/// [`crate::mount::mount_dataset`]. On any failure after the import the
/// pool is exported again, so nothing is left half-done.
///
/// When a pool with the same GUID is open on the host (the gold, or a clone
/// imported without reguid), the clone first gets a new GUID on its own
/// devices ([`crate::offline::reguid_offline`]: libzpool in a helper
/// process), since OpenZFS cannot open two pools with one GUID; otherwise,
/// with `reguid`, `zpool reguid` after the import leaves the GUID free for
/// the next clone of the same gold, and without it the clone holds the GUID
/// until it is exported.
///
/// `-f` is used only when zpool says the pool was last in use on another
/// system (what a clone of a pool that was imported when the gold copy was
/// taken looks like); the devices are this clone's own, so no other host
/// can be writing them. Multihost-protected pools are never forced.
pub fn import_clone(
    devices: &[PathBuf],
    pool_guid: u64,
    new_name: &str,
    altroot: &Path,
    reguid: bool,
) -> Result<ImportedPool> {
    if devices.is_empty() {
        return Err(ZfsError::NoDevices { guid: pool_guid });
    }
    check_devices(devices)?;
    ensure_name_free(new_name)?;
    // OpenZFS opens one pool per GUID: when the clone's is open (its gold
    // is imported here), the clone gets a new GUID first, on its own
    // devices, and is then imported by that one.
    let mut import_guid = pool_guid;
    let mut reguided_before_import = None;
    if let Some((holder, _)) = list::imported_pools()?
        .into_iter()
        .find(|(_, g)| *g == pool_guid)
    {
        let r = crate::offline::reguid_offline(devices, pool_guid, &holder)?;
        reguided_before_import = Some(format!(
            "pool GUID {pool_guid} is open on this host as pool {holder:?}; the clone's pool got GUID {} on its own devices before the import",
            r.new_guid
        ));
        import_guid = r.new_guid;
    }
    std::fs::create_dir_all(altroot).map_err(|error| ZfsError::CreateDir {
        what: "altroot",
        path: altroot.to_path_buf(),
        error,
    })?;
    let guid_s = import_guid.to_string();
    let altroot_s = altroot.to_string_lossy().into_owned();
    let dev_s: Vec<String> = devices
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    let mut args: Vec<&str> = vec!["import"];
    for d in &dev_s {
        args.extend(["-d", d.as_str()]);
    }
    args.extend([
        "-N",
        "-R",
        &altroot_s,
        "-o",
        "cachefile=none",
        &guid_s,
        new_name,
    ]);
    tracing::info!(guid = import_guid, name = new_name, devices = ?dev_s, "importing ZFS clone pool");
    let what = || format!("importing pool {import_guid} as {new_name}");
    let mut forced = None;
    match run::raw("zpool", &args, IMPORT_TIMEOUT) {
        Ok(_) => {}
        Err(ToolError::Failed { stderr, .. }) if needs_force(&stderr) => {
            let why = format!(
                "zpool: {}; the clone's labels carry the state of the pool it was copied from, and its devices are this clone's alone",
                stderr.lines().next().unwrap_or_default().trim()
            );
            tracing::info!(reason = %why, "retrying zpool import with -f");
            args.insert(1, "-f");
            run::run("zpool", &args, IMPORT_TIMEOUT, || {
                format!("{} with -f", what())
            })?;
            forced = Some(why);
        }
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("no such pool") => {
            return Err(ZfsError::NotFound {
                guid: import_guid,
                devices: dev_s.join(", "),
                stderr,
            });
        }
        Err(e) => return Err(run::tool_error(what(), e)),
    }
    let ids = Ids {
        original: pool_guid,
        imported: import_guid,
        reguided_before_import,
    };
    match finish_import(new_name, ids, altroot, reguid, forced) {
        Ok(p) => Ok(p),
        Err(error) => {
            tracing::warn!(pool = new_name, %error, "import failed after zpool import; exporting again");
            match export(new_name, true) {
                Ok(_) => Err(error),
                Err(e2) => Err(ZfsError::ExportAfterFailure {
                    name: new_name.to_string(),
                    error: Box::new(error),
                    export: Box::new(e2),
                }),
            }
        }
    }
}

/// The GUIDs of one import.
struct Ids {
    /// On the clone's labels as found (the gold's).
    original: u64,
    /// Imported by (new when reguided before the import).
    imported: u64,
    /// Why it was reguided before the import.
    reguided_before_import: Option<String>,
}

/// After `zpool import`: check it is the pool we asked for, reguid, plan.
fn finish_import(
    name: &str,
    ids: Ids,
    altroot: &Path,
    reguid: bool,
    forced: Option<String>,
) -> Result<ImportedPool> {
    let original_guid = ids.original;
    let mut guid = list::pool_guid(name)?;
    if guid != ids.imported {
        return Err(ZfsError::WrongPool {
            name: name.to_string(),
            expected: ids.imported,
            found: guid,
        });
    }
    let before = ids.reguided_before_import.is_some();
    if reguid && !before {
        run::run("zpool", &["reguid", name], DEFAULT_TIMEOUT, || {
            format!("zpool reguid {name}")
        })?;
        guid = list::pool_guid(name)?;
        if guid == original_guid {
            return Err(ZfsError::ReguidUnchanged {
                name: name.to_string(),
                guid,
            });
        }
    }
    let datasets = crate::mount::plan(list::list_filesystems(name)?, altroot);
    Ok(ImportedPool {
        name: name.to_string(),
        guid,
        original_guid,
        altroot: altroot.to_path_buf(),
        reguided: reguid || before,
        reguided_before_import: ids.reguided_before_import,
        forced,
        datasets,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn force_only_for_another_system() {
        let other = "cannot import 'tank': pool was previously in use from another system.\nLast accessed by x (hostid=1) at Sun Nov 22\nThe pool can be imported, use 'zpool import -f' to import the pool.";
        assert!(needs_force(other));
        let mmp = "cannot import 'tank': pool is imported on host 'x' (hostid=1).\nExport the pool on the other system, then run 'zpool import'.\nmultihost";
        assert!(!needs_force(mmp));
        assert!(!needs_force("cannot import '42': no such pool available"));
    }

    /// The checks that run before any zpool command, on real paths.
    #[test]
    fn refuses_missing_or_odd_devices_before_running_zpool() {
        let alt = std::env::temp_dir().join("zfs-import-never-created");
        let e = import_clone(&[], 42, "tank-v1", &alt, false).unwrap_err();
        assert!(matches!(e, ZfsError::NoDevices { guid: 42 }), "{e}");
        let missing = PathBuf::from("/dev/zfs-test-no-such-device");
        let e =
            import_clone(std::slice::from_ref(&missing), 42, "tank-v1", &alt, false).unwrap_err();
        assert!(
            matches!(&e, ZfsError::BadDevice { path, .. } if *path == missing),
            "{e}"
        );
        assert!(e.to_string().contains("No such file"), "{e}");
        let e = import_clone(&[PathBuf::from("/tmp")], 42, "tank-v1", &alt, false).unwrap_err();
        assert!(e.to_string().contains("found a directory"), "{e}");
        let e =
            import_clone(&[PathBuf::from("/dev/null")], 42, "tank-v1", &alt, false).unwrap_err();
        assert!(matches!(e, ZfsError::BadDevice { .. }), "{e}");
        assert!(!alt.exists(), "no altroot is made for a refused import");
    }

    #[test]
    fn refuses_an_invalid_name_before_running_zpool() {
        let e = ensure_name_free("mirror-1").unwrap_err();
        assert!(
            matches!(e, ZfsError::InvalidName { why, .. } if why.contains("reserved")),
            "{e}"
        );
    }
}
