//! From a probe report to the list of things on a LUN: what will be mounted,
//! and what is skipped and why (swap, LUKS, md members, ambivalent devices…).

use fsdetect::{Content, DiskReport, PartitionKind, Signature};

use crate::manifest::Skipped;
use crate::mounter::is_mountable;

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
}

impl Candidate {
    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self.partition {
            Some(n) => format!("partition {n}"),
            None => "whole device".to_string(),
        }
    }
}

/// Why a signature is not mounted, or `None` if it is mountable.
fn skip_reason(sig: &Signature) -> Option<String> {
    let t = sig.fs_type.as_str();
    if is_mountable(t) {
        return None;
    }
    Some(match t {
        "swap" => "swap space is not activated on another host".into(),
        "crypto_LUKS" => "LUKS-encrypted: needs its key; goldmount does not open it".into(),
        "linux_raid_member" => "md RAID member: arrays are not assembled from clones".into(),
        "jbd" => "external ext3/4 journal: used by its filesystem, not mounted".into(),
        "LVM2_member" => {
            "LVM physical volume: clone-safe LVM import is not available in this build".into()
        }
        "zfs_member" => {
            "ZFS pool member: clone-safe pool import is not available in this build".into()
        }
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

/// Splits a report into mount candidates and skipped items.
pub fn candidates(report: &DiskReport) -> (Vec<Candidate>, Vec<Skipped>) {
    let mut cands = Vec::new();
    let mut skipped = Vec::new();
    if report.table.is_none() {
        match &report.content {
            Content::Found { signature } => match skip_reason(signature) {
                None => cands.push(Candidate {
                    partition: None,
                    offset: 0,
                    size: report.size,
                    part_uuid: None,
                    part_name: None,
                    signature: signature.clone(),
                }),
                Some(reason) => skipped.push(Skipped {
                    source: "whole device".into(),
                    what: signature.fs_type.clone(),
                    reason,
                }),
            },
            Content::Ambivalent { signatures } => skipped.push(Skipped {
                source: "whole device".into(),
                what: "ambivalent".into(),
                reason: ambivalent_reason(signatures),
            }),
            Content::Empty => {}
        }
        return (cands, skipped);
    }
    for pr in &report.partitions {
        let p = &pr.partition;
        let source = format!("partition {}", p.number);
        if let Some(problem) = &p.problem {
            skipped.push(Skipped {
                source,
                what: "partition".into(),
                reason: problem.clone(),
            });
            continue;
        }
        if p.kind == PartitionKind::Extended {
            continue;
        }
        match &pr.content {
            Some(Content::Found { signature }) => match skip_reason(signature) {
                None => cands.push(Candidate {
                    partition: Some(p.number),
                    offset: p.start,
                    size: p.size,
                    part_uuid: p.uuid.clone(),
                    part_name: p.name.clone(),
                    signature: signature.clone(),
                }),
                Some(reason) => skipped.push(Skipped {
                    source,
                    what: signature.fs_type.clone(),
                    reason,
                }),
            },
            Some(Content::Ambivalent { signatures }) => skipped.push(Skipped {
                source,
                what: "ambivalent".into(),
                reason: ambivalent_reason(signatures),
            }),
            Some(Content::Empty) | None => {}
        }
    }
    (cands, skipped)
}
