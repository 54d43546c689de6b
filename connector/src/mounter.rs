//! Mounting and unmounting one filesystem: the options a clone needs (XFS
//! `nouuid` beside its gold copy, read-only without log replay), and who is
//! holding a busy mount.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::mountinfo;
use crate::tools::{self, ToolError, DEFAULT_TIMEOUT};

/// Why an unmount did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UmountError {
    /// Something still uses the mount.
    #[error("{target} is busy: {}", if holders.is_empty() { "held by an unknown user (open files in another mount namespace?)".to_string() } else { holders.join("; ") })]
    Busy {
        /// Mount point.
        target: PathBuf,
        /// Processes using it (`pid 123 (bash): cwd /…`).
        holders: Vec<String>,
    },
    /// umount failed for another reason.
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Filesystem types goldmount mounts.
pub fn is_mountable(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "vfat" | "ntfs" | "iso9660" | "squashfs"
    )
}

/// The kernel driver (or FUSE helper) to mount NTFS with: ntfs3 when the
/// kernel has it, ntfs-3g otherwise.
fn ntfs_type() -> &'static str {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs.lines().any(|l| l.trim_end().ends_with("ntfs3")) {
        "ntfs3"
    } else {
        "ntfs-3g"
    }
}

/// The `-t` value for a blkid TYPE.
pub fn mount_type(fs_type: &str) -> String {
    match fs_type {
        "ntfs" => ntfs_type().to_string(),
        t => t.to_string(),
    }
}

/// Mount options for a clone's filesystem.
///
/// * read-only mounts must not write either: XFS `norecovery`, ext3/4 `noload`
///   (a plain `ro` mount would still replay the journal onto the clone);
/// * XFS refuses a second filesystem with a UUID that is already mounted —
///   the gold copy or another clone — unless `nouuid`.
pub fn options_for(fs_type: &str, read_only: bool, uuid_already_mounted: bool) -> String {
    let mut o: Vec<&str> = Vec::new();
    if read_only {
        o.push("ro");
        match fs_type {
            "xfs" => o.push("norecovery"),
            "ext3" | "ext4" => o.push("noload"),
            _ => {}
        }
    }
    if fs_type == "xfs" && uuid_already_mounted {
        o.push("nouuid");
    }
    if matches!(fs_type, "iso9660" | "squashfs") && !read_only {
        o.push("ro");
    }
    if o.is_empty() {
        "defaults".to_string()
    } else {
        o.join(",")
    }
}

/// `mount -t TYPE -o OPTIONS SOURCE TARGET`.
pub fn mount(source: &Path, target: &Path, mtype: &str, options: &str) -> Result<(), ToolError> {
    let (s, t) = (source.to_string_lossy(), target.to_string_lossy());
    tools::run(
        "mount",
        &["-t", mtype, "-o", options, &s, &t],
        DEFAULT_TIMEOUT,
    )
    .map(|_| ())
}

/// True if `target` is a mount point right now.
pub fn is_mounted(target: &Path) -> bool {
    mountinfo::current()
        .map(|m| m.iter().any(|e| e.mount_point == target))
        .unwrap_or(false)
}

/// Unmounts `target`; with `lazy`, detaches it even if busy (MNT_DETACH).
pub fn umount(target: &Path, lazy: bool) -> Result<(), UmountError> {
    let t = target.to_string_lossy();
    let args: Vec<&str> = if lazy { vec!["-l", &t] } else { vec![&t] };
    match tools::run("umount", &args, DEFAULT_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("busy") => {
            Err(UmountError::Busy {
                target: target.to_path_buf(),
                holders: holders(target),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Processes whose cwd, root or open files are under `dir`.
pub fn holders(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let base = p.path();
        let comm = std::fs::read_to_string(base.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut uses: Vec<String> = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if let Ok(t) = std::fs::read_link(base.join(link)) {
                if t.starts_with(dir) {
                    uses.push(format!("{link} {}", t.display()));
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(t) = std::fs::read_link(fd.path()) {
                    if t.starts_with(dir) {
                        uses.push(format!("open {}", t.display()));
                        break;
                    }
                }
            }
        }
        if !uses.is_empty() {
            out.push(format!("pid {pid} ({comm}): {}", uses.join(", ")));
        }
    }
    out
}

/// UUIDs of the XFS/btrfs filesystems mounted on this host right now, read
/// from their devices with fsdetect (two reads each).
pub fn mounted_uuids() -> HashSet<String> {
    let mut set = HashSet::new();
    let Ok(entries) = mountinfo::current() else {
        return set;
    };
    let mut seen = HashSet::new();
    for e in entries {
        if !matches!(e.fstype.as_str(), "xfs" | "btrfs") || !e.source.starts_with("/dev/") {
            continue;
        }
        if !seen.insert(e.source.clone()) {
            continue;
        }
        if let Ok(src) = fsdetect::FileSource::open(&e.source) {
            if let Ok(c) = fsdetect::probe_region(&src, 0, fsdetect::BlockSource::size(&src)) {
                if let Some(u) = c.content.signature().and_then(|s| s.uuid()) {
                    set.insert(u);
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_protect_clones() {
        assert_eq!(options_for("xfs", false, true), "nouuid");
        assert_eq!(options_for("xfs", true, false), "ro,norecovery");
        assert_eq!(options_for("ext4", true, false), "ro,noload");
        assert_eq!(options_for("ext4", false, true), "defaults");
        assert_eq!(options_for("squashfs", false, false), "ro");
    }
}
