//! ISO 9660 (+ Joliet) and High Sierra CD filesystems (TYPE `iso9660`), as
//! libblkid 2.38 reads them.
//!
//! The volume descriptors start at 32 KiB, one per 2 KiB sector. blkid takes
//! the first boot record, primary (PVD) and Joliet supplementary descriptor
//! among the first 16, prints the PVD's identifiers (rebuilt from Joliet's
//! UTF-16 copy when that one is a truer spelling of the same text), a UUID
//! made of the modification (or creation) date, and marks the signature
//! tolerant: a hybrid ISO also has a partition table and that is fine.

use crate::bytes::slice;
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

const ISO_SUPERBLOCK_OFFSET: u64 = 0x8000;
const ISO_SECTOR_SIZE: u64 = 0x800;
const ISO_VD_MAX: u64 = 16;
const VD_BOOT: u8 = 0;
const VD_PRIMARY: u8 = 1;
const VD_SUPPLEMENTARY: u8 = 2;
const VD_END: u8 = 0xff;
/// Bytes of a descriptor blkid reads (up to the modification date).
const VD_LEN: usize = 847;

// Field offsets in a primary/supplementary volume descriptor.
const SYSTEM_ID: (usize, usize) = (8, 32);
const VOLUME_ID: (usize, usize) = (40, 32);
const ESCAPES: usize = 88;
const VOLUME_SET_ID: (usize, usize) = (190, 128);
const PUBLISHER_ID: (usize, usize) = (318, 128);
const DATA_PREPARER_ID: (usize, usize) = (446, 128);
const APPLICATION_ID: (usize, usize) = (574, 128);
const CREATED: usize = 813;
const MODIFIED: usize = 830;
/// Boot record: boot system id.
const BOOT_SYSTEM_ID: (usize, usize) = (7, 32);

/// Probes a region for an ISO 9660 / High Sierra filesystem.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(first) = w.read_if_present(ISO_SUPERBLOCK_OFFSET, 16)? else {
        return Ok(None);
    };
    if slice(&first, 1, 5) == Some(b"CD001") {
        probe_iso(w)
    } else if slice(&first, 9, 5) == Some(b"CDROM") {
        probe_high_sierra(w)
    } else {
        Ok(None)
    }
}

/// Old High Sierra format: VERSION and LABEL only.
fn probe_high_sierra(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(vd) = w.read_if_present(ISO_SUPERBLOCK_OFFSET, 80)? else {
        return Ok(None);
    };
    let mut sig = Signature::new("iso9660", Usage::Filesystem, ISO_SUPERBLOCK_OFFSET + 9);
    sig.set("BLOCK_SIZE", ISO_SECTOR_SIZE.to_string());
    sig.set("VERSION", "High Sierra");
    if let Some(l) = slice(&vd, 48, 32).and_then(rtrim_label) {
        sig.set("LABEL", l);
    }
    Ok(Some(sig))
}

fn probe_iso(w: &Window<'_>) -> Result<Option<Signature>> {
    let (mut boot, mut pvd, mut joliet) = (None, None, None);
    for i in 0..ISO_VD_MAX {
        if boot.is_some() && pvd.is_some() && joliet.is_some() {
            break;
        }
        let off = ISO_SUPERBLOCK_OFFSET + i * ISO_SECTOR_SIZE;
        let Some(d) = w.read_if_present(off, VD_LEN)? else {
            break;
        };
        match d[0] {
            VD_END => break,
            VD_BOOT if boot.is_none() => boot = Some(d),
            VD_PRIMARY if pvd.is_none() => pvd = Some(d),
            VD_SUPPLEMENTARY if joliet.is_none() => {
                let esc = &d[ESCAPES..ESCAPES + 3];
                if esc == b"%/@" || esc == b"%/C" || esc == b"%/E" {
                    joliet = Some(d);
                }
            }
            _ => {}
        }
    }
    let Some(pvd) = pvd else {
        return Ok(None);
    };
    let j = joliet.as_deref();
    let mut sig = Signature::new("iso9660", Usage::Filesystem, ISO_SUPERBLOCK_OFFSET + 1);
    sig.set("BLOCK_SIZE", ISO_SECTOR_SIZE.to_string());

    for (name, f) in [("SYSTEM_ID", SYSTEM_ID), ("VOLUME_SET_ID", VOLUME_SET_ID)] {
        let a = field(&pvd, f);
        let v = match j {
            Some(j) => utf16_id(&merge_or_joliet(field(j, f), a)),
            None => trim_both(a),
        };
        set_opt(&mut sig, name, v);
    }
    for (name, f) in [
        ("PUBLISHER_ID", PUBLISHER_ID),
        ("DATA_PREPARER_ID", DATA_PREPARER_ID),
        ("APPLICATION_ID", APPLICATION_ID),
    ] {
        let a = field(&pvd, f);
        let ascii_empty = is_str_empty(a) || a[0] == b'_';
        let u = j.map(|j| field(j, f));
        let unicode_empty = match u {
            None => true,
            Some(u) => is_utf16be_str_empty(u) || (u[0] == 0 && u[1] == b'_'),
        };
        let v = match u {
            Some(u) if !unicode_empty && !ascii_empty => utf16_id(&merge_or_joliet(u, a)),
            Some(u) if !unicode_empty => utf16_id(u),
            _ if !ascii_empty => trim_both(a),
            _ => None,
        };
        set_opt(&mut sig, name, v);
    }
    if let Some(Some(u)) =
        date_uuid(&pvd[MODIFIED..MODIFIED + 17]).or_else(|| date_uuid(&pvd[CREATED..CREATED + 17]))
    {
        sig.set("UUID", u);
    }
    if let Some(b) = &boot {
        set_opt(
            &mut sig,
            "BOOT_SYSTEM_ID",
            trim_both(field(b, BOOT_SYSTEM_ID)),
        );
    }
    if j.is_some() {
        sig.set("VERSION", "Joliet Extension");
    }
    let label = match j {
        Some(j) => rtrim(utf16be_to_utf8(&merge_or_joliet(
            field(j, VOLUME_ID),
            field(&pvd, VOLUME_ID),
        ))),
        None => rtrim_label(field(&pvd, VOLUME_ID)),
    };
    set_opt(&mut sig, "LABEL", label);
    Ok(Some(sig))
}

fn field(d: &[u8], (off, len): (usize, usize)) -> &[u8] {
    slice(d, off, len).unwrap_or(&[])
}

fn set_opt(sig: &mut Signature, name: &str, v: Option<Vec<u8>>) {
    if let Some(v) = v {
        sig.set(name, v);
    }
}

/// C isspace() in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Up to the first NUL.
fn c_str(v: &[u8]) -> &[u8] {
    &v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())]
}

/// blkid_probe_set_label: cut at NUL, right-trim; empty is unset.
fn rtrim_label(v: &[u8]) -> Option<Vec<u8>> {
    rtrim(v.to_vec())
}

fn rtrim(v: Vec<u8>) -> Option<Vec<u8>> {
    let s = c_str(&v);
    let end = s.iter().rposition(|&c| !is_space(c)).map_or(0, |p| p + 1);
    (end > 0).then(|| s[..end].to_vec())
}

/// blkid_probe_set_id_label: cut at NUL, trim both ends; empty is unset.
fn trim_both(v: &[u8]) -> Option<Vec<u8>> {
    let r = rtrim(v.to_vec())?;
    let start = r.iter().position(|&c| !is_space(c))?;
    Some(r[start..].to_vec())
}

/// blkid_probe_set_utf8_id_label with UTF-16BE input.
fn utf16_id(v: &[u8]) -> Option<Vec<u8>> {
    trim_both(&utf16be_to_utf8(v))
}

fn is_str_empty(s: &[u8]) -> bool {
    s.first().is_none_or(|&c| c == 0) || s.iter().all(|&c| is_space(c))
}

fn is_utf16be_str_empty(s: &[u8]) -> bool {
    s.chunks(2)
        .all(|c| c[0] == 0 && c.get(1).is_some_and(|&b| is_space(b)))
}

/// libblkid's merge_utf16be_ascii: when Joliet's UTF-16 text is the PVD's
/// ASCII text spelled better (same letters up to case, `_` standing for what
/// ASCII cannot hold), rebuild the full text from both; else Joliet's own.
fn merge_or_joliet(utf16: &[u8], ascii: &[u8]) -> Vec<u8> {
    merge_utf16be_ascii(utf16, ascii).unwrap_or_else(|| utf16.to_vec())
}

fn merge_utf16be_ascii(utf16: &[u8], ascii: &[u8]) -> Option<Vec<u8>> {
    let len = ascii.len().min(utf16.len());
    let mut out = Vec::with_capacity(2 * len + 4);
    let (mut a, mut u) = (0usize, 0usize);
    while u + 1 < len && a < len {
        if (0xD8..=0xDB).contains(&utf16[u]) && u + 3 < len && (0xDC..=0xDF).contains(&utf16[u + 2])
        {
            out.push(utf16[u]);
            out.push(utf16[u + 1]);
            u += 2;
        }
        // u + 1 < len may no longer hold after a surrogate pair: C reads on.
        let (hi, lo) = (utf16.get(u).copied()?, utf16.get(u + 1).copied()?);
        let c = ascii[a];
        if c == b'_' {
            out.extend([hi, lo]);
        } else if hi == 0 && lo == b'_' {
            out.extend([0, c]);
        } else if hi == 0 && c.eq_ignore_ascii_case(&lo) {
            out.extend([0, if c.is_ascii_uppercase() { lo } else { c }]);
        } else {
            return None;
        }
        a += 1;
        u += 2;
    }
    while a < len {
        out.extend([0, ascii[a]]);
        a += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// libblkid's UTF-16BE → UTF-8 conversion: stops at U+0000, joins a high
/// surrogate with the next unit, encodes lone surrogates as 3 bytes.
fn utf16be_to_utf8(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() * 3 / 2);
    let mut i = 0;
    while i + 1 < src.len() {
        let mut c = u32::from(u16::from_be_bytes([src[i], src[i + 1]]));
        if c == 0 {
            break;
        }
        if (0xD800..=0xDBFF).contains(&c) && i + 3 < src.len() {
            let c2 = u32::from(u16::from_be_bytes([src[i + 2], src[i + 3]]));
            c = (((c & 0x3ff) << 10) | (c2 & 0x3ff)) + 0x10000;
            i += 2;
        }
        match c {
            0..=0x7f => out.push(c as u8),
            0x80..=0x7ff => out.extend([0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]),
            0x800..=0xffff => out.extend([
                0xe0 | (c >> 12) as u8,
                0x80 | ((c >> 6) & 0x3f) as u8,
                0x80 | (c & 0x3f) as u8,
            ]),
            _ => out.extend([
                0xf0 | (c >> 18) as u8,
                0x80 | ((c >> 12) & 0x3f) as u8,
                0x80 | ((c >> 6) & 0x3f) as u8,
                0x80 | (c & 0x3f) as u8,
            ]),
        }
        i += 2;
    }
    out
}

/// The date fields as `YYYY-MM-DD-hh-mm-ss-cc`. `None` when the date is
/// unset (all '0' with a zero zone offset) and the next date should be
/// tried; `Some(None)` when blkid takes the date but sets nothing (raw
/// bytes all zero, which blkid_probe_sprintf_uuid ignores).
fn date_uuid(date: &[u8]) -> Option<Option<String>> {
    let d = slice(date, 0, 16)?;
    if d.iter().all(|&c| c == b'0') && date.get(16) == Some(&0) {
        return None;
    }
    if d.iter().all(|&c| c == 0) {
        return Some(None);
    }
    let parts = [
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14],
        &d[14..16],
    ];
    let s = parts.join(&b'-');
    // The value is a C string: a NUL inside the date ends it.
    Some(Some(String::from_utf8_lossy(c_str(&s)).into_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn merge_rebuilds_case_and_length() {
        let u: Vec<u8> = "Gold Disk"
            .encode_utf16()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        let mut a = b"GOLD_DISK_LONGER_NAME".to_vec();
        a.resize(32, b' ');
        let mut uu = u.clone();
        uu.resize(32, 0);
        let m = merge_utf16be_ascii(&uu, &a);
        // "Gold Disk" then NUL units do not match the ASCII tail: no merge.
        assert!(m.is_none());
        assert_eq!(utf16be_to_utf8(&u), b"Gold Disk");
        assert_eq!(utf16be_to_utf8(&[0xd8, 0x3d, 0xde, 0x00]), "😀".as_bytes());
    }

    #[test]
    fn dates() {
        assert_eq!(
            date_uuid(b"2026112205301700\x00").unwrap().unwrap(),
            "2026-11-22-05-30-17-00"
        );
        assert_eq!(date_uuid(b"0000000000000000\x00"), None);
        assert!(date_uuid(b"0000000000000000\x04").is_some());
        assert_eq!(date_uuid(&[0u8; 17]), Some(None));
    }
}
