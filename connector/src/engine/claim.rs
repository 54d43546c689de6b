//! One clone, one writer. Which data a device holds is decided by identity,
//! not by path: the backing file's device and inode for an image or a loop
//! device, the LUN's WWID for a SCSI disk or its multipath map, the parent
//! disk plus byte range for a partition. Claims are checked against every
//! other volume's record and recorded in one state-store transaction (under
//! the store's one lock), so two concurrent mounts of the same clone
//! through two names cannot both win.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{EngineError, ErrorKind};
use crate::state::VolumeRecord;

/// What data a device shows, independent of the path it was reached by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataId {
    /// A regular file (an image, or the backing file of a loop device).
    File {
        /// `st_dev` of the file.
        dev: u64,
        /// `st_ino` of the file.
        ino: u64,
    },
    /// A SCSI LUN (any of its paths, or its multipath map), by normalised WWID.
    Lun {
        /// WWID in scsi_id's form (`36001405…`).
        wwid: String,
    },
    /// Any other block device, by device number.
    Block {
        /// `major:minor`.
        devno: String,
    },
}

/// A byte range of some data that one volume holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Whose data.
    pub id: DataId,
    /// First byte.
    pub offset: u64,
    /// Length in bytes (`u64::MAX - offset` for "to the end").
    pub len: u64,
    /// A read-only claim.
    pub read_only: bool,
    /// The path it was reached by, for messages.
    pub via: PathBuf,
}

impl Claim {
    fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
    /// True when both claims cover some of the same bytes of the same data,
    /// and at least one of them may write. Read-only next to read-write is
    /// refused too: a read-only view of a clone someone writes is
    /// inconsistent, and the kernel would cache stale metadata.
    pub fn conflicts_with(&self, other: &Claim) -> bool {
        self.id == other.id
            && self.offset < other.end()
            && other.offset < self.end()
            && !(self.read_only && other.read_only)
    }
}

/// Errors finding a device's identity.
fn unavailable(msg: String) -> EngineError {
    EngineError::new(ErrorKind::NotFound, msg)
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// scsi_id's form of a WWID: `naa.X` → `3X`, `eui.X` → `2X`, `t10.X` → `1X`;
/// a multipath map's dm uuid `mpath-<wwid>` → `<wwid>`; lower case.
pub fn normalise_wwid(w: &str) -> String {
    let w = w.trim();
    let out = if let Some(x) = w.strip_prefix("mpath-") {
        x.to_string()
    } else if let Some(x) = w.strip_prefix("naa.") {
        format!("3{x}")
    } else if let Some(x) = w.strip_prefix("eui.") {
        format!("2{x}")
    } else if let Some(x) = w.strip_prefix("t10.") {
        format!("1{x}")
    } else {
        w.to_string()
    };
    out.to_ascii_lowercase()
}

/// The claim a volume makes by using `path` (a block device node or an image
/// file) whole, read-only or not.
pub fn claim_for(path: &Path, read_only: bool) -> Result<Claim, EngineError> {
    let md = std::fs::metadata(path)
        .map_err(|e| unavailable(format!("device {} not found: {e}", path.display())))?;
    let whole = |id: DataId| Claim {
        id,
        offset: 0,
        len: u64::MAX,
        read_only,
        via: path.to_path_buf(),
    };
    if md.file_type().is_file() {
        return Ok(whole(DataId::File {
            dev: md.dev(),
            ino: md.ino(),
        }));
    }
    if !md.file_type().is_block_device() {
        return Err(EngineError::invalid(format!(
            "{} is neither a block device nor an image file",
            path.display()
        )));
    }
    let rdev = md.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    block_claim(major, minor, path, read_only)
}

fn block_claim(major: u32, minor: u32, via: &Path, read_only: bool) -> Result<Claim, EngineError> {
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    // A partition: the parent disk's identity, shifted by its start.
    if let Some(start) = read_trim(&sys.join("start")).and_then(|s| s.parse::<u64>().ok()) {
        if sys.join("partition").exists() {
            let size = read_trim(&sys.join("size"))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let parent_dev = read_trim(&sys.join("../dev")).unwrap_or_default();
            if let Some((pm, pn)) = parent_dev.split_once(':') {
                if let (Ok(pm), Ok(pn)) = (pm.parse(), pn.parse()) {
                    let parent = block_claim(pm, pn, via, read_only)?;
                    return Ok(Claim {
                        offset: parent.offset.saturating_add(start * 512),
                        len: size * 512,
                        ..parent
                    });
                }
            }
        }
    }
    // A loop device: the file behind it.
    if major == 7 {
        let node = PathBuf::from(format!("/dev/loop{minor}"));
        if let Ok(Some(st)) = hostfs::loopdev::status(&node) {
            return Ok(loop_claim(&st, via, read_only));
        }
    }
    // A dm device: a multipath map is its LUN; a linear map onto one device
    // (kpartx partition) is that device's range.
    if let Some(uuid) = read_trim(&sys.join("dm/uuid")) {
        // kpartx's partition of a multipath map (`part1-mpath-<wwid>`): the
        // LUN itself. Its byte range is not in sysfs, so the whole LUN is
        // claimed — one volume per clone LUN, conservatively.
        if let Some(wwid) = kpartx_lun(&uuid) {
            return Ok(Claim {
                id: DataId::Lun {
                    wwid: normalise_wwid(wwid),
                },
                offset: 0,
                len: u64::MAX,
                read_only,
                via: via.to_path_buf(),
            });
        }
        if uuid.starts_with("mpath-") {
            return Ok(Claim {
                id: DataId::Lun {
                    wwid: normalise_wwid(&uuid),
                },
                offset: 0,
                len: u64::MAX,
                read_only,
                via: via.to_path_buf(),
            });
        }
    }
    if let Some(w) = read_trim(&sys.join("device/wwid")) {
        return Ok(Claim {
            id: DataId::Lun {
                wwid: normalise_wwid(&w),
            },
            offset: 0,
            len: u64::MAX,
            read_only,
            via: via.to_path_buf(),
        });
    }
    Ok(Claim {
        id: DataId::Block {
            devno: format!("{major}:{minor}"),
        },
        offset: 0,
        len: u64::MAX,
        read_only,
        via: via.to_path_buf(),
    })
}

/// The WWID in a kpartx partition map's dm uuid (`part3-mpath-3600…`).
fn kpartx_lun(uuid: &str) -> Option<&str> {
    let (part, rest) = uuid.split_once('-')?;
    let n = part.strip_prefix("part")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.strip_prefix("mpath-")
}

/// The range of its backing file a loop device shows.
fn loop_claim(st: &hostfs::loopdev::LoopIdentity, via: &Path, read_only: bool) -> Claim {
    Claim {
        id: DataId::File {
            dev: st.backing_dev,
            ino: st.backing_ino,
        },
        offset: st.offset,
        len: if st.size_limit == 0 {
            u64::MAX - st.offset
        } else {
            st.size_limit
        },
        read_only,
        via: via.to_path_buf(),
    }
}

/// The first claim of another volume that `wanted` collides with, as a
/// conflict error naming the holder. Runs inside the state store's one
/// transaction, so it only reads the records.
pub fn check(wanted: &[Claim], volume: &str, records: &[VolumeRecord]) -> Result<(), EngineError> {
    for rec in records {
        if rec.name == volume {
            continue;
        }
        for held in &rec.claims {
            if let Some(w) = wanted.iter().find(|w| w.conflicts_with(held)) {
                return Err(EngineError::conflict(format!(
                    "{} holds data that volume {} already holds{} (through {}); one clone has one writer",
                    w.via.display(),
                    rec.name,
                    if held.read_only { " read-only" } else { " read-write" },
                    held.via.display()
                ))
                .with_hint(format!(
                    "unmount volume {} first, or mount another clone",
                    rec.name
                )));
            }
        }
    }
    Ok(())
}

/// A device outside goldmount that holds data `wanted` names (an in-use
/// loop device over the same file range). Scans /sys/block: run before the
/// state-store transaction, not inside it.
pub fn check_outside(wanted: &[Claim]) -> Result<(), EngineError> {
    for w in wanted {
        if let Some(other) = foreign_holder(w) {
            return Err(EngineError::conflict(format!(
                "{} holds data that is already in use outside goldmount: {other}",
                w.via.display()
            ))
            .with_hint("unmount or detach it first"));
        }
    }
    Ok(())
}

/// A loop device over the same file range that something holds (mounted, or
/// a dm device on it) and that is not the device the claim came through.
fn foreign_holder(w: &Claim) -> Option<String> {
    let DataId::File { dev, ino } = &w.id else {
        return None;
    };
    let via = std::fs::canonicalize(&w.via).unwrap_or_else(|_| w.via.clone());
    for entry in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let node = PathBuf::from("/dev").join(&name);
        if node == via {
            continue;
        }
        let Ok(Some(st)) = hostfs::loopdev::status(&node) else {
            continue;
        };
        let other = loop_claim(&st, &node, false);
        if other.id
            == (DataId::File {
                dev: *dev,
                ino: *ino,
            })
            && other.conflicts_with(w)
            && !st.tag.starts_with(super::journal::LOOP_TAG_PREFIX)
            && hostfs::loopdev::in_use(&node)
        {
            return Some(format!(
                "{} reads the same file and is in use",
                node.display()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(id: &str, off: u64, len: u64, ro: bool) -> Claim {
        Claim {
            id: DataId::Lun { wwid: id.into() },
            offset: off,
            len,
            read_only: ro,
            via: PathBuf::from("/dev/x"),
        }
    }

    #[test]
    fn overlapping_ranges_of_one_lun_conflict_unless_both_read_only() {
        assert!(c("a", 0, 100, false).conflicts_with(&c("a", 50, 100, false)));
        assert!(c("a", 0, 100, true).conflicts_with(&c("a", 50, 100, false)));
        assert!(!c("a", 0, 100, true).conflicts_with(&c("a", 50, 100, true)));
        assert!(!c("a", 0, 100, false).conflicts_with(&c("a", 100, 100, false)));
        assert!(!c("a", 0, 100, false).conflicts_with(&c("b", 0, 100, false)));
        assert!(c("a", 0, u64::MAX, false).conflicts_with(&c("a", 1 << 40, 10, false)));
    }

    #[test]
    fn kpartx_partitions_are_their_lun() {
        assert_eq!(kpartx_lun("part1-mpath-36001405ab"), Some("36001405ab"));
        assert_eq!(kpartx_lun("part12-mpath-36001405ab"), Some("36001405ab"));
        assert_eq!(kpartx_lun("mpath-36001405ab"), None);
        assert_eq!(kpartx_lun("part-mpath-x"), None);
        assert_eq!(kpartx_lun("LVM-abc"), None);
        // The map and its partition name the same data.
        assert_eq!(
            normalise_wwid(kpartx_lun("part2-mpath-36001405AB").unwrap()),
            normalise_wwid("mpath-36001405ab")
        );
    }

    #[test]
    fn wwids_normalise_across_paths_and_maps() {
        assert_eq!(normalise_wwid("naa.6001405ABC"), "36001405abc");
        assert_eq!(normalise_wwid("mpath-36001405abc"), "36001405abc");
        assert_eq!(normalise_wwid("eui.0025"), "20025");
    }
}
