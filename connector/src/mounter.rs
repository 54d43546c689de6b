//! Facts about mounts the engine needs: who is holding a busy mount, which
//! XFS/btrfs UUIDs are mounted already, and unmounting by path for the ZFS
//! datasets zfs(8) mounted (the engine's own mounts go by mount id).

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

/// Processes whose cwd, root, executable or open files are under `dir`.
pub use ::mountinfo::holders;

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
