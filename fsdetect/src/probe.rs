//! One call probes a whole disk (or a region of it) and returns a tree: the
//! signature(s) on the whole device, its partition table, and each partition's
//! signature — applying blkid's rules for what may coexist.

use crate::error::{ProbeError, Result};
use crate::reader::{IoStats, Reader, Window};
use crate::sig::IDINFOS;
use crate::signature::{Signature, Usage};
use crate::source::BlockSource;
use crate::table::{read_table, Partition, PartitionKind, PartitionTable};

/// blkid treats devices up to this size as floppies: the first signature wins
/// and RAID is not probed.
const TINY_DEVICE: u64 = 1440 * 1024;

/// What a region holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "result", rename_all = "lowercase"))]
pub enum Content {
    /// No known signature.
    Empty,
    /// Exactly one usable signature (tolerant ones like iso9660 may sit beside it).
    Found {
        /// The signature blkid would report.
        signature: Signature,
    },
    /// Two or more signatures that cannot coexist (e.g. a stale xfs under a
    /// new ext4). Never mount such a device: which one is real is unknown.
    Ambivalent {
        /// Every signature that matched, in probing order.
        signatures: Vec<Signature>,
    },
}

impl Content {
    /// The signature, when there is exactly one.
    pub fn signature(&self) -> Option<&Signature> {
        match self {
            Content::Found { signature } => Some(signature),
            _ => None,
        }
    }
}

/// A partition and what is on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PartitionReport {
    /// The table entry.
    pub partition: Partition,
    /// Its content; `None` when it was not probed (an extended container, or
    /// an entry with a problem such as ending past the disk).
    pub content: Option<Content>,
}

/// The result of probing a disk or region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiskReport {
    /// Size of the probed region in bytes.
    pub size: u64,
    /// Logical sector size used to read partition tables.
    pub sector_size: u32,
    /// Signature(s) on the whole region.
    pub content: Content,
    /// The partition table, if any.
    pub table: Option<PartitionTable>,
    /// Each partition with its content (empty without a table).
    pub partitions: Vec<PartitionReport>,
    /// Reads that reached the source while probing.
    pub io: IoStats,
}

/// Runs the superblock probers over a region with libblkid's safeprobe rules:
/// RAID and crypto members end the search; more than one match where at least
/// one is not tolerant is ambivalent; on tiny devices the first match wins.
pub fn probe_signatures(w: &Window<'_>) -> Result<Content> {
    // libblkid does not run the superblock chain on devices of 1 KiB or less.
    if w.len() <= 1024 {
        return Ok(Content::Empty);
    }
    let plan = crate::sig::read_plan(w.len());
    w.prefetch(&plan.first)?;
    w.plan(&plan.later);
    // Reads at superblock-dependent places join the second phase.
    w.plan(&crate::sig::dependent_ranges(w));
    let tiny = w.len() <= TINY_DEVICE;
    let mut found: Vec<Signature> = Vec::new();
    let mut intolerant = 0usize;
    for info in IDINFOS {
        if tiny && info.usage == Usage::Raid {
            continue;
        }
        let sig = match (info.probe)(w) {
            Ok(Some(sig)) => sig,
            Ok(None) | Err(ProbeError::OutOfRange { .. }) => continue,
            Err(e) => return Err(e),
        };
        if tiny && found.is_empty() {
            return Ok(Content::Found { signature: sig });
        }
        let stops = matches!(info.usage, Usage::Raid | Usage::Crypto);
        if !stops && !info.tolerant {
            intolerant += 1;
        }
        found.push(sig);
        if stops {
            break;
        }
    }
    Ok(match found.len() {
        0 => Content::Empty,
        n if n > 1 && intolerant > 0 => Content::Ambivalent { signatures: found },
        _ => Content::Found {
            signature: found.swap_remove(0),
        },
    })
}

/// Whether a table entry is probed for contents: not an extended container,
/// not empty, and without a problem such as ending past the disk.
fn probe_partition(p: &Partition) -> bool {
    p.problem.is_none() && p.kind != PartitionKind::Extended && p.size > 0
}

/// Probes a whole source: table, whole-device signatures, and every partition.
pub fn probe_disk(src: &dyn BlockSource) -> Result<DiskReport> {
    let reader = Reader::new(src);
    probe_window(&reader, reader.whole())
}

/// Probes `len` bytes at `offset` of a source as if they were a device of their
/// own (blkid's `--offset/--size`).
pub fn probe_region(src: &dyn BlockSource, offset: u64, len: u64) -> Result<DiskReport> {
    let reader = Reader::new(src);
    let w = reader.region(offset, len)?.as_whole_disk();
    probe_window(&reader, w)
}

fn probe_window(reader: &Reader<'_>, w: Window<'_>) -> Result<DiskReport> {
    let plan = crate::sig::read_plan(w.len());
    w.prefetch(&plan.first)?;
    w.plan(&plan.later);
    let mut table = read_table(&w)?;
    let ranges: Vec<(u64, u64)> = table
        .as_ref()
        .map(|t| t.partitions.iter().map(|p| (p.start, p.size)).collect())
        .unwrap_or_default();
    // The table says where every partition is before any of them is probed:
    // their first phases are fetched in the same coalesced pass as the
    // disk's own second phase (or, if the disk turns out to be a RAID
    // member, never).
    let probed: Vec<Window<'_>> = table
        .as_ref()
        .map(|t| {
            t.partitions
                .iter()
                .filter(|p| probe_partition(p))
                .filter_map(|p| w.subregion(p.start, p.size).ok())
                .collect()
        })
        .unwrap_or_default();
    for pw in &probed {
        let plan = crate::sig::read_plan(pw.len());
        pw.plan_shared(&plan.first);
        // The second phase stays the partition's own (fetched when its
        // probing gets there, or riding along with a call close to it):
        // sharing it saved no call on the benchmark's disks and would make
        // a disk of LVM/RAID partitions read slots it never needs.
        pw.plan(&plan.later);
    }
    let mut content = probe_signatures(&w.with_partitions(&ranges))?;
    // blkid_probe_use_wiper: a dos table (its entries at 446..510) inside the
    // area the matched signature's tool wipes was written after it; blkid then
    // drops the signature and reports the table alone (pvcreate, then fdisk).
    if let (Some(t), Content::Found { signature }) = (&table, &content) {
        let wipes = crate::sig::idinfo(&signature.fs_type)
            .map(|i| i.wipes)
            .unwrap_or(0);
        if t.kind == crate::table::TableKind::Dos && wipes >= 510 {
            content = Content::Empty;
        }
    }
    // A RAID member may show its array's partition table (RAID1 with a 0.90 or
    // 1.0 superblock at the end): blkid ignores the table then, and so do we.
    if let Content::Found { signature } = &content {
        if signature.usage == Usage::Raid && signature.fs_type == "linux_raid_member" {
            table = None;
        }
    }
    let mut partitions = Vec::new();
    if let Some(t) = &table {
        // Every partition's superblocks are in memory now: their dependent
        // reads (FAT root directories, NTFS MFT records) go in one pass too.
        w.fetch_shared()?;
        for pw in &probed {
            if pw.len() > 1024 {
                pw.plan_shared(&crate::sig::dependent_ranges(pw));
            }
        }
        for p in &t.partitions {
            let content = if probe_partition(p) {
                match w.subregion(p.start, p.size) {
                    Ok(pw) => Some(probe_signatures(&pw)?),
                    Err(_) => None,
                }
            } else {
                None
            };
            partitions.push(PartitionReport {
                partition: p.clone(),
                content,
            });
        }
    }
    Ok(DiskReport {
        size: w.len(),
        sector_size: w.sector_size(),
        content,
        table,
        partitions,
        io: reader.stats(),
    })
}

impl DiskReport {
    /// True when anything at all was recognised (blkid's exit status 0).
    pub fn found_anything(&self) -> bool {
        self.table.is_some() || self.content != Content::Empty
    }
}
