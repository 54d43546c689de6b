//! Facts about mounts the engine needs: who is holding a busy mount, and
//! which XFS/btrfs UUIDs are mounted already. (The engine mounts and
//! unmounts by fd and mount id through `hostfs::mountfd`; the zfs crate
//! unmounts its datasets itself.)

use std::collections::HashSet;

use crate::mountinfo;

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
