//! Clone-safe ZFS pool import and export.
//!
//! A clone carries its gold pool's name and pool GUID, and the gold pool (or
//! another clone of it) may be imported on this host already. So a clone's
//! pool is imported by GUID under a new, unique name, reading only the clone's
//! own devices (`-d DEV` for each, never a scan of `/dev`), without automatic
//! mounts (`-N`), under an altroot inside the volume path (`-R`) and without
//! touching the host's cache file (`cachefile=none`). Its datasets are then
//! mounted one by one (`zfs mount -a` would mount every pool on the host).
//!
//! The pool GUID and name come from fsdetect's `zfs_member` signature:
//! `UUID` is the pool GUID in decimal, `LABEL` the pool name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::mounter;
use crate::tools::{self, ToolError, DEFAULT_TIMEOUT};

/// `zpool import` reads every label and may replay the intent log: slow
/// under emulation and on big pools, so it gets more time than other tools.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest pool name goldmount generates (ZFS allows 255 bytes for a whole
/// dataset name, and the pool name is the prefix of every dataset's).
const MAX_POOL_NAME: usize = 120;

/// ZFS failures a caller may want to handle (wrapped in `anyhow::Error`;
/// reach them with `downcast_ref`).
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// A pool of that name is imported already: a second one cannot be.
    #[error("a ZFS pool named {name:?} is already imported on this host (zpool list); choose another name or export it first")]
    NameInUse {
        /// The colliding name.
        name: String,
    },
    /// The name breaks ZFS's pool naming rules.
    #[error("{name:?} is not a valid ZFS pool name: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A dataset or the pool is in use; nothing was forced.
    #[error("{what} is busy; holders: {}; close them or use force", holders_text(.holders))]
    Busy {
        /// The busy dataset, mount point or pool.
        what: String,
        /// Processes using it, as `pid N (comm): how`.
        holders: Vec<String>,
    },
    /// A pool with the clone's pool GUID is open on this host (the gold
    /// itself, or a clone imported without reguid). OpenZFS cannot open two
    /// pools with one GUID: libzfs hides the clone and the kernel refuses it
    /// ("a pool with guid … is already open", openzfs/zfs#11404).
    #[error("pool GUID {guid} is already open on this host as pool {holder:?}; OpenZFS cannot open two pools with one GUID (openzfs/zfs#11404), so this clone can only be imported once {holder:?} is exported, or when every pool of this lineage is imported with reguid")]
    GuidInUse {
        /// The clone's pool GUID.
        guid: u64,
        /// The imported pool holding it.
        holder: String,
    },
    /// Export was asked for a pool goldmount did not import.
    #[error("pool {name:?} has no altroot, so goldmount did not import it (it imports every clone with -R); refusing to export a host pool")]
    NotOurs {
        /// The pool.
        name: String,
    },
    /// The devices hold no importable pool with that GUID.
    #[error("no importable ZFS pool with GUID {guid} on {devices}: {stderr}")]
    NotFound {
        /// The pool GUID asked for.
        guid: u64,
        /// The devices searched.
        devices: String,
        /// What zpool said.
        stderr: String,
    },
}

fn holders_text(h: &[String]) -> String {
    if h.is_empty() {
        "none found in /proc (kernel users, e.g. a nested mount or an NFS export?)".to_string()
    } else {
        h.join("; ")
    }
}

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

/// A unique pool name for a clone's pool: `<base>-<volume>`, reduced to the
/// characters ZFS allows, prefixed with `gm-` when ZFS would reject it
/// otherwise. Volume names are unique on a host, so two clones of one gold
/// pool never get the same name; [`ensure_name_free`] catches a host pool
/// that happens to be called the same.
pub fn unique_pool_name(base: &str, volume: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("{}-{}", clean(base), clean(volume));
    if pool_name_check(&name).is_err() {
        name = format!("gm-{name}");
    }
    if name.len() > MAX_POOL_NAME {
        // Keep the volume part whole: it is what makes the name unique.
        let v = clean(volume);
        let keep = MAX_POOL_NAME.saturating_sub(v.len() + 4);
        let b: String = clean(base).chars().take(keep).collect();
        name = format!("gm-{b}-{v}");
        name.truncate(MAX_POOL_NAME);
    }
    name
}

/// ZFS's pool name rules (zfs_namecheck.c `pool_namecheck` and libzfs
/// `zpool_name_valid` for a pool being created or imported).
fn pool_name_check(name: &str) -> std::result::Result<(), &'static str> {
    let Some(first) = name.chars().next() else {
        return Err("empty");
    };
    if name.len() > 255 {
        return Err("longer than 255 bytes");
    }
    if !first.is_ascii_alphabetic() {
        return Err("must begin with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.: ".contains(c))
    {
        return Err("only letters, digits, '_', '-', '.', ':' and ' ' are allowed");
    }
    let b = name.as_bytes();
    if b[0] == b'c' && b.get(1).is_some_and(u8::is_ascii_digit) {
        return Err("c<digit>… looks like a disk name");
    }
    if ["mirror", "raidz", "draid", "spare"]
        .iter()
        .any(|p| name.starts_with(p))
        || name == "log"
    {
        return Err("reserved (mirror, raidz, draid, spare, log)");
    }
    Ok(())
}

/// Pools imported on this host now, as (name, GUID).
pub fn imported_pools() -> Result<Vec<(String, u64)>> {
    let out = tools::run(
        "zpool",
        &["list", "-H", "-p", "-o", "name,guid"],
        DEFAULT_TIMEOUT,
    )
    .context("listing imported ZFS pools (apt: zfsutils-linux)")?;
    parse_name_guid(&out.stdout)
}

fn parse_name_guid(text: &str) -> Result<Vec<(String, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, guid) = l
                .split_once('\t')
                .with_context(|| format!("unexpected `zpool list` line {l:?}"))?;
            let guid = guid
                .trim()
                .parse()
                .with_context(|| format!("pool GUID in `zpool list` line {l:?}"))?;
            Ok((name.to_string(), guid))
        })
        .collect()
}

/// Fails with [`ZfsError::NameInUse`] if a pool called `name` is imported,
/// and with [`ZfsError::InvalidName`] if ZFS would reject the name.
pub fn ensure_name_free(name: &str) -> Result<()> {
    pool_name_check(name).map_err(|why| ZfsError::InvalidName {
        name: name.to_string(),
        why,
    })?;
    if imported_pools()?.iter().any(|(n, _)| n == name) {
        return Err(ZfsError::NameInUse {
            name: name.to_string(),
        }
        .into());
    }
    Ok(())
}

/// `zpool import` refused because the labels say the pool is (or was last)
/// imported on another system: the normal state of a clone of a live pool.
fn needs_force(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    (s.contains("in use from another system") || s.contains("zpool import -f"))
        // Multihost (MMP) activity means a host is writing these very
        // devices right now: never forced.
        && !s.contains("multihost")
        && !s.contains("is imported on host")
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
        bail!("import of pool {pool_guid}: no devices given");
    }
    for d in devices {
        let meta = std::fs::metadata(d).with_context(|| format!("clone device {}", d.display()))?;
        use std::os::unix::fs::FileTypeExt;
        if !(meta.file_type().is_block_device() || meta.is_file()) {
            bail!("{} is neither a block device nor a file", d.display());
        }
    }
    ensure_name_free(new_name)?;
    if let Some((holder, _)) = imported_pools()?.into_iter().find(|(_, g)| *g == pool_guid) {
        return Err(ZfsError::GuidInUse {
            guid: pool_guid,
            holder,
        }
        .into());
    }
    std::fs::create_dir_all(altroot)
        .with_context(|| format!("creating altroot {}", altroot.display()))?;
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
    let mut forced = None;
    match tools::run("zpool", &args, IMPORT_TIMEOUT) {
        Ok(_) => {}
        Err(ToolError::Failed { stderr, .. }) if needs_force(&stderr) => {
            let why = format!(
                "zpool: {}; the clone's labels carry the state of the pool it was copied from, and its devices are this clone's alone",
                stderr.lines().next().unwrap_or_default().trim()
            );
            tracing::info!(reason = %why, "retrying zpool import with -f");
            args.insert(1, "-f");
            tools::run("zpool", &args, IMPORT_TIMEOUT)
                .with_context(|| format!("importing pool {pool_guid} as {new_name} with -f"))?;
            forced = Some(why);
        }
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("no such pool") => {
            return Err(ZfsError::NotFound {
                guid: pool_guid,
                devices: dev_s.join(", "),
                stderr,
            }
            .into());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("importing pool {pool_guid} as {new_name}"))
        }
    }
    match finish_import(new_name, pool_guid, altroot, reguid, forced) {
        Ok(p) => Ok(p),
        Err(e) => {
            tracing::warn!(pool = new_name, error = %format!("{e:#}"), "import failed after zpool import; exporting again");
            if let Err(e2) = export(new_name, true) {
                return Err(e.context(format!("and exporting {new_name} again failed too: {e2:#}")));
            }
            Err(e)
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
    let mut guid = pool_guid(name)?;
    if guid != original_guid {
        bail!("imported pool {name} has GUID {guid}, expected {original_guid}");
    }
    if reguid {
        tools::run("zpool", &["reguid", name], DEFAULT_TIMEOUT)
            .with_context(|| format!("zpool reguid {name}"))?;
        guid = pool_guid(name)?;
        if guid == original_guid {
            bail!("zpool reguid {name} left the GUID at {guid}");
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

fn pool_guid(name: &str) -> Result<u64> {
    let out = tools::run(
        "zpool",
        &["list", "-H", "-p", "-o", "name,guid", name],
        DEFAULT_TIMEOUT,
    )
    .with_context(|| format!("reading the GUID of pool {name}"))?;
    parse_name_guid(&out.stdout)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, g)| g)
        .with_context(|| format!("zpool list did not show pool {name}"))
}

/// One row of `zfs list -H -p -o name,mountpoint,canmount,keystatus,mounted`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FsRow {
    name: String,
    mountpoint: String,
    canmount: String,
    keystatus: String,
    mounted: bool,
}

fn list_filesystems(pool: &str) -> Result<Vec<FsRow>> {
    let out = tools::run(
        "zfs",
        &[
            "list",
            "-H",
            "-p",
            "-r",
            "-t",
            "filesystem",
            "-o",
            "name,mountpoint,canmount,keystatus,mounted",
            pool,
        ],
        DEFAULT_TIMEOUT,
    )
    .with_context(|| format!("listing the datasets of pool {pool}"))?;
    parse_fs_rows(&out.stdout)
}

fn parse_fs_rows(text: &str) -> Result<Vec<FsRow>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, mountpoint, canmount, keystatus, mounted] = f[..] else {
                bail!("unexpected `zfs list` line {l:?}");
            };
            Ok(FsRow {
                name: name.to_string(),
                mountpoint: mountpoint.to_string(),
                canmount: canmount.to_string(),
                keystatus: keystatus.to_string(),
                mounted: mounted == "yes",
            })
        })
        .collect()
}

/// Why a dataset is not mounted automatically, or `None` if it is.
fn skip_reason(row: &FsRow, altroot: &Path) -> Option<String> {
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

/// Mount order key: parents (shorter paths) first; `legacy`/`none` last.
fn mount_depth(mountpoint: &str) -> usize {
    let p = Path::new(mountpoint);
    if p.is_absolute() {
        p.components().count()
    } else {
        usize::MAX
    }
}

/// Mounts the pool's filesystems that its own host would mount, parents
/// first, each with `zfs mount <dataset>`.
fn mount_datasets(pool: &str, altroot: &Path) -> Result<Vec<Dataset>> {
    let mut rows = list_filesystems(pool)?;
    rows.sort_by_key(|r| (mount_depth(&r.mountpoint), r.name.clone()));
    let mut out = Vec::new();
    for row in rows {
        let skipped = skip_reason(&row, altroot);
        if skipped.is_none() && !row.mounted {
            tools::run("zfs", &["mount", &row.name], DEFAULT_TIMEOUT)
                .with_context(|| format!("mounting dataset {} at {}", row.name, row.mountpoint))?;
        }
        out.push(Dataset {
            mountpoint: skipped.is_none().then(|| PathBuf::from(&row.mountpoint)),
            name: row.name,
            skipped,
        });
    }
    Ok(out)
}

fn pool_altroot(name: &str) -> Result<Option<PathBuf>> {
    let out = tools::run(
        "zpool",
        &["get", "-H", "-o", "value", "altroot", name],
        DEFAULT_TIMEOUT,
    )
    .with_context(|| format!("reading the altroot of pool {name}"))?;
    let v = out.stdout.trim();
    Ok((!v.is_empty() && v != "-").then(|| PathBuf::from(v)))
}

/// Unmounts a clone pool's datasets (deepest first) and exports it. Only a
/// pool with an altroot (every goldmount import has one) is exported. When
/// something uses a dataset it fails with [`ZfsError::Busy`] naming the
/// holders, unless `force`: then busy datasets are detached lazily and the
/// export is forced, and the report says so. A process that keeps a file
/// open in a detached dataset still blocks even a forced export: that is a
/// `Busy` error naming it, with the pool left imported and unmounted, and a
/// later export finishes the job. A pool that is not imported is
/// not an error. The mount point directories ZFS created under the altroot
/// are removed when empty; the altroot itself is left to its owner.
pub fn export(name: &str, force: bool) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    if !imported_pools()?.iter().any(|(n, _)| n == name) {
        report.not_imported = true;
        return Ok(report);
    }
    let Some(altroot) = pool_altroot(name)? else {
        return Err(ZfsError::NotOurs {
            name: name.to_string(),
        }
        .into());
    };
    let mut rows = list_filesystems(name)?;
    let mut mountpoints: Vec<PathBuf> = rows
        .iter()
        .filter(|r| mount_depth(&r.mountpoint) != usize::MAX)
        .map(|r| PathBuf::from(&r.mountpoint))
        .collect();
    // Deepest first, so parents are empty when their turn comes.
    mountpoints.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    rows.retain(|r| r.mounted);
    // Holders of datasets detached lazily: once detached they cannot be
    // found by path any more, but they still keep the pool busy.
    let mut detached_holders: Vec<String> = Vec::new();
    rows.sort_by_key(|r| std::cmp::Reverse(mount_depth(&r.mountpoint)));
    for row in &rows {
        match tools::run("zfs", &["unmount", &row.name], DEFAULT_TIMEOUT) {
            Ok(_) => report.unmounted.push(row.name.clone()),
            Err(ToolError::Failed { stderr, .. }) if stderr.contains("busy") => {
                let mp = Path::new(&row.mountpoint);
                if !force {
                    return Err(ZfsError::Busy {
                        what: format!("dataset {} at {}", row.name, row.mountpoint),
                        holders: mounter::holders(mp),
                    }
                    .into());
                }
                let holders = mounter::holders(mp);
                mounter::umount(mp, true)
                    .with_context(|| format!("lazily unmounting {}", row.mountpoint))?;
                report.forced.push(format!(
                    "lazily unmounted busy dataset {} at {} (holders: {})",
                    row.name,
                    row.mountpoint,
                    holders_text(&holders)
                ));
                detached_holders.extend(holders);
                report.unmounted.push(row.name.clone());
            }
            Err(e) => return Err(e).with_context(|| format!("unmounting dataset {}", row.name)),
        }
    }
    let mut args = vec!["export"];
    if force {
        args.push("-f");
    }
    args.push(name);
    match tools::run("zpool", &args, IMPORT_TIMEOUT) {
        Ok(_) => {}
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("busy") => {
            // Even `zpool export -f` fails while a lazily detached dataset
            // is still open (seen in the lab with OpenZFS 2.1): the pool
            // stays imported, its datasets unmounted; exporting again once
            // the holders are gone finishes the teardown.
            let mut holders = mounter::holders(&altroot);
            holders.extend(detached_holders);
            return Err(ZfsError::Busy {
                what: format!("pool {name}"),
                holders,
            }
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("exporting pool {name}")),
    }
    if force {
        report.forced.push(format!("zpool export -f {name}"));
    }
    remove_mountpoint_dirs(&altroot, &mountpoints);
    tracing::info!(pool = name, "exported ZFS clone pool");
    Ok(report)
}

/// Removes the mount point directories ZFS created for the pool's datasets
/// and their parents strictly below `altroot`, as long as they are empty
/// and not mount points. It never descends into directories, so other
/// filesystems of the volume mounted under the same altroot are not touched.
fn remove_mountpoint_dirs(altroot: &Path, mountpoints: &[PathBuf]) {
    for mp in mountpoints {
        let mut dir = mp.as_path();
        while dir.starts_with(altroot) && dir != altroot {
            if mounter::is_mounted(dir) || std::fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = unique_pool_name("tank", "pg1");
        let b = unique_pool_name("tank", "pg2");
        assert_eq!(a, "tank-pg1");
        assert_ne!(a, b);
        for (base, vol) in [
            ("mirror", "v"),
            ("c0t0d0", "v"),
            ("1pool", "v"),
            ("spare", "x"),
            ("tank/with/slash", "v1"),
            ("p", "väl ü"),
            (&"x".repeat(300), "vol-9"),
        ] {
            let n = unique_pool_name(base, vol);
            assert_eq!(pool_name_check(&n), Ok(()), "{n:?} from {base:?}/{vol:?}");
            assert!(n.len() <= MAX_POOL_NAME, "{n}");
        }
        assert_eq!(unique_pool_name("mirror", "v"), "gm-mirror-v");
        assert!(unique_pool_name(&"x".repeat(300), "vol-9").ends_with("-vol-9"));
    }

    #[test]
    fn pool_name_rules() {
        assert!(pool_name_check("tank").is_ok());
        assert!(pool_name_check("").is_err());
        assert!(pool_name_check("raidz2x").is_err());
        assert!(pool_name_check("log").is_err());
        assert!(pool_name_check("logs").is_ok());
        assert!(pool_name_check("c1d0").is_err());
        assert!(pool_name_check("a/b").is_err());
        assert!(pool_name_check("a%b").is_err());
    }

    #[test]
    fn parses_zpool_list() {
        let v = parse_name_guid("gold\t1234567890123456789\nclone-v1\t42\n").unwrap();
        assert_eq!(
            v,
            vec![
                ("gold".to_string(), 1_234_567_890_123_456_789),
                ("clone-v1".to_string(), 42)
            ]
        );
        assert!(parse_name_guid("gold 12\n").is_err());
        assert!(parse_name_guid("gold\tnotanumber\n").is_err());
        assert!(parse_name_guid("").unwrap().is_empty());
    }

    #[test]
    fn parses_zfs_list_and_decides_mounts() {
        let text = "c\t/vol/c\ton\t-\tno\nc/data\t/vol/c/data\ton\t-\tyes\nc/legacy\tlegacy\ton\t-\tno\nc/off\t/vol/c/off\toff\t-\tno\nc/na\t/vol/c/na\tnoauto\t-\tno\nc/enc\t/vol/c/enc\ton\tunavailable\tno\nc/out\t/elsewhere\ton\t-\tno\n";
        let rows = parse_fs_rows(text).unwrap();
        assert_eq!(rows.len(), 7);
        assert!(rows[1].mounted && !rows[0].mounted);
        let alt = Path::new("/vol");
        let skips: Vec<Option<String>> = rows.iter().map(|r| skip_reason(r, alt)).collect();
        assert_eq!(skips[0], None);
        assert_eq!(skips[1], None);
        assert!(skips[2].as_deref().unwrap().contains("legacy"));
        assert!(skips[3].as_deref().unwrap().contains("canmount=off"));
        assert!(skips[4].as_deref().unwrap().contains("noauto"));
        assert!(skips[5].as_deref().unwrap().contains("key"));
        assert!(skips[6].as_deref().unwrap().contains("outside the altroot"));
        assert!(parse_fs_rows("only\ttwo\n").is_err());
        let mut order: Vec<&str> = vec!["legacy", "/vol/c/data", "/vol/c", "none"];
        order.sort_by_key(|m| mount_depth(m));
        assert_eq!(order[..2], ["/vol/c", "/vol/c/data"]);
    }

    #[test]
    fn force_only_for_another_system() {
        let other = "cannot import 'tank': pool was previously in use from another system.\nLast accessed by x (hostid=1) at Sun Nov 22\nThe pool can be imported, use 'zpool import -f' to import the pool.";
        assert!(needs_force(other));
        let mmp = "cannot import 'tank': pool is imported on host 'x' (hostid=1).\nExport the pool on the other system, then run 'zpool import'.\nmultihost";
        assert!(!needs_force(mmp));
        assert!(!needs_force("cannot import '42': no such pool available"));
    }

    #[test]
    fn busy_error_names_holders() {
        let e = ZfsError::Busy {
            what: "dataset c/data at /vol/c/data".into(),
            holders: vec!["pid 7 (sh): cwd /vol/c/data".into()],
        };
        let s = e.to_string();
        assert!(s.contains("pid 7 (sh)") && s.contains("c/data"), "{s}");
    }
}
