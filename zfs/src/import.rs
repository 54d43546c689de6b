//! Importing a clone's pool: by GUID, from the clone's own devices only,
//! under a new name and an altroot, then reguid and dataset mounts.

use std::path::{Path, PathBuf};

use serde::Serialize;
use toolrun::ToolError;

use crate::error::{Result, ZfsError};
use crate::export::export;
use crate::list::{self, mount_depth, FsRow};
use crate::name::pool_name_check;
use crate::run::{self, DEFAULT_TIMEOUT, IMPORT_TIMEOUT};

/// One filesystem dataset of an imported clone pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    /// Full dataset name under the new pool name (`pool/fs`).
    pub name: String,
    /// Where it is mounted (inside the altroot), `None` if it is not.
    pub mountpoint: Option<PathBuf>,
    /// Why it was not mounted (canmount, legacy/none mountpoint, no key).
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
    /// Why `zpool import -f` was needed, when it was.
    pub forced: Option<String>,
    /// Filesystem datasets, parents first.
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
/// clone's LUNs, or their partitions) as `new_name`, with `-N`, altroot
/// `altroot` and `cachefile=none`; then `zpool reguid` if asked, and mounts
/// its filesystem datasets under the altroot. On any failure after the
/// import the pool is exported again, so nothing is left half-done.
///
/// A pool with the same GUID must not be open on the host (see
/// [`ZfsError::GuidInUse`]): with `reguid`, the clone leaves the GUID free
/// for the next clone of the same gold; without it, the clone holds the GUID
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
    if let Some((holder, _)) = list::imported_pools()?
        .into_iter()
        .find(|(_, g)| *g == pool_guid)
    {
        return Err(ZfsError::GuidInUse {
            guid: pool_guid,
            holder,
        });
    }
    std::fs::create_dir_all(altroot).map_err(|error| ZfsError::CreateDir {
        what: "altroot",
        path: altroot.to_path_buf(),
        error,
    })?;
    let guid_s = pool_guid.to_string();
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
    tracing::info!(guid = pool_guid, name = new_name, devices = ?dev_s, "importing ZFS clone pool");
    let what = || format!("importing pool {pool_guid} as {new_name}");
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
                guid: pool_guid,
                devices: dev_s.join(", "),
                stderr,
            });
        }
        Err(e) => return Err(run::tool_error(what(), e)),
    }
    match finish_import(new_name, pool_guid, altroot, reguid, forced) {
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

/// After `zpool import`: check it is the pool we asked for, reguid, mount.
fn finish_import(
    name: &str,
    original_guid: u64,
    altroot: &Path,
    reguid: bool,
    forced: Option<String>,
) -> Result<ImportedPool> {
    let mut guid = list::pool_guid(name)?;
    if guid != original_guid {
        return Err(ZfsError::WrongPool {
            name: name.to_string(),
            expected: original_guid,
            found: guid,
        });
    }
    if reguid {
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
    let datasets = mount_datasets(name, altroot)?;
    Ok(ImportedPool {
        name: name.to_string(),
        guid,
        original_guid,
        altroot: altroot.to_path_buf(),
        forced,
        datasets,
    })
}

/// Why a dataset is not mounted automatically, or `None` if it is.
pub(crate) fn skip_reason(row: &FsRow, altroot: &Path) -> Option<String> {
    match row.canmount.as_str() {
        "off" => return Some("canmount=off".into()),
        "noauto" => {
            return Some("canmount=noauto: not mounted automatically on its own host either".into())
        }
        _ => {}
    }
    match row.mountpoint.as_str() {
        "none" | "-" => return Some("mountpoint=none".into()),
        "legacy" => return Some("mountpoint=legacy: mounted through an fstab, not by ZFS".into()),
        _ => {}
    }
    if row.keystatus == "unavailable" {
        return Some("encrypted and its key is not loaded: goldmount does not load keys".into());
    }
    if !Path::new(&row.mountpoint).starts_with(altroot) {
        return Some(format!(
            "mount point {} is outside the altroot {}",
            row.mountpoint,
            altroot.display()
        ));
    }
    None
}

/// Mounts the pool's filesystems that its own host would mount, parents
/// first, each with `zfs mount <dataset>`.
fn mount_datasets(pool: &str, altroot: &Path) -> Result<Vec<Dataset>> {
    let mut rows = list::list_filesystems(pool)?;
    rows.sort_by_key(|r| (mount_depth(&r.mountpoint), r.name.clone()));
    let mut out = Vec::new();
    for row in rows {
        let skipped = skip_reason(&row, altroot);
        if skipped.is_none() && !row.mounted {
            run::run("zfs", &["mount", &row.name], DEFAULT_TIMEOUT, || {
                format!("mounting dataset {} at {}", row.name, row.mountpoint)
            })?;
        }
        out.push(Dataset {
            mountpoint: skipped.is_none().then(|| PathBuf::from(&row.mountpoint)),
            name: row.name,
            skipped,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::list::parse_fs_rows;

    #[test]
    fn decides_which_datasets_to_mount() {
        let text = "c\t/vol/c\ton\t-\tno\nc/data\t/vol/c/data\ton\t-\tyes\nc/legacy\tlegacy\ton\t-\tno\nc/off\t/vol/c/off\toff\t-\tno\nc/na\t/vol/c/na\tnoauto\t-\tno\nc/enc\t/vol/c/enc\ton\tunavailable\tno\nc/out\t/elsewhere\ton\t-\tno\n";
        let rows = parse_fs_rows(text).unwrap();
        assert_eq!(rows.len(), 7);
        let alt = Path::new("/vol");
        let skips: Vec<Option<String>> = rows.iter().map(|r| skip_reason(r, alt)).collect();
        assert_eq!(skips[0], None);
        assert_eq!(skips[1], None);
        assert!(skips[2].as_deref().unwrap().contains("legacy"));
        assert!(skips[3].as_deref().unwrap().contains("canmount=off"));
        assert!(skips[4].as_deref().unwrap().contains("noauto"));
        assert!(skips[5].as_deref().unwrap().contains("key"));
        assert!(skips[6].as_deref().unwrap().contains("outside the altroot"));
    }

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
