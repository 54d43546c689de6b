//! FAT12/16/32 as libblkid 2.38's `vfat.c` sees it.
//!
//! FAT has no single magic: blkid accepts a boot sector carrying one of the
//! file-system-type strings ("MSWIN", "FAT32   ", "MSDOS", "FAT16   "…), or
//! failing that one starting with a jump instruction (0xEB/0xE9) or ending
//! with 0x55AA — those weak matches must also have the 0x55AA signature and
//! not be an OS/2 pseudo-FAT header of JFS/HPFS. The BPB must then make
//! sense (`fat_valid_superblock`) and the cluster count must fit the FAT
//! width. Values, in blkid's order: SEC_TYPE=msdos (FAT12/16), LABEL_FATBOOT
//! (boot sector label unless "NO NAME"), LABEL (the volume-id entry of the
//! root directory), UUID (`XXXX-XXXX` from the serial), VERSION, BLOCK_SIZE
//! (the logical sector size).
//!
//! BitLocker volumes look like FAT; like blkid we refuse those with the
//! BitLocker OEM id `-FVE-FS-` (BitLocker To Go's "MSWIN4.1" variant, which
//! blkid recognises by a GUID, is not checked here).

use crate::bytes::{le16, le32, slice};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// Cluster-count limits of each FAT width.
const FAT12_MAX: u32 = 0xFF4;
const FAT16_MAX: u32 = 0xFFF4;
const FAT32_MAX: u32 = 0x0FFF_FFF6;

/// blkid's "tiny device" limit: there it reads the root directory one entry
/// at a time instead of at once, which matters only for truncated images.
const TINY_DEVICE: u64 = 1440 * 1024;

const DIR_ENTRY: u32 = 32;
const ENTRY_FREE: u8 = 0xe5;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const ATTR_MASK: u8 = 0x3f;
const NO_NAME: &[u8] = b"NO NAME    ";

/// Strong magics (string, offset) in libblkid's order; after them come the
/// weak ones (0xEB or 0xE9 at 0, 0x55AA at 0x1FE).
const STRONG_MAGICS: [(&[u8], usize); 6] = [
    (b"MSWIN", 0x52),
    (b"FAT32   ", 0x52),
    (b"MSDOS", 0x36),
    (b"FAT16   ", 0x36),
    (b"FAT12   ", 0x36),
    (b"FAT     ", 0x36),
];

/// The boot sector fields both layouts share, plus the FAT32 extension.
struct Bpb<'a> {
    bs: &'a [u8],
    sector_size: u16,
    cluster_size: u8,
    reserved: u16,
    fats: u8,
    dir_entries: u16,
    fat_length: u16,
    fat32_length: u32,
}

impl<'a> Bpb<'a> {
    fn parse(bs: &'a [u8]) -> Option<Self> {
        Some(Self {
            bs,
            sector_size: le16(bs, 11)?,
            cluster_size: *bs.get(13)?,
            reserved: le16(bs, 14)?,
            fats: *bs.get(16)?,
            dir_entries: le16(bs, 17)?,
            fat_length: le16(bs, 22)?,
            fat32_length: le32(bs, 36)?,
        })
    }

    fn sector_count(&self) -> u32 {
        match le16(self.bs, 19) {
            Some(0) | None => le32(self.bs, 32).unwrap_or(0),
            Some(n) => u32::from(n),
        }
    }

    /// `fat_valid_superblock`: returns (cluster count, total FAT sectors)
    /// for a sensible BPB, with C's wrapping 32-bit arithmetic.
    fn validate(&self, weak_magic: bool) -> Option<(u32, u32)> {
        if weak_magic {
            if slice(self.bs, 0x1fe, 2) != Some(b"\x55\xaa") {
                return None;
            }
            let fs_type = slice(self.bs, 0x36, 8)?;
            if fs_type == b"JFS     " || fs_type == b"HPFS    " {
                return None;
            }
        }
        let media = *self.bs.get(21)?;
        if self.fats == 0
            || self.reserved == 0
            || !(media >= 0xf8 || media == 0xf0)
            || !self.cluster_size.is_power_of_two()
        {
            return None;
        }
        let ss = self.sector_size;
        if !ss.is_power_of_two() || !(512..=4096).contains(&ss) {
            return None;
        }
        let fat_length = if self.fat_length == 0 {
            self.fat32_length
        } else {
            u32::from(self.fat_length)
        };
        let fat_size = fat_length.wrapping_mul(u32::from(self.fats));
        let dir_size = (u32::from(self.dir_entries) * DIR_ENTRY).div_ceil(u32::from(ss));
        let used = u32::from(self.reserved)
            .wrapping_add(fat_size)
            .wrapping_add(dir_size);
        let clusters = self.sector_count().wrapping_sub(used) / u32::from(self.cluster_size);
        let max = if self.fat_length == 0 && self.fat32_length != 0 {
            FAT32_MAX
        } else if clusters > FAT12_MAX {
            FAT16_MAX
        } else {
            FAT12_MAX
        };
        if clusters > max {
            return None;
        }
        Some((clusters, fat_size))
    }
}

/// Finds the volume-id entry of a directory (`search_fat_label`): the first
/// entry with the volume-id attribute that is not a directory, a long-name
/// part, a deleted entry or one with clusters; the scan stops at the end mark.
fn search_label(w: &Window<'_>, offset: u64, entries: u32) -> Result<Option<Vec<u8>>> {
    let tiny = w.len() <= TINY_DEVICE;
    let whole = if tiny {
        None
    } else {
        let len = u64::from(entries) * u64::from(DIR_ENTRY);
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        match w.read_if_present(offset, len)? {
            Some(d) => Some(d),
            None => return Ok(None),
        }
    };
    for i in 0..entries {
        let at = u64::from(i) * u64::from(DIR_ENTRY);
        let ent = match &whole {
            Some(d) => slice(d, at as usize, DIR_ENTRY as usize).map(<[u8]>::to_vec),
            None => match offset.checked_add(at) {
                Some(off) => w
                    .read_if_present(off, DIR_ENTRY as usize)?
                    .map(|b| b.to_vec()),
                None => None,
            },
        };
        let Some(ent) = ent else { break };
        let (name0, attr) = (ent[0], ent[11]);
        if name0 == 0 {
            break;
        }
        let clusters = le16(&ent, 20) != Some(0) || le16(&ent, 26) != Some(0);
        if name0 == ENTRY_FREE || clusters || attr & ATTR_MASK == ATTR_LONG_NAME {
            continue;
        }
        if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
            return Ok(Some(ent[..11].to_vec()));
        }
    }
    Ok(None)
}

/// Which magic matched: `Some(true)` for a weak one (jump or 0x55AA only).
fn magic_kind(bs: &[u8]) -> Option<bool> {
    if STRONG_MAGICS
        .iter()
        .any(|(m, off)| slice(bs, *off, m.len()) == Some(*m))
    {
        return Some(false);
    }
    let weak = matches!(bs.first(), Some(0xeb | 0xe9)) || slice(bs, 0x1fe, 2) == Some(b"\x55\xaa");
    weak.then_some(true)
}

/// Where the FAT12/16 root directory is and how long it is, in bytes.
fn fixed_root_dir(bpb: &Bpb<'_>, fat_size: u32) -> (u64, u64) {
    let root_start = u32::from(bpb.reserved)
        .wrapping_add(fat_size)
        .wrapping_mul(u32::from(bpb.sector_size));
    (
        u64::from(root_start),
        u64::from(bpb.dir_entries) * u64::from(DIR_ENTRY),
    )
}

/// Byte offset of FAT32 data cluster `cluster` (C's wrapping 32-bit sector math).
fn fat32_cluster_offset(bpb: &Bpb<'_>, fat_size: u32, cluster: u32) -> u64 {
    let start_data_sect = u32::from(bpb.reserved).wrapping_add(fat_size);
    let sect_off = cluster
        .wrapping_sub(2)
        .wrapping_mul(u32::from(bpb.cluster_size));
    u64::from(start_data_sect.wrapping_add(sect_off)) * u64::from(bpb.sector_size)
}

/// Byte offset of the FAT32 table entry of `cluster`.
fn fat32_entry_offset(bpb: &Bpb<'_>, cluster: u32) -> u64 {
    u64::from(bpb.reserved) * u64::from(bpb.sector_size) + u64::from(cluster) * 4
}

/// Entries of the first FAT, which bounds the root cluster chain.
fn fat32_entries(bpb: &Bpb<'_>) -> u32 {
    (u64::from(bpb.fat32_length) * u64::from(bpb.sector_size) / 4) as u32
}

/// Walks the FAT32 root directory cluster chain (at most 99 clusters, as
/// blkid) looking for the volume label.
fn fat32_root_label(w: &Window<'_>, bpb: &Bpb<'_>, fat_size: u32) -> Result<Option<Vec<u8>>> {
    let buf_size = u32::from(bpb.cluster_size) * u32::from(bpb.sector_size);
    let entries = fat32_entries(bpb);
    let mut next = le32(bpb.bs, 44).unwrap_or(0);
    let mut maxloop = 100;
    loop {
        maxloop -= 1;
        if next == 0 || next >= entries || maxloop == 0 {
            return Ok(None);
        }
        let off = fat32_cluster_offset(bpb, fat_size, next);
        if let Some(l) = search_label(w, off, buf_size / DIR_ENTRY)? {
            return Ok(Some(l));
        }
        let fat_entry_off = fat32_entry_offset(bpb, next);
        // blkid reads a whole cluster's worth here and gives up when that
        // does not fit; only the first 4 bytes matter, so only those are read.
        if fat_entry_off
            .checked_add(u64::from(buf_size))
            .is_none_or(|end| end > w.len())
        {
            return Ok(None);
        }
        let Some(e) = w.read_if_present(fat_entry_off, 4)? else {
            return Ok(None);
        };
        next = le32(&e, 0).unwrap_or(0) & 0x0fff_ffff;
    }
}

/// The FAT32 FSInfo sector must carry its signatures, or be zeroed.
fn fsinfo_ok(w: &Window<'_>, bpb: &Bpb<'_>) -> Result<Option<bool>> {
    let sect = le16(bpb.bs, 48).unwrap_or(0);
    if sect == 0 {
        return Ok(Some(true));
    }
    let off = u64::from(sect) * u64::from(bpb.sector_size);
    let Some(fsinfo) = w.read_if_present(off, 512)? else {
        return Ok(None);
    };
    let sig1 = slice(&fsinfo, 0, 4).unwrap_or(&[]);
    let sig2 = slice(&fsinfo, 484, 4).unwrap_or(&[]);
    let ok1 = [b"RRaA", b"RRdA", b"\0\0\0\0"].iter().any(|m| sig1 == *m);
    let ok2 = [b"rrAa", b"\0\0\0\0"].iter().any(|m| sig2 == *m);
    Ok(Some(ok1 && ok2))
}

/// The boot sector of a FAT region, if cached and valid: the BPB, whether
/// the magic was weak, the cluster count and the FAT sectors.
fn cached_bpb(block: &[u8]) -> Option<(Bpb<'_>, u32, u32)> {
    let bs = slice(block, 0, 512)?;
    let weak = magic_kind(bs)?;
    let bpb = Bpb::parse(bs)?;
    let (clusters, fat_size) = bpb.validate(weak)?;
    if slice(bs, 3, 8) == Some(b"-FVE-FS-") {
        return None;
    }
    Some((bpb, clusters, fat_size))
}

/// The dependent reads of [`probe`] (see [`crate::sig::PlanFn`]): the
/// FAT12/16 root directory, or the FAT32 FSInfo sector, first root cluster
/// and its FAT entry, located from the boot sector in the cache.
pub fn plan(w: &Window<'_>) -> Vec<(u64, u64)> {
    if w.len() <= 1024 {
        return Vec::new();
    }
    let Some(block) = w.read_cached(0, 1024) else {
        return Vec::new();
    };
    let Some((bpb, _, fat_size)) = cached_bpb(&block) else {
        return Vec::new();
    };
    let ss = u64::from(bpb.sector_size);
    if bpb.fat_length != 0 {
        vec![fixed_root_dir(&bpb, fat_size)]
    } else if bpb.fat32_length != 0 {
        let mut v = Vec::new();
        let fsinfo = u64::from(le16(bpb.bs, 48).unwrap_or(0));
        if fsinfo != 0 {
            v.push((fsinfo * ss, 512));
        }
        let root = le32(bpb.bs, 44).unwrap_or(0);
        if root != 0 && root < fat32_entries(&bpb) {
            let cluster = u64::from(bpb.cluster_size) * ss;
            v.push((fat32_cluster_offset(&bpb, fat_size, root), cluster));
            v.push((fat32_entry_offset(&bpb, root), 4));
        }
        v
    } else {
        Vec::new()
    }
}

/// A FAT boot sector at the start of the region.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid skips superblock probing on regions of 1 KiB or less.
    if w.len() <= 1024 {
        return Ok(None);
    }
    // libblkid matches the magics inside the first 1 KiB block.
    let Some(block) = w.read_if_present(0, 1024)? else {
        return Ok(None);
    };
    let Some((bpb, clusters, fat_size)) = cached_bpb(&block) else {
        return Ok(None);
    };
    let bs = bpb.bs;
    let mut sig = Signature::new("vfat", Usage::Filesystem, 0);
    let (vol_label, boot_label, serial, version) = if bpb.fat_length != 0 {
        let (root_start, _) = fixed_root_dir(&bpb, fat_size);
        let label = search_label(w, root_start, u32::from(bpb.dir_entries))?;
        sig.set("SEC_TYPE", "msdos");
        let version = if clusters < FAT12_MAX {
            Some("FAT12")
        } else if clusters < FAT16_MAX {
            Some("FAT16")
        } else {
            None
        };
        // The extended boot signature says what the BPB carries: 0x29 a
        // serial and a label, 0x28 only a serial (checked on this machine).
        let ext_sig = bs.get(0x26).copied();
        let boot_label = slice(bs, 43, 11).filter(|_| ext_sig == Some(0x29));
        let serial = slice(bs, 39, 4).filter(|_| matches!(ext_sig, Some(0x28 | 0x29)));
        (label, boot_label, serial, version)
    } else if bpb.fat32_length != 0 {
        let label = fat32_root_label(w, &bpb, fat_size)?;
        match fsinfo_ok(w, &bpb)? {
            Some(true) => {}
            _ => return Ok(None),
        }
        // FAT32: the serial is always taken, the boot label only with the
        // 0x29 extended boot signature (checked on this machine).
        let boot_label = slice(bs, 71, 11).filter(|_| bs.get(0x42) == Some(&0x29));
        (label, boot_label, slice(bs, 67, 4), Some("FAT32"))
    } else {
        (None, None, None, None)
    };
    if let Some(b) = boot_label.filter(|b| *b != NO_NAME) {
        if let Some(l) = crate::bytes::label_bytes(b) {
            sig.set("LABEL_FATBOOT", l);
        }
    }
    // A directory entry stores a leading 0xE5 as 0x05 (0xE5 marks deleted
    // entries); blkid 2.38.1 restores it (checked on this machine).
    let vol_label = vol_label.map(|mut l| {
        if l.first() == Some(&0x05) {
            l[0] = 0xe5;
        }
        l
    });
    if let Some(l) = vol_label.as_deref().and_then(crate::bytes::label_bytes) {
        sig.set("LABEL", l);
    }
    if let Some(s) = serial {
        sig.set(
            "UUID",
            format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0]),
        );
    }
    if let Some(v) = version {
        sig.set("VERSION", v);
    }
    sig.set("BLOCK_SIZE", bpb.sector_size.to_string());
    Ok(Some(sig))
}
