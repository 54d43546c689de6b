//! From a probe report to the list of things on a LUN: what will be mounted,
//! and what is skipped and why (swap, LUKS, md members, ambivalent devices…).

use fsdetect::{Content, DiskReport, PartitionKind, Signature};

use crate::engine::fs_kind;
use crate::manifest::Skipped;

/// A filesystem on the LUN that goldmount will mount.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Partition number, or `None` for a filesystem on the whole device.
    pub partition: Option<u32>,
    /// Byte range on the device.
    pub offset: u64,
    /// Byte length.
    pub size: u64,
    /// GPT partition GUID or MBR PARTUUID (for fstab `PARTUUID=`).
    pub part_uuid: Option<String>,
    /// GPT partition name (for fstab `PARTLABEL=`).
    pub part_name: Option<String>,
    /// What fsdetect found.
    pub signature: Signature,
    /// For a filesystem on a logical volume: (VG name in the gold copy, LV name).
    pub lv: Option<(String, String)>,
    /// For a filesystem on a logical volume: the VG UUID in the gold copy,
    /// before vgimportclone gave the clone's VG a new one (what an fstab's
    /// `/dev/disk/by-id/dm-uuid-LVM-…` names). `None` when unknown.
    pub vg_uuid: Option<String>,
    /// For a filesystem on a logical volume: its LV UUID (vgimportclone
    /// keeps LV UUIDs).
    pub lv_uuid: Option<String>,
}

impl Candidate {
    /// The same candidate with the LVM identity its LV had on the original
    /// host: the VG UUID before import and the LV UUID (dashes or not).
    pub fn with_lvm_uuids(mut self, original_vg_uuid: &str, lv_uuid: &str) -> Self {
        self.vg_uuid = Some(original_vg_uuid.replace('-', ""));
        self.lv_uuid = Some(lv_uuid.replace('-', ""));
        self
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match (&self.lv, self.partition) {
            (Some((vg, lv)), _) => format!("logical volume {vg}/{lv}"),
            (None, Some(n)) => format!("partition {n}"),
            (None, None) => "whole device".to_string(),
        }
    }
}

/// What kind of container a member belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// An LVM2 physical volume.
    Lvm,
    /// A ZFS vdev.
    Zfs,
}

/// A device (partition or whole LUN) that belongs to a volume group or pool:
/// imported first, then its filesystems are mounted.
#[derive(Debug, Clone)]
pub struct Member {
    /// LVM PV or ZFS vdev.
    pub kind: MemberKind,
    /// Partition number, or `None` for the whole device.
    pub partition: Option<u32>,
    /// Byte range on the device.
    pub offset: u64,
    /// Byte length.
    pub size: u64,
    /// What fsdetect found (PV UUID; pool name and GUID).
    pub signature: Signature,
}

impl Member {
    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self.partition {
            Some(n) => format!("partition {n}"),
            None => "whole device".to_string(),
        }
    }
}

/// Everything found on a LUN, sorted by what happens to it.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Filesystems to mount.
    pub candidates: Vec<Candidate>,
    /// LVM PVs and ZFS vdevs to import.
    pub members: Vec<Member>,
    /// Not mounted, with the reason.
    pub skipped: Vec<Skipped>,
}

fn member_kind(t: &str) -> Option<MemberKind> {
    match t {
        "LVM2_member" => Some(MemberKind::Lvm),
        "zfs_member" => Some(MemberKind::Zfs),
        _ => None,
    }
}

/// Why a signature is not mounted, or `None` if it is mountable.
fn skip_reason(sig: &Signature) -> Option<String> {
    let t = sig.fs_type.as_str();
    if fs_kind::lookup(t).is_some() {
        return None;
    }
    Some(match t {
        "swap" => "swap space is not activated on another host".into(),
        "crypto_LUKS" => "LUKS-encrypted: needs its key; goldmount does not open it".into(),
        "linux_raid_member" => "md RAID member: arrays are not assembled from clones".into(),
        "jbd" => "external ext3/4 journal: used by its filesystem, not mounted".into(),
        other => format!("{other} is not a filesystem goldmount mounts"),
    })
}

fn ambivalent_reason(sigs: &[Signature]) -> String {
    let names: Vec<&str> = sigs.iter().map(|s| s.fs_type.as_str()).collect();
    format!(
        "ambivalent: {} signatures on one device; which one is real is unknown, so it is not mounted (see wipefs(8))",
        names.join(" and ")
    )
}

/// Sorts what a probe found into filesystems to mount, volume-group/pool
/// members to import, and skipped items with their reasons.
pub fn classify(report: &DiskReport) -> Found {
    let mut found = Found::default();
    let place = |partition: Option<u32>,
                 offset: u64,
                 size: u64,
                 part: Option<&fsdetect::Partition>,
                 content: &Content,
                 found: &mut Found| {
        let source = match partition {
            Some(n) => format!("partition {n}"),
            None => "whole device".to_string(),
        };
        match content {
            Content::Found { signature } => {
                if let Some(kind) = member_kind(&signature.fs_type) {
                    found.members.push(Member {
                        kind,
                        partition,
                        offset,
                        size,
                        signature: signature.clone(),
                    });
                } else if let Some(reason) = skip_reason(signature) {
                    found.skipped.push(Skipped {
                        source,
                        what: signature.fs_type.clone(),
                        reason,
                    });
                } else {
                    found.candidates.push(Candidate {
                        partition,
                        offset,
                        size,
                        part_uuid: part.and_then(|p| p.uuid.clone()),
                        part_name: part.and_then(|p| p.name.clone()),
                        signature: signature.clone(),
                        lv: None,
                        vg_uuid: None,
                        lv_uuid: None,
                    });
                }
            }
            Content::Ambivalent { signatures } => found.skipped.push(Skipped {
                source,
                what: "ambivalent".into(),
                reason: ambivalent_reason(signatures),
            }),
            Content::Empty => {}
        }
    };
    if report.table.is_none() {
        place(None, 0, report.size, None, &report.content, &mut found);
        return found;
    }
    let overlaps = overlapping(report);
    for pr in &report.partitions {
        let p = &pr.partition;
        if let Some(other) = overlaps
            .iter()
            .find(|(n, _)| *n == p.number)
            .map(|(_, o)| *o)
        {
            found.skipped.push(Skipped {
                source: format!("partition {}", p.number),
                what: "partition".into(),
                reason: format!(
                    "overlaps partition {other}: the same bytes would be mounted twice, so neither is mounted (fix the partition table)"
                ),
            });
            continue;
        }
        if let Some(problem) = &p.problem {
            found.skipped.push(Skipped {
                source: format!("partition {}", p.number),
                what: "partition".into(),
                reason: problem.clone(),
            });
            continue;
        }
        if p.kind == PartitionKind::Extended {
            continue;
        }
        if let Some(c) = &pr.content {
            place(Some(p.number), p.start, p.size, Some(p), c, &mut found);
        }
    }
    found
}

/// Partitions whose byte ranges overlap another's (extended containers
/// excepted: their logical partitions lie inside them by design), each with
/// the number of one partition it overlaps.
fn overlapping(report: &DiskReport) -> Vec<(u32, u32)> {
    let parts: Vec<&fsdetect::Partition> = report
        .partitions
        .iter()
        .map(|p| &p.partition)
        .filter(|p| p.kind != PartitionKind::Extended && p.size > 0)
        .collect();
    let mut out = Vec::new();
    for a in &parts {
        for b in &parts {
            if a.number != b.number
                && a.start < b.start.saturating_add(b.size)
                && b.start < a.start.saturating_add(a.size)
            {
                out.push((a.number, b.number));
                break;
            }
        }
    }
    out
}

/// Classifies what fsdetect found on a logical volume or other mapped device
/// (no partition table is looked at there).
pub fn classify_volume(
    content: &Content,
    size: u64,
    lv: (String, String),
) -> Result<Candidate, Skipped> {
    let source = format!("logical volume {}/{}", lv.0, lv.1);
    match content {
        Content::Found { signature } => match member_kind(&signature.fs_type)
            .map(|_| {
                "a volume group or pool nested on a logical volume is not imported".to_string()
            })
            .or_else(|| skip_reason(signature))
        {
            None => Ok(Candidate {
                partition: None,
                offset: 0,
                size,
                part_uuid: None,
                part_name: None,
                signature: signature.clone(),
                lv: Some(lv),
                vg_uuid: None,
                lv_uuid: None,
            }),
            Some(reason) => Err(Skipped {
                source,
                what: signature.fs_type.clone(),
                reason,
            }),
        },
        Content::Ambivalent { signatures } => Err(Skipped {
            source,
            what: "ambivalent".into(),
            reason: ambivalent_reason(signatures),
        }),
        Content::Empty => Err(Skipped {
            source,
            what: "empty".into(),
            reason: "no filesystem on it".into(),
        }),
    }
}

/// The LV UUID in a device-mapper UUID (`LVM-<VG UUID><LV UUID>`, both
/// 32 characters without dashes; a suffix such as `-tpool` marks an internal
/// layer, which is no LV of its own).
pub fn lv_uuid_of_dm_uuid(dm_uuid: &str) -> Option<String> {
    let u = dm_uuid.trim().strip_prefix("LVM-")?;
    let ok = u.len() == 64 && u.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| u[32..].to_string())
}

/// Fills in the LV UUID of a candidate on an LV from its device-mapper node
/// (`/sys/dev/block/M:m/dm/uuid`) when the LVM stage did not say it: the LV
/// UUID survives vgimportclone, the VG UUID there is the new one and is not
/// taken.
pub fn fill_lv_uuid_from_dm(c: &mut Candidate, node: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if c.lv.is_none() || c.lv_uuid.is_some() {
        return;
    }
    let Ok(md) = std::fs::metadata(node) else {
        return;
    };
    let r = md.rdev();
    let p = format!(
        "/sys/dev/block/{}:{}/dm/uuid",
        rustix::fs::major(r),
        rustix::fs::minor(r)
    );
    if let Ok(u) = std::fs::read_to_string(p) {
        c.lv_uuid = lv_uuid_of_dm_uuid(&u);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fsdetect::Usage;

    #[test]
    fn the_lv_uuid_is_read_from_a_dm_uuid() {
        let vg = "Zx5bQk1mN2pL3oR4sT5uV6wX7yZ8aB9c";
        let lv = "dE0fG1hI2jK3lM4nO5pQ6rS7tU8vW9xY";
        assert_eq!(
            lv_uuid_of_dm_uuid(&format!("LVM-{vg}{lv}\n")).as_deref(),
            Some(lv)
        );
        assert_eq!(lv_uuid_of_dm_uuid(&format!("LVM-{vg}{lv}-tpool")), None);
        assert_eq!(lv_uuid_of_dm_uuid("CRYPT-LUKS2-abc"), None);
        let c = Candidate {
            partition: None,
            offset: 0,
            size: 0,
            part_uuid: None,
            part_name: None,
            signature: Signature::new("ext4", Usage::Filesystem, 0),
            lv: Some(("ubuntu-vg".into(), "ubuntu-lv".into())),
            vg_uuid: None,
            lv_uuid: None,
        }
        .with_lvm_uuids(
            "Zx5bQk-1mN2-pL3o-R4sT-5uV6-wX7y-Z8aB9c",
            "dE0fG1-hI2j-K3lM-4nO5-pQ6r-S7tU-8vW9xY",
        );
        assert_eq!(c.vg_uuid.as_deref(), Some(vg));
        assert_eq!(c.lv_uuid.as_deref(), Some(lv));
    }

    #[test]
    fn a_pv_nested_on_a_logical_volume_says_so() {
        let sig = Signature::new("LVM2_member", Usage::Raid, 0);
        let content = Content::Found { signature: sig };
        let sk = classify_volume(&content, 1 << 20, ("vg".into(), "lv".into())).unwrap_err();
        assert!(sk.reason.contains("nested"), "{}", sk.reason);
        assert!(!sk.reason.contains("not available in this build"));
        let swap = Content::Found {
            signature: Signature::new("swap", Usage::Other, 0),
        };
        let sk = classify_volume(&swap, 1 << 20, ("vg".into(), "swap".into())).unwrap_err();
        assert!(sk.reason.contains("swap"), "{}", sk.reason);
    }
}
