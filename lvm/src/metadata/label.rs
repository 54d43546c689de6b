//! The LVM2 label (`LABELONE`, in one of the first four 512-byte sectors) and
//! the PV header that follows it: PV UUID, device size, data areas and
//! metadata areas (lvm2 lib/label/label.h and lib/format_text/layout.h).
//!
//! Layout (little endian): label header = id[8] "LABELONE", sector_xl u64,
//! crc_xl u32 (over bytes 20..512 of the sector), offset_xl u32 (PV header
//! offset within the sector), type[8] "LVM2 001". PV header = uuid[32],
//! device_size u64, then two lists of `{offset u64, size u64}` (data areas,
//! then metadata areas), each ended by an all-zero entry, then an optional
//! extension (version u32, flags u32, bootloader-area list).

use serde::Serialize;

use super::crc::lvm_crc;
use crate::error::{LvmError, Result};

/// Bytes of the label area lvm2 scans (four sectors).
pub const LABEL_SCAN_SIZE: usize = 2048;
/// Size of the label sector.
const SECTOR: usize = 512;
const LABEL_ID: &[u8; 8] = b"LABELONE";
const LVM2_TYPE: &[u8; 8] = b"LVM2 001";
/// The CRC covers the label sector from `offset_xl` on.
const CRC_START: usize = 20;

/// One `{offset, size}` area of a PV (bytes from the start of the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskArea {
    /// Byte offset on the device.
    pub offset: u64,
    /// Size in bytes (0 for a data area means "to the end of the device").
    pub size: u64,
}

/// The label and PV header of one physical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PvLabel {
    /// Sector (0–3) that holds the label.
    pub sector: u64,
    /// PV UUID, dashed the way LVM prints it.
    pub pv_uuid: String,
    /// Device size recorded by pvcreate, in bytes.
    pub device_size: u64,
    /// Data areas (normally one: the extents).
    pub data_areas: Vec<DiskArea>,
    /// Metadata areas (0, 1 or 2; the first usually at 4096).
    pub metadata_areas: Vec<DiskArea>,
    /// PV header extension version (0 when absent, 2 on current lvm2).
    pub ext_version: u32,
    /// PV header extension flags (bit 0: PV is used by a VG).
    pub ext_flags: u32,
}

/// Dashes a 32-character LVM id 6-4-4-4-4-4-6, the way lvm2 prints it.
/// Bytes that are not printable ASCII are shown as `?` so a corrupt id can
/// never produce a misleading but valid-looking UUID.
pub fn format_lvm_id(id: &[u8]) -> String {
    let mut s = String::with_capacity(38);
    for (i, &c) in id.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            s.push('-');
        }
        s.push(if c.is_ascii_graphic() {
            char::from(c)
        } else {
            '?'
        });
    }
    s
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Reads a zero-terminated `{offset, size}` list starting at `pos` inside the
/// label sector; returns the list and the position after its terminator.
fn area_list(sector: &[u8], mut pos: usize, label_sector: u64) -> Result<(Vec<DiskArea>, usize)> {
    let mut out = Vec::new();
    loop {
        let (Some(offset), Some(size)) = (le64(sector, pos), le64(sector, pos + 8)) else {
            return Err(LvmError::BadLabel {
                sector: label_sector,
                reason: "PV header area list runs past the label sector (no terminating entry)"
                    .into(),
            });
        };
        pos += 16;
        if offset == 0 {
            return Ok((out, pos));
        }
        out.push(DiskArea { offset, size });
    }
}

/// Parses the label and PV header from the first sectors of a device.
///
/// Returns [`LvmError::NoLabel`] when no sector starts with `LABELONE`,
/// [`LvmError::Truncated`] when fewer than 512 bytes follow a candidate, and a
/// CRC / format error for a label that is present but damaged (a damaged label
/// is only reported when no other sector holds a good one). Never panics.
pub fn parse_label(head: &[u8]) -> Result<PvLabel> {
    let mut first_err = None;
    for n in 0..4u64 {
        let start = n as usize * SECTOR;
        if head.get(start..start + 8) != Some(LABEL_ID.as_slice()) {
            continue;
        }
        match parse_at(head, n) {
            Ok(l) => return Ok(l),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(LvmError::NoLabel))
}

fn parse_at(head: &[u8], n: u64) -> Result<PvLabel> {
    let start = n as usize * SECTOR;
    let Some(sector) = head.get(start..start + SECTOR) else {
        return Err(LvmError::Truncated {
            what: "LVM label sector",
            offset: start as u64,
            need: SECTOR as u64,
            size: head.len() as u64,
        });
    };
    let bad = |reason: String| LvmError::BadLabel { sector: n, reason };
    let sector_xl = le64(sector, 8).unwrap_or(u64::MAX);
    if sector_xl != n {
        return Err(bad(format!("label names sector {sector_xl}")));
    }
    let stored = le32(sector, 16).unwrap_or(0);
    let computed = lvm_crc(&sector[CRC_START..]);
    if stored != computed {
        return Err(LvmError::BadCrc {
            what: "LVM label",
            offset: start as u64,
            stored,
            computed,
        });
    }
    if sector.get(24..32) != Some(LVM2_TYPE.as_slice()) {
        return Err(bad(format!(
            "label type {:?}, expected \"LVM2 001\"",
            String::from_utf8_lossy(&sector[24..32])
        )));
    }
    let off = le32(sector, 20).unwrap_or(0) as usize;
    // uuid + device size + at least the two list terminators.
    if !(32..=SECTOR - 72).contains(&off) {
        return Err(bad(format!(
            "PV header offset {off} outside the label sector"
        )));
    }
    let pv_uuid = format_lvm_id(&sector[off..off + 32]);
    let device_size = le64(sector, off + 32).unwrap_or(0);
    let (data_areas, pos) = area_list(sector, off + 40, n)?;
    let (metadata_areas, pos) = area_list(sector, pos, n)?;
    let (ext_version, ext_flags) = match (le32(sector, pos), le32(sector, pos + 4)) {
        (Some(v), Some(f)) => (v, f),
        _ => (0, 0),
    };
    Ok(PvLabel {
        sector: n,
        pv_uuid,
        device_size,
        data_areas,
        metadata_areas,
        ext_version,
        ext_flags,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A label in `sector` with one data area and the given metadata areas.
    pub(crate) fn make_label(sector: usize, mdas: &[(u64, u64)]) -> Vec<u8> {
        let mut d = vec![0u8; LABEL_SCAN_SIZE];
        let s = sector * SECTOR;
        d[s..s + 8].copy_from_slice(LABEL_ID);
        d[s + 8..s + 16].copy_from_slice(&(sector as u64).to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&32u32.to_le_bytes());
        d[s + 24..s + 32].copy_from_slice(LVM2_TYPE);
        d[s + 32..s + 64].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz012345");
        d[s + 64..s + 72].copy_from_slice(&(64u64 << 20).to_le_bytes());
        let mut p = s + 72;
        let mut put = |d: &mut Vec<u8>, a: u64, b: u64| {
            d[p..p + 8].copy_from_slice(&a.to_le_bytes());
            d[p + 8..p + 16].copy_from_slice(&b.to_le_bytes());
            p += 16;
        };
        put(&mut d, 1 << 20, 0);
        put(&mut d, 0, 0);
        for &(o, z) in mdas {
            put(&mut d, o, z);
        }
        put(&mut d, 0, 0);
        d[p..p + 4].copy_from_slice(&2u32.to_le_bytes());
        d[p + 4..p + 8].copy_from_slice(&1u32.to_le_bytes());
        let crc = lvm_crc(&d[s + 20..s + 512]);
        d[s + 16..s + 20].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn label_in_any_sector_with_areas() {
        for n in 0..4 {
            let l = parse_label(&make_label(n, &[(4096, 1 << 20)])).unwrap();
            assert_eq!(l.sector, n as u64);
            assert_eq!(l.pv_uuid, "abcdef-ghij-klmn-opqr-stuv-wxyz-012345");
            assert_eq!(l.device_size, 64 << 20);
            assert_eq!(
                l.data_areas,
                vec![DiskArea {
                    offset: 1 << 20,
                    size: 0
                }]
            );
            assert_eq!(
                l.metadata_areas,
                vec![DiskArea {
                    offset: 4096,
                    size: 1 << 20
                }]
            );
            assert_eq!((l.ext_version, l.ext_flags), (2, 1));
        }
    }

    #[test]
    fn damaged_labels_are_typed_errors() {
        assert!(matches!(parse_label(&[0u8; 2048]), Err(LvmError::NoLabel)));
        assert!(matches!(parse_label(&[]), Err(LvmError::NoLabel)));
        let mut d = make_label(1, &[]);
        d[512 + 100] ^= 1;
        assert!(matches!(
            parse_label(&d),
            Err(LvmError::BadCrc {
                what: "LVM label",
                ..
            })
        ));
        let d = make_label(1, &[]);
        assert!(matches!(
            parse_label(&d[..700]),
            Err(LvmError::Truncated { .. })
        ));
        let mut d = make_label(0, &[]);
        d[8] = 3;
        assert!(matches!(
            parse_label(&d),
            Err(LvmError::BadLabel { sector: 0, .. })
        ));
    }

    #[test]
    fn unterminated_area_list_is_rejected() {
        let mut d = make_label(0, &[]);
        for b in d[72..512].iter_mut() {
            *b = 0xff;
        }
        let crc = lvm_crc(&d[20..512]);
        d[16..20].copy_from_slice(&crc.to_le_bytes());
        let e = parse_label(&d).unwrap_err();
        assert!(e.to_string().contains("no terminating entry"), "{e}");
    }
}
