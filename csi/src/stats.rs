//! `NodeGetVolumeStats` of a tree of filesystems.
//!
//! A goldmount volume is not one filesystem: it is the gold's whole tree
//! (`/`, `/var`, `/var/lib/postgresql`, …), each from its own partition or
//! logical volume. Kubernetes expects one BYTES and one INODES figure per
//! volume, so the figures are the sums over the distinct filesystems mounted
//! under the path (each device counted once, however often it is bound).
//! A tree whose top bind is gone, or where a filesystem cannot be asked, is
//! reported with `volume_condition.abnormal` and says which.

use std::collections::HashSet;
use std::path::Path;

use mountinfo::MountEntry;

use crate::proto::{volume_usage, VolumeCondition, VolumeUsage};

/// The sums over the tree and its condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStats {
    /// Bytes: total, used, available.
    pub bytes: (u64, u64, u64),
    /// Inodes: total, used, available.
    pub inodes: (u64, u64, u64),
    /// How many distinct filesystems were summed.
    pub filesystems: usize,
    /// Filesystems that could not be asked (mount point: why).
    pub unreadable: Vec<String>,
}

/// Sums the filesystems mounted at or under `path`.
pub fn tree_stats(path: &Path, mounts: &[MountEntry]) -> TreeStats {
    let mut seen = HashSet::new();
    let mut s = TreeStats {
        bytes: (0, 0, 0),
        inodes: (0, 0, 0),
        filesystems: 0,
        unreadable: vec![],
    };
    for m in mountinfo::mounts_under(mounts, path) {
        if !seen.insert((m.major, m.minor)) {
            continue;
        }
        match rustix::fs::statvfs(&m.mount_point) {
            Ok(v) => {
                let unit = v.f_frsize;
                let total = v.f_blocks.saturating_mul(unit);
                let free = v.f_bfree.saturating_mul(unit);
                let avail = v.f_bavail.saturating_mul(unit);
                s.bytes.0 += total;
                s.bytes.1 += total.saturating_sub(free);
                s.bytes.2 += avail;
                s.inodes.0 += v.f_files;
                s.inodes.1 += v.f_files.saturating_sub(v.f_ffree);
                s.inodes.2 += v.f_favail;
                s.filesystems += 1;
            }
            Err(e) => s
                .unreadable
                .push(format!("{}: {e}", m.mount_point.display())),
        }
    }
    s
}

fn usage(unit: volume_usage::Unit, (total, used, available): (u64, u64, u64)) -> VolumeUsage {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    VolumeUsage {
        available: i(available),
        total: i(total),
        used: i(used),
        unit: unit as i32,
    }
}

impl TreeStats {
    /// The CSI usage entries (BYTES, INODES).
    pub fn usage(&self) -> Vec<VolumeUsage> {
        vec![
            usage(volume_usage::Unit::Bytes, self.bytes),
            usage(volume_usage::Unit::Inodes, self.inodes),
        ]
    }

    /// The condition: abnormal when the bind is gone, nothing or not
    /// everything could be read, or the tree has `tree_problems` (see
    /// [`crate::health`]).
    pub fn condition(&self, live: bool, tree_problems: &[String]) -> VolumeCondition {
        let mut problems = vec![];
        if !live {
            problems.push("the bind mount at this path is gone".to_string());
        }
        if self.filesystems == 0 {
            problems.push("no filesystem is mounted under this path".to_string());
        }
        problems.extend(self.unreadable.iter().map(|u| format!("cannot ask {u}")));
        problems.extend(tree_problems.iter().cloned());
        VolumeCondition {
            abnormal: !problems.is_empty(),
            message: if problems.is_empty() {
                format!(
                    "{} filesystem(s) mounted; the figures are their sums",
                    self.filesystems
                )
            } else {
                problems.join("; ")
            },
        }
    }
}
