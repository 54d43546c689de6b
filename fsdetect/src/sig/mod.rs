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
pub mod zfs;

/// A prober: reads what it needs from the region, never writes.
pub type ProbeFn = fn(&Window<'_>) -> Result<Option<Signature>>;

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
        wipes: 0,
    },
    IdInfo {
        name: "LVM2_member",
        usage: Usage::Raid,
        tolerant: false,
        probe: lvm2::probe,
        wipes: 8192,
    },
    IdInfo {
        name: "crypto_LUKS",
        usage: Usage::Crypto,
        tolerant: false,
        probe: luks::probe,
        wipes: 0,
    },
    IdInfo {
        name: "vfat",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: vfat::probe,
        wipes: 0,
    },
    IdInfo {
        name: "swap",
        usage: Usage::Other,
        tolerant: false,
        probe: swap::probe,
        wipes: 0,
    },
    IdInfo {
        name: "xfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: xfs::probe,
        wipes: 0,
    },
    IdInfo {
        name: "ext4dev",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext4dev,
        wipes: 0,
    },
    IdInfo {
        name: "ext4",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext4,
        wipes: 0,
    },
    IdInfo {
        name: "ext3",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext3,
        wipes: 0,
    },
    IdInfo {
        name: "ext2",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ext::probe_ext2,
        wipes: 0,
    },
    IdInfo {
        name: "jbd",
        usage: Usage::Other,
        tolerant: false,
        probe: ext::probe_jbd,
        wipes: 0,
    },
    IdInfo {
        name: "iso9660",
        usage: Usage::Filesystem,
        tolerant: true,
        probe: iso9660::probe,
        wipes: 0,
    },
    IdInfo {
        name: "zfs_member",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: zfs::probe,
        wipes: 0,
    },
    IdInfo {
        name: "ntfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: ntfs::probe,
        wipes: 0,
    },
    IdInfo {
        name: "squashfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: squashfs::probe,
        wipes: 0,
    },
    IdInfo {
        name: "btrfs",
        usage: Usage::Filesystem,
        tolerant: false,
        probe: btrfs::probe,
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

/// The byte ranges `(offset, len)` the probers read on a region of `len`
/// bytes, known before any of them runs, so the reader can fetch them in a
/// few coalesced calls (blkid issues one read per superblock instead).
/// Locations that depend on on-disk pointers are not listed; they are read
/// on demand.
///
/// The first list is what the first probers (md, LVM2, the LUKS primary
/// header) and most filesystems need; the second is read only if a prober
/// gets that far (LUKS2 secondary headers, ZFS labels).
pub fn read_plan(len: u64) -> ReadPlan {
    const KIB: u64 = 1024;
    // Partition tables (MBR, GPT header and entries at 512 and 4096-byte
    // sectors), ext*/jbd (1 KiB), xfs, btrfs (64 KiB + 4 KiB), vfat/ntfs boot
    // sectors, swap signatures at page ends up to 64 KiB, iso9660 volume
    // descriptors (32 KiB+), LVM label, LUKS primary, md 1.1/1.2, squashfs;
    // md 0.90 (last 64 KiB-aligned 64 KiB), md 1.0 and the backup GPT header
    // (last 8 KiB).
    let md090 = (len & !0xffff).saturating_sub(0x10000);
    let first = vec![
        (0, 72 * KIB),
        (md090, 4 * KIB),
        (len.saturating_sub(8 * KIB), 8 * KIB),
    ];
    // LUKS2 secondary headers.
    let mut rest: Vec<(u64, u64)> = luks::SECONDARY_OFFSETS
        .iter()
        .map(|&o| (o, 4 * KIB))
        .collect();
    // The uberblock arrays (second halves) of the four ZFS vdev labels
    // (blkid probes ZFS only from 64 MiB up).
    if len >= zfs::MIN_SIZE {
        let label = 256 * KIB;
        let align = len % label;
        for off in [0, label, len - 2 * label - align, len - label - align] {
            rest.push((off + label / 2, label / 2));
        }
    }
    ReadPlan { first, later: rest }
}

/// Looks a prober up by its TYPE name (for fuzz targets and tests).
pub fn idinfo(name: &str) -> Option<&'static IdInfo> {
    IDINFOS.iter().find(|i| i.name == name)
}
