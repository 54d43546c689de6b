//! Linux software RAID (md) member superblocks, as libblkid 2.38 finds them.
//!
//! A member of an md array carries one superblock: version 0.90 in the last
//! 64 KiB-aligned 64 KiB of the device (host-endian, so both byte orders are
//! accepted), 1.0 eight KiB before the 4 KiB-aligned end, 1.1 at offset 0 and
//! 1.2 at 4 KiB. libblkid 2.38 does not verify the 1.x `sb_csum` nor the 0.90
//! checksum; neither do we, or our answers would differ from blkid's.

use crate::bytes::{be32, label_bytes, le32, le64, slice, uuid_string};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// md superblock magic (MD_SB_MAGIC).
const MD_SB_MAGIC: u32 = 0xa92b_4efc;
/// Space reserved for a 0.90 superblock at the end of a member.
const MD_RESERVED_BYTES: u64 = 0x10000;
/// Bytes of the 0.90 superblock libblkid looks at (magic … set_uuid3).
const SB0_LEN: usize = 64;
/// Size of the fixed part of a 1.x superblock.
const SB1_LEN: usize = 256;

/// Probes a region for an md member superblock (TYPE `linux_raid_member`).
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    let size = w.len();
    if size > MD_RESERVED_BYTES {
        let off0 = (size & !(MD_RESERVED_BYTES - 1)) - MD_RESERVED_BYTES;
        if let Some(sig) = probe_v090(w, off0)? {
            return Ok(Some(sig));
        }
        let off10 = (size & !(0x1000 - 1)).saturating_sub(0x2000);
        if size & !(0x1000 - 1) >= 0x2000 {
            if let Some(sig) = probe_v1(w, off10, "1.0")? {
                return Ok(Some(sig));
            }
        }
    }
    if let Some(sig) = probe_v1(w, 0, "1.1")? {
        return Ok(Some(sig));
    }
    probe_v1(w, 0x1000, "1.2")
}

/// A 0.90 superblock at `off` (either byte order).
fn probe_v090(w: &Window<'_>, off: u64) -> Result<Option<Signature>> {
    let Some(sb) = w.read_if_present(off, SB0_LEN)? else {
        return Ok(None);
    };
    // Fields read in the superblock's own byte order.
    let field: fn(&[u8], usize) -> Option<u32> = if le32(&sb, 0) == Some(MD_SB_MAGIC) {
        le32
    } else if be32(&sb, 0) == Some(MD_SB_MAGIC) {
        be32
    } else {
        return Ok(None);
    };
    let get = |o: usize| field(&sb, o).unwrap_or(0);
    let (major, minor, patch) = (get(4), get(8), get(12));
    let array_size = u64::from(get(32)) << 10;
    // libblkid prints the four uuid words most significant byte first,
    // whatever the superblock's byte order; before 0.90 only word 0 exists.
    let mut uuid = [0u8; 16];
    uuid[0..4].copy_from_slice(&get(20).to_be_bytes());
    if minor >= 90 {
        uuid[4..8].copy_from_slice(&get(52).to_be_bytes());
        uuid[8..12].copy_from_slice(&get(56).to_be_bytes());
        uuid[12..16].copy_from_slice(&get(60).to_be_bytes());
    }
    if w.len() < array_size.saturating_add(MD_RESERVED_BYTES) || off < array_size {
        return Ok(None);
    }
    // A superblock at the end of the last partition sits where a whole-disk
    // one would: on a partitioned disk it belongs to the partition.
    if w.covered_by_partition(off - array_size, array_size + MD_RESERVED_BYTES) {
        return Ok(None);
    }
    let mut sig = Signature::new("linux_raid_member", Usage::Raid, off);
    sig.set("VERSION", format!("{major}.{minor}.{patch}"));
    if let Some(u) = uuid_string(&uuid) {
        sig.set("UUID", u);
    }
    sig.set_detail("MD_METADATA", "0.90");
    Ok(Some(sig))
}

/// A 1.x superblock at `off`, reported as `version`.
fn probe_v1(w: &Window<'_>, off: u64, version: &str) -> Result<Option<Signature>> {
    let Some(sb) = w.read_if_present(off, SB1_LEN)? else {
        return Ok(None);
    };
    if le32(&sb, 0) != Some(MD_SB_MAGIC)
        || le32(&sb, 4) != Some(1)
        || le64(&sb, 144) != Some(off >> 9)
    {
        return Ok(None);
    }
    let mut sig = Signature::new("linux_raid_member", Usage::Raid, off);
    if let Some(u) = slice(&sb, 16, 16).and_then(uuid_string) {
        sig.set("UUID", u);
    }
    if let Some(u) = slice(&sb, 168, 16).and_then(uuid_string) {
        sig.set("UUID_SUB", u);
    }
    if let Some(l) = slice(&sb, 32, 32).and_then(label_bytes) {
        sig.set("LABEL", l);
    }
    sig.set("VERSION", version);
    if let Some(level) = le32(&sb, 72) {
        sig.set_detail("MD_LEVEL", (level as i32).to_string());
    }
    if let Some(n) = le32(&sb, 92) {
        sig.set_detail("MD_RAID_DISKS", n.to_string());
    }
    Ok(Some(sig))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::reader::Reader;
    use crate::source::MemSource;

    fn v1_image(size: usize, off: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[off..off + 4].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
        d[off + 4..off + 8].copy_from_slice(&1u32.to_le_bytes());
        d[off + 16..off + 32].copy_from_slice(&[0x11; 16]);
        d[off + 32..off + 40].copy_from_slice(b"host:md0");
        d[off + 144..off + 152].copy_from_slice(&((off as u64) >> 9).to_le_bytes());
        d[off + 168..off + 184].copy_from_slice(&[0x22; 16]);
        d
    }

    #[test]
    fn v12_values_in_blkid_order() {
        let d = v1_image(2 << 20, 0x1000);
        let src = MemSource::new(d);
        let r = Reader::new(&src);
        let s = probe(&r.whole()).unwrap().unwrap();
        let names: Vec<&str> = s.tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["UUID", "UUID_SUB", "LABEL", "VERSION"]);
        assert_eq!(s.get_str("VERSION").unwrap(), "1.2");
        assert_eq!(s.label().unwrap(), "host:md0");
    }

    #[test]
    fn wrong_super_offset_is_rejected() {
        let mut d = v1_image(2 << 20, 0x1000);
        d[0x1000 + 144] = 9;
        let src = MemSource::new(d);
        let r = Reader::new(&src);
        assert!(probe(&r.whole()).unwrap().is_none());
    }

    #[test]
    fn tiny_and_random_regions_do_not_panic() {
        for n in [0usize, 1, 100, 4096, 4097, 8192, 65536, 65537, 200_000] {
            let d: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let src = MemSource::new(d);
            let r = Reader::new(&src);
            let _ = probe(&r.whole()).unwrap();
        }
    }
}
