//! Mounting a clone pool's datasets ourselves, confined to the altroot.
//!
//! A clone's dataset properties and files are untrusted: a `mountpoint`
//! like `/../../etc`, or a symlink `data -> /etc` in a parent dataset with a
//! child dataset mounted at `/data`, would make `zfs mount` (which follows
//! symlinks in the path it mounts on) mount outside the volume; and ZFS
//! mounts honour the clone's setuid binaries and device nodes. So the pool
//! is imported with `-N` and each dataset is mounted here: its mount point
//! is taken relative to the altroot as a [`ClonePath`] (`..` refused), the
//! directory is resolved (and created) inside the altroot by fd with
//! `hostfs::clonefs` (symlinks followed as if the altroot were `/`, never
//! out of it), and the kernel mounts the dataset onto that fd's
//! `/proc/self/fd/N` with `mount(2)` (`hostfs::mountfd::mount_on`),
//! `nosuid,nodev` unless the caller allows them.
//!
//! Why `mount(2)` on the fd and not `zfs mount -o nosuid,nodev`: `zfs mount`
//! takes the path from the mountpoint property and resolves it itself, so
//! the check and the use would be two lookups of a path the clone controls.
//! The kernel's ZFS needs no `zfsutil`: that option only tells the
//! `mount.zfs` helper to accept a non-legacy mountpoint, and the helper is
//! not used.

use std::path::{Path, PathBuf};

use hostfs::clonefs::{ClonePath, CloneRoot, DirJournal, NoJournal, PathError, ResolvedDir};
use hostfs::mountfd::{mount_on, MountId, MountOptions};

use crate::error::{Result, ZfsError};
use crate::import::{Dataset, ImportedPool};
use crate::list::FsRow;

/// How datasets are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    /// Mount read-only.
    pub read_only: bool,
    /// `nosuid,nodev` (the default for clone data; off only when the
    /// caller opted in).
    pub nosuid_nodev: bool,
}

impl MountFlags {
    /// The options as a manifest shows them (`rw,nosuid,nodev`).
    pub fn options(&self) -> String {
        let mut s = String::from(if self.read_only { "ro" } else { "rw" });
        if self.nosuid_nodev {
            s.push_str(",nosuid,nodev");
        }
        s
    }
}

/// Why a dataset is not mounted, from its properties alone, or `None`.
pub(crate) fn skip_reason(row: &FsRow) -> Option<String> {
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
    None
}

/// Where inside the altroot a dataset goes: its mountpoint (which `zfs
/// list` shows with the altroot in front, joined as text) without the
/// altroot, as a clone path. `Err` says why it is refused.
pub(crate) fn target_in_altroot(
    mountpoint: &str,
    altroot: &Path,
) -> std::result::Result<ClonePath, String> {
    let alt = altroot.to_string_lossy();
    let alt = alt.trim_end_matches('/');
    let rel = mountpoint
        .strip_prefix(alt)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| {
            format!(
                "mount point {mountpoint} is not under the altroot {}",
                altroot.display()
            )
        })?;
    ClonePath::parse(rel).map_err(|e| match e {
        PathError::Escapes { .. } => {
            format!("mount point {rel:?} (mountpoint property) would lead outside the volume")
        }
        e => format!("mount point {rel:?} refused: {e}"),
    })
}

/// The plan for every filesystem dataset of a pool: a target inside the
/// altroot, or why it is skipped; parents (shorter targets) first, the
/// skipped ones last.
pub(crate) fn plan(rows: Vec<FsRow>, altroot: &Path) -> Vec<Dataset> {
    let mut out: Vec<(usize, Dataset)> = rows
        .into_iter()
        .map(|row| {
            let decided = match skip_reason(&row) {
                Some(why) => Err(why),
                None => target_in_altroot(&row.mountpoint, altroot),
            };
            match decided {
                Ok(t) => (
                    t.components().len(),
                    Dataset {
                        name: row.name,
                        target: Some(t.to_string()),
                        mountpoint: None,
                        skipped: None,
                    },
                ),
                Err(why) => (
                    usize::MAX,
                    Dataset {
                        name: row.name,
                        target: None,
                        mountpoint: None,
                        skipped: Some(why),
                    },
                ),
            }
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    out.into_iter().map(|(_, d)| d).collect()
}

/// Mounts `dataset` on the resolved directory `dir` (through its fd) and
/// returns the new mount's identity, to be undone by mount id.
pub fn mount_dataset(dir: &ResolvedDir, dataset: &str, flags: MountFlags) -> Result<MountId> {
    let opts = MountOptions {
        read_only: flags.read_only,
        nosuid: flags.nosuid_nodev,
        nodev: flags.nosuid_nodev,
        noexec: false,
    };
    tracing::info!(dataset, target = %dir.host_path().display(), options = %flags.options(), "mounting ZFS dataset");
    mount_on(dir, Path::new(dataset), "zfs", opts, "").map_err(|error| ZfsError::Mount {
        dataset: dataset.to_string(),
        target: dir.host_path().to_path_buf(),
        error: Box::new(error),
    })
}

/// Resolves (creating what is missing, told to `journal`) the directory
/// for `target` inside `altroot`. A target the clone's content leads
/// outside the altroot, or that is not a directory, is `Ok(Err(reason))`:
/// the dataset is skipped, the rest goes on.
pub fn resolve_target(
    altroot: &Path,
    target: &str,
    journal: &mut dyn DirJournal,
) -> Result<std::result::Result<ResolvedDir, String>> {
    let what = || format!("mount point {target} in {}", altroot.display());
    let cp = match ClonePath::parse(target) {
        Ok(cp) => cp,
        Err(e) => return Ok(Err(format!("mount point {target} refused: {e}"))),
    };
    let root = CloneRoot::open(altroot).map_err(|error| ZfsError::Path {
        what: format!("opening the altroot {}", altroot.display()),
        error,
    })?;
    match root.ensure_dir(&cp, journal) {
        Ok(d) => Ok(Ok(d)),
        Err(e @ (PathError::Escapes { .. } | PathError::NotADirectory { .. })) => {
            Ok(Err(format!("mount point {target} refused: {e}")))
        }
        Err(error) => Err(ZfsError::Path {
            what: what(),
            error,
        }),
    }
}

/// Mounts every planned dataset of `pool` (parents first) without a
/// journal, for callers that undo by exporting the pool (which unmounts
/// its datasets); directories made for mount points are left. A dataset
/// whose mount point is refused gets `skipped`; a mount failure stops.
pub fn mount_all(pool: &mut ImportedPool, flags: MountFlags) -> Result<()> {
    let altroot = pool.altroot.clone();
    for ds in &mut pool.datasets {
        let Some(target) = ds.target.clone() else {
            continue;
        };
        match resolve_target(&altroot, &target, &mut NoJournal)? {
            Ok(dir) => {
                let id = mount_dataset(&dir, &ds.name, flags)?;
                ds.mountpoint = Some(id.host_path);
            }
            Err(why) => {
                ds.target = None;
                ds.skipped = Some(why);
            }
        }
    }
    Ok(())
}

/// The host path a target inside `altroot` has when no symlink is on the
/// way (to tell a caller that one was followed).
pub fn plain_host_path(altroot: &Path, target: &str) -> Option<PathBuf> {
    ClonePath::parse(target)
        .ok()
        .map(|cp| altroot.join(cp.as_relative()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::list::parse_fs_rows;

    #[test]
    fn decides_which_datasets_to_mount_and_where() {
        let text = "c\t/vol/c\ton\t-\tno\n\
                    c/data/x\t/vol/c/data/x\ton\t-\tno\n\
                    c/data\t/vol/c/data\ton\t-\tyes\n\
                    c/legacy\tlegacy\ton\t-\tno\n\
                    c/off\t/vol/c/off\toff\t-\tno\n\
                    c/na\t/vol/c/na\tnoauto\t-\tno\n\
                    c/enc\t/vol/c/enc\ton\tunavailable\tno\n\
                    c/out\t/elsewhere\ton\t-\tno\n\
                    c/up\t/vol/../../etc\ton\t-\tno\n\
                    c/up2\t/vol/c/../x\ton\t-\tno\n\
                    c/sib\t/volume2/x\ton\t-\tno\n\
                    c/top\t/vol\ton\t-\tno\n";
        let rows = parse_fs_rows(text).unwrap();
        let plan = plan(rows, Path::new("/vol/"));
        let got: Vec<(&str, Option<&str>, Option<&str>)> = plan
            .iter()
            .map(|d| (d.name.as_str(), d.target.as_deref(), d.skipped.as_deref()))
            .collect();
        let mounted: Vec<(&str, &str)> = got
            .iter()
            .filter_map(|(n, t, _)| t.map(|t| (*n, t)))
            .collect();
        assert_eq!(
            mounted,
            vec![
                ("c/top", "/"),
                ("c", "/c"),
                ("c/data", "/c/data"),
                ("c/data/x", "/c/data/x"),
            ]
        );
        let why = |n: &str| {
            plan.iter()
                .find(|d| d.name == n)
                .and_then(|d| d.skipped.clone())
                .unwrap()
        };
        assert!(why("c/legacy").contains("legacy"));
        assert!(why("c/off").contains("canmount=off"));
        assert!(why("c/na").contains("noauto"));
        assert!(why("c/enc").contains("key"));
        assert!(why("c/out").contains("not under the altroot"));
        assert!(
            why("c/sib").contains("not under the altroot"),
            "{}",
            why("c/sib")
        );
        assert!(
            why("c/up").contains("outside the volume"),
            "{}",
            why("c/up")
        );
        assert!(why("c/up2").contains("outside the volume"));
        assert!(plan[4..].iter().all(|d| d.target.is_none()));
    }

    #[test]
    fn options_text() {
        let f = |read_only, nosuid_nodev| MountFlags {
            read_only,
            nosuid_nodev,
        };
        assert_eq!(f(false, true).options(), "rw,nosuid,nodev");
        assert_eq!(f(true, true).options(), "ro,nosuid,nodev");
        assert_eq!(f(false, false).options(), "rw");
    }

    /// Real directories: a symlink in the "clone" to an absolute host path
    /// is followed inside the altroot, where it leads nowhere: refused, the
    /// host directory untouched; a symlink to a place inside is followed.
    #[test]
    fn targets_resolve_inside_the_altroot() {
        let base = std::env::temp_dir().join(format!("zfs-mount-target-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let alt = base.join("alt");
        let host = base.join("hostdir");
        std::fs::create_dir_all(alt.join("c/inside")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, alt.join("c/data")).unwrap();
        std::os::unix::fs::symlink("/c/inside", alt.join("c/rel")).unwrap();
        let refused = resolve_target(&alt, "/c/data/child", &mut NoJournal).unwrap();
        assert!(refused.unwrap_err().contains("dangling symlink"));
        assert_eq!(
            std::fs::read_dir(&host).unwrap().count(),
            0,
            "host dir untouched"
        );
        let dir = resolve_target(&alt, "/c/rel/child", &mut NoJournal)
            .unwrap()
            .unwrap();
        let real = std::fs::canonicalize(&alt).unwrap();
        assert_eq!(dir.host_path(), real.join("c/inside/child"));
        assert_ne!(
            plain_host_path(&alt, "/c/rel/child").unwrap(),
            dir.host_path()
        );
        std::fs::write(alt.join("c/file"), b"x").unwrap();
        let refused = resolve_target(&alt, "/c/file/child", &mut NoJournal).unwrap();
        assert!(refused.unwrap_err().contains("refused"));
        let refused = resolve_target(&alt, "/../x", &mut NoJournal).unwrap();
        assert!(refused.unwrap_err().contains("refused"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
