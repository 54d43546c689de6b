//! Signature probers and the order blkid runs them in.
//!
//! Each prober looks at one region and returns the signature it recognises, or
//! `Ok(None)`. The table below mirrors libblkid's `idinfos[]` order and flags,
//! because the order decides which values a non-ambivalent result reports and
//! the flags decide what may coexist.

use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

pub mod btrfs;
pub mod ext;
pub mod iso9660;
pub mod luks;
pub mod lvm2;
pub mod md;
pub mod ntfs;
pub mod squashfs;
pub mod swap;
pub mod vfat;
pub mod xfs;
pub mod xfs_log;
pub mod zfs;

/// A prober: reads what it needs from the region, never writes.
pub type ProbeFn = fn(&Window<'_>) -> Result<Option<Signature>>;

/// A prober's second phase: the `(offset, len)` ranges it will read at
/// locations that depend on its superblock (a FAT root directory, an NTFS
/// MFT record), computed from bytes already cached and without any I/O, so
/// they can be fetched together with the rest of the plan. Empty when the
/// superblock is not there or not cached.
pub type PlanFn = fn(&Window<'_>) -> Vec<(u64, u64)>;

/// One entry of the prober table (libblkid's `struct blkid_idinfo`).
pub struct IdInfo {
    /// blkid TYPE this prober reports.
    pub name: &'static str,
    /// blkid USAGE.
    pub usage: Usage,
    /// BLKID_IDINFO_TOLERANT: may share a device with another signature
    /// without making the result ambivalent (iso9660, udf).
    pub tolerant: bool,
    /// The prober.
    pub probe: ProbeFn,
    /// Its dependent reads, if it has any (see [`PlanFn`]).
    pub plan: Option<PlanFn>,
    /// Bytes at the start of the device that the tool which writes this
    /// signature wipes (blkid_probe_set_wiper): pvcreate wipes 8 KiB. A dos
    /// partition table found inside that area was written later and wins.
    pub wipes: u64,
}

/// Every prober, in libblkid's order: RAID first, then other containers
/// (LVM2, LUKS), then filesystems.
pub static IDINFOS: &[IdInfo] = &[
    IdInfo {
        name: "linux_raid_member",
        usage: Usage::Raid,
        tolerant: false,
        probe: md::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "LVM2_member",
        usage: Usage::Raid,
        tolerant: false,
        probe: lvm2::probe,
        plan: None,
        wipes: 8192,
    },
    IdInfo {
        name: "crypto_LUKS",
        usage: Usage::Crypto,
        tolerant: false,
        probe: luks::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "vfat",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: vfat::probe,
        plan: Some(vfat::plan),
        wipes: 0,
    },
    IdInfo {
        name: "swap",
        usage: Usage::Other,
        tolerant: false,
        probe: swap::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "xfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: xfs::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "ext4dev",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext4dev,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "ext4",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext4,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "ext3",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext3,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "ext2",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext2,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "jbd",
        usage: Usage::Other,
        tolerant: false,
        probe: ext::probe_jbd,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "iso9660",
        usage: Usage::Filesystem,
        tolerant: true,
        probe: iso9660::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "zfs_member",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: zfs::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "ntfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ntfs::probe,
        plan: Some(ntfs::plan),
        wipes: 0,
    },
    IdInfo {
        name: "squashfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: squashfs::probe,
        plan: None,
        wipes: 0,
    },
    IdInfo {
        name: "btrfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: btrfs::probe,
        plan: None,
        wipes: 0,
    },
];

/// Byte ranges `(offset, len)` of a region, in the two phases of [`read_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Fetched before any prober runs.
    pub first: Vec<(u64, u64)>,
    /// Fetched together when a prober first needs one of them.
    pub later: Vec<(u64, u64)>,
}

/// How much of a region's start the first phase reads: everything up to and
/// including the 128 KiB LUKS2 secondary header slot, which every region
/// that is not a RAID/LVM/LUKS member reads anyway. It also holds most FAT
/// root directories, the first ZFS label's nvlist and all iso9660 volume
/// descriptors blkid looks at.
pub const HEAD: u64 = 132 * 1024;

/// The byte ranges `(offset, len)` the probers read on a region of `len`
/// bytes, known before any of them runs, so the reader can fetch them in a
/// few coalesced calls (blkid issues one read per superblock instead).
/// Locations that depend on on-disk pointers are not listed; probers that
/// have such reads declare them from the cached superblock
/// ([`dependent_ranges`]).
///
/// The first list is what the first probers (md, LVM2, the LUKS primary
/// header) and most filesystems need; the second is read only if a prober
/// gets that far (LUKS2 secondary headers, the first two ZFS labels'
/// uberblocks). The last two ZFS labels are read on demand: a pool's
/// first label usually holds the uberblocks blkid wants, and on other
/// devices they are too far from anything else to share a call.
pub fn read_plan(len: u64) -> ReadPlan {
    const KIB: u64 = 1024;
    // Partition tables (MBR, GPT header and entries at 512 and 4096-byte
    // sectors), ext*/jbd (1 KiB), xfs, btrfs (64 KiB + 4 KiB), vfat/ntfs boot
    // sectors, swap signatures at page ends up to 64 KiB, iso9660 volume
    // descriptors (32 KiB+), LVM label, LUKS primary and the secondary slots
    // up to 128 KiB, md 1.1/1.2, squashfs; md 0.90 (last 64 KiB-aligned
    // 64 KiB), md 1.0 and the backup GPT header (last 8 KiB).
    let md090 = (len & !0xffff).saturating_sub(0x10000);
    let first = vec![
        (0, HEAD),
        (md090, 4 * KIB),
        (len.saturating_sub(8 * KIB), 8 * KIB),
    ];
    // LUKS2 secondary headers past the head.
    let mut rest: Vec<(u64, u64)> = luks::SECONDARY_OFFSETS
        .iter()
        .filter(|&&o| o + 4 * KIB > HEAD)
        .map(|&o| (o, 4 * KIB))
        .collect();
    // The uberblock arrays (second halves) of the first two ZFS vdev labels
    // (blkid probes ZFS only from 64 MiB up).
    if len >= zfs::MIN_SIZE {
        let label = 256 * KIB;
        for off in [0, label] {
            rest.push((off + label / 2, label / 2));
        }
    }
    ReadPlan { first, later: rest }
}

/// The dependent reads of every prober that has some (see [`PlanFn`]), from
/// the superblocks already cached on `w`.
pub fn dependent_ranges(w: &Window<'_>) -> Vec<(u64, u64)> {
    IDINFOS
        .iter()
        .filter_map(|i| i.plan)
        .flat_map(|plan| plan(w))
        .collect()
}

/// Looks a prober up by its TYPE name (for fuzz targets and tests).
pub fn idinfo(name: &str) -> Option<&'static IdInfo> {
    IDINFOS.iter().find(|i| i.name == name)
}
