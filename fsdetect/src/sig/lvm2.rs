//! LVM2 physical volume labels (TYPE `LVM2_member`), as libblkid 2.38 reads them.
//!
//! `pvcreate` writes a 512-byte label (`LABELONE`, its own sector number, a
//! CRC, the offset of the PV header, `LVM2 001`) into one of the first four
//! sectors, followed by the PV header whose first 32 bytes are the PV UUID.
//! Only the label and the PV header are read here; the metadata text belongs
//! to the `lvm` crate.

use crate::bytes::{le32, le64, slice};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// Size of an LVM label sector.
const LABEL_SIZE: usize = 512;
/// Offset of `offset_xl` in the label: the CRC covers it and everything after.
const CRC_START: usize = 20;
/// Label type and blkid VERSION.
const LVM2_TYPE: &[u8; 8] = b"LVM2 001";

/// The label and PV header of an LVM2 physical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmLabel {
    /// Sector (0–3) holding the label.
    pub sector: u64,
    /// PV UUID, dashed the way LVM prints it (6-4-4-4-4-4-6).
    pub pv_uuid: String,
    /// Label type, `LVM2 001`.
    pub label_type: String,
    /// Device size recorded in the PV header, in bytes.
    pub device_size: u64,
}

/// LVM's CRC-32 of `data` from lvm2's seed (see [`crate::checksum::lvm_crc_update`]).
fn lvm_crc(data: &[u8]) -> u32 {
    crate::checksum::lvm_crc_update(crate::checksum::LVM_INITIAL_CRC, data)
}

/// Dashes a 32-character LVM id as 6-4-4-4-4-4-6 (libblkid's format_lvm_uuid).
fn format_lvm_uuid(id: &[u8]) -> String {
    let mut s = String::with_capacity(38);
    for (i, &c) in id.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            s.push('-');
        }
        s.push(char::from(c));
    }
    s
}

/// The byte offsets where libblkid looks for `LVM2 001`, in its magic-table
/// order, with the 1 KiB block its prober then reads.
const MAGICS: [(usize, usize); 4] = [(0x218, 0), (0x018, 0), (0x418, 1), (0x618, 1)];

/// Parses the label from the first four sectors of a device (fewer bytes
/// simply mean fewer candidate sectors). Follows libblkid: the first
/// `LVM2 001` magic found decides which 1 KiB block is examined; in it the
/// label must start a sector, name that sector, and pass the CRC.
pub fn parse_label(first_4_sectors: &[u8]) -> Option<LvmLabel> {
    let (_, kb) = MAGICS
        .iter()
        .copied()
        .find(|&(off, _)| slice(first_4_sectors, off, 8) == Some(LVM2_TYPE))?;
    let base = kb * 1024;
    // blkid reads 512 + sizeof(label header) = 544 bytes from the block start.
    slice(first_4_sectors, base, LABEL_SIZE + 64)?;
    let mut sector = (kb * 2) as u64;
    let start = if slice(first_4_sectors, base, 8) == Some(b"LABELONE") {
        base
    } else if slice(first_4_sectors, base + 512, 8) == Some(b"LABELONE") {
        sector += 1;
        base + 512
    } else {
        return None;
    };
    let label = slice(first_4_sectors, start, LABEL_SIZE)?;
    if le64(label, 8)? != sector {
        return None;
    }
    if lvm_crc(&label[CRC_START..]) != le32(label, 16)? {
        return None;
    }
    let pv_uuid = format_lvm_uuid(slice(label, 32, 32)?);
    let device_size = le64(label, 64).unwrap_or(0);
    Some(LvmLabel {
        sector,
        pv_uuid,
        label_type: String::from_utf8_lossy(LVM2_TYPE).into_owned(),
        device_size,
    })
}

/// Probes a region for an LVM2 PV label (TYPE `LVM2_member`, USAGE raid).
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid only needs 1 KiB + 544 bytes when the label is in sector 2/3.
    let len = (w.len().min(2048)) as usize;
    let Some(head) = w.read_if_present(0, len)? else {
        return Ok(None);
    };
    let Some(label) = parse_label(&head) else {
        return Ok(None);
    };
    let mut sig = Signature::new("LVM2_member", Usage::Raid, label.sector * 512);
    sig.set("UUID", label.pv_uuid.clone());
    sig.set("VERSION", label.label_type.clone());
    sig.set_detail("LVM_LABEL_SECTOR", label.sector.to_string());
    sig.set_detail("LVM_PV_DEVICE_SIZE", label.device_size.to_string());
    Ok(Some(sig))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn label_at(sector: usize) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        let s = sector * 512;
        d[s..s + 8].copy_from_slice(b"LABELONE");
        d[s + 8..s + 16].copy_from_slice(&(sector as u64).to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&32u32.to_le_bytes());
        d[s + 24..s + 32].copy_from_slice(LVM2_TYPE);
        d[s + 32..s + 64].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz012345");
        let crc = lvm_crc(&d[s + 20..s + 512]);
        d[s + 16..s + 20].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn every_label_sector_is_found() {
        for sector in 0..4 {
            let l = parse_label(&label_at(sector)).unwrap();
            assert_eq!(l.sector, sector as u64);
            assert_eq!(l.pv_uuid, "abcdef-ghij-klmn-opqr-stuv-wxyz-012345");
        }
    }

    #[test]
    fn bad_crc_or_sector_is_rejected() {
        let mut d = label_at(1);
        d[512 + 100] ^= 1;
        assert!(parse_label(&d).is_none());
        let mut d = label_at(1);
        d[512 + 8] = 0;
        assert!(parse_label(&d).is_none());
        assert!(parse_label(&[]).is_none());
        assert!(parse_label(&label_at(1)[..700]).is_none());
    }
}
