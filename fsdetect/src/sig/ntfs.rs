//! NTFS as libblkid 2.38's `ntfs.c` sees it: OEM id `NTFS    ` at byte 3,
//! a BIOS parameter block whose FAT-only fields are zero, an MFT whose first
//! record and `$Volume` record (number 3) start with `FILE`, then LABEL (the
//! `$VOLUME_NAME` attribute, UTF-16LE), BLOCK_SIZE (the sector size) and UUID
//! (the 64-bit volume serial as 16 hex digits), in that order.
//!
//! Like blkid, the MFT record's update-sequence fixups are not applied: the
//! volume name lives in the first sector of the record in practice.

use crate::bytes::{le16, le32, le64, slice};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

const MAGIC: &[u8] = b"NTFS    ";
const MAGIC_OFF: usize = 3;
/// Largest cluster blkid 2.38 accepts.
const MAX_CLUSTER_SIZE: u32 = 2 * 1024 * 1024;
const MFT_RECORD_VOLUME: u64 = 3;
const ATTR_VOLUME_NAME: u32 = 0x60;
const ATTR_END: u32 = 0xffff_ffff;
/// Most of an MFT record we read (real records are 1–4 KiB).
const MAX_RECORD_READ: u64 = 64 * 1024;
/// `sizeof(struct file_attribute)` in libblkid (packed).
const ATTR_HEADER: u64 = 22;

/// Geometry derived from the boot sector, or `None` when it is not NTFS.
struct Boot {
    sector_size: u16,
    mft_record_size: u32,
    mft_offset: u64,
    serial: [u8; 8],
}

fn parse_boot(bs: &[u8]) -> Option<Boot> {
    let sector_size = le16(bs, 11)?;
    if !(256..=4096).contains(&sector_size) {
        return None;
    }
    let spc_raw = *bs.get(13)?;
    let sectors_per_cluster: u32 = match spc_raw {
        1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 => u32::from(spc_raw),
        240..=249 => 1u32 << (256 - u32::from(spc_raw)),
        _ => return None,
    };
    if u32::from(sector_size) * sectors_per_cluster > MAX_CLUSTER_SIZE {
        return None;
    }
    // Fields that only FAT uses must be zero.
    if le16(bs, 14)? != 0
        || le16(bs, 17)? != 0
        || le16(bs, 19)? != 0
        || le16(bs, 22)? != 0
        || le32(bs, 32)? != 0
        || *bs.get(16)? != 0
    {
        return None;
    }
    let cpmr = *bs.get(64)?;
    if !(0xe1..=0xf7).contains(&cpmr) && !matches!(cpmr, 1 | 2 | 4 | 8 | 16 | 32 | 64) {
        return None;
    }
    let cpmr = cpmr as i8;
    let mft_record_size = if cpmr > 0 {
        (cpmr as u32)
            .wrapping_mul(sectors_per_cluster)
            .wrapping_mul(u32::from(sector_size))
    } else {
        1u32 << (-i32::from(cpmr))
    };
    let nr_clusters = le64(bs, 40)? / u64::from(sectors_per_cluster);
    let mft = le64(bs, 48)?;
    let mft_mirror = le64(bs, 56)?;
    if mft > nr_clusters || mft_mirror > nr_clusters {
        return None;
    }
    let mft_offset = mft
        .wrapping_mul(u64::from(sector_size))
        .wrapping_mul(u64::from(sectors_per_cluster));
    if mft_record_size < 4 {
        return None;
    }
    let serial: [u8; 8] = slice(bs, 72, 8)?.try_into().ok()?;
    Some(Boot {
        sector_size,
        mft_record_size,
        mft_offset,
        serial,
    })
}

/// libblkid's UTF-16 to UTF-8 conversion for labels: stops at a NUL unit or
/// when the output buffer (`cap` bytes including the terminator) is full;
/// code units are converted one by one (surrogates become 3-byte sequences).
fn utf16le_label(raw: &[u8], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for pair in raw.chunks_exact(2) {
        let c = u32::from(u16::from_le_bytes([pair[0], pair[1]]));
        if c == 0 {
            break;
        }
        let enc: Vec<u8> = if c < 0x80 {
            vec![c as u8]
        } else if c < 0x800 {
            vec![0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]
        } else {
            vec![
                0xe0 | (c >> 12) as u8,
                0x80 | ((c >> 6) & 0x3f) as u8,
                0x80 | (c & 0x3f) as u8,
            ]
        };
        if out.len() + enc.len() >= cap {
            break;
        }
        out.extend_from_slice(&enc);
    }
    out
}

/// The `$VOLUME_NAME` attribute of the `$Volume` MFT record, if any.
fn volume_label(rec: &[u8], record_size: u32) -> Option<Vec<u8>> {
    let size = u64::from(record_size);
    let allocated = u64::from(le32(rec, 28)?);
    let mut attr_off = u64::from(le16(rec, 20)?);
    // Each step advances by a non-zero length, so this ends within the record.
    while attr_off + ATTR_HEADER <= size && attr_off <= allocated {
        let at = usize::try_from(attr_off).ok()?;
        let attr_type = le32(rec, at)?;
        let attr_len = le32(rec, at + 4)?;
        if attr_len == 0 || attr_type == ATTR_END {
            return None;
        }
        if attr_type == ATTR_VOLUME_NAME {
            let val_off = u64::from(le16(rec, at + 20)?);
            let val_len = u64::from(le32(rec, at + 16)?);
            if attr_off + val_off + val_len > size {
                return None;
            }
            let start = usize::try_from(attr_off + val_off).ok()?;
            let raw = slice(rec, start, usize::try_from(val_len).ok()?)?;
            let label = utf16le_label(raw, raw.len() * 3 / 2 + 1);
            return crate::bytes::label_bytes(&label);
        }
        attr_off += u64::from(attr_len);
    }
    None
}

/// True when `len` bytes at `off` lie inside the region.
fn record_fits(w: &Window<'_>, off: u64, len: u64) -> bool {
    off.checked_add(len).is_some_and(|end| end <= w.len())
}

/// The dependent reads of [`probe`] (see [`crate::sig::PlanFn`]): the
/// start of the MFT and the `$Volume` record, located from the boot sector
/// in the cache.
pub fn plan(w: &Window<'_>) -> Vec<(u64, u64)> {
    if w.len() <= 1024 {
        return Vec::new();
    }
    let Some(block) = w.read_cached(0, 1024) else {
        return Vec::new();
    };
    if slice(&block, MAGIC_OFF, MAGIC.len()) != Some(MAGIC) {
        return Vec::new();
    }
    let Some(boot) = parse_boot(&block) else {
        return Vec::new();
    };
    let rec_len = u64::from(boot.mft_record_size);
    let mut v = vec![(boot.mft_offset, 4)];
    if let Some(vol_off) = (MFT_RECORD_VOLUME * rec_len).checked_add(boot.mft_offset) {
        v.push((vol_off, rec_len.min(MAX_RECORD_READ)));
    }
    v.retain(|&(off, len)| record_fits(w, off, len));
    v
}

/// An NTFS boot sector at the start of the region.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid skips superblock probing on regions of 1 KiB or less.
    if w.len() <= 1024 {
        return Ok(None);
    }
    // libblkid matches the magic inside the first 1 KiB block.
    let Some(block) = w.read_if_present(0, 1024)? else {
        return Ok(None);
    };
    if slice(&block, MAGIC_OFF, MAGIC.len()) != Some(MAGIC) {
        return Ok(None);
    }
    let Some(boot) = parse_boot(&block) else {
        return Ok(None);
    };
    // blkid reads whole records; we check they fit, then read only what is
    // looked at (a crafted record size could otherwise ask for 2 GiB).
    let rec_len = u64::from(boot.mft_record_size);
    if !record_fits(w, boot.mft_offset, rec_len) {
        return Ok(None);
    }
    let Some(first) = w.read_if_present(boot.mft_offset, 4)? else {
        return Ok(None);
    };
    if first != b"FILE" {
        return Ok(None);
    }
    let Some(vol_off) =
        (MFT_RECORD_VOLUME * u64::from(boot.mft_record_size)).checked_add(boot.mft_offset)
    else {
        return Ok(None);
    };
    if !record_fits(w, vol_off, rec_len) {
        return Ok(None);
    }
    let Some(volume) = w.read_if_present(vol_off, rec_len.min(MAX_RECORD_READ) as usize)? else {
        return Ok(None);
    };
    if !volume.starts_with(b"FILE") {
        return Ok(None);
    }
    let mut sig = Signature::new("ntfs", Usage::Filesystem, 0);
    if let Some(label) = volume_label(&volume, boot.mft_record_size) {
        sig.set("LABEL", label);
    }
    sig.set("BLOCK_SIZE", boot.sector_size.to_string());
    if boot.serial.iter().any(|&b| b != 0) {
        sig.set("UUID", format!("{:016X}", u64::from_le_bytes(boot.serial)));
    }
    Ok(Some(sig))
}
