//! Metadata areas: the 512-byte `mda_header` at the start of each area and the
//! text it points at (lvm2 lib/format_text/layout.h, format-text.c).
//!
//! Header (little endian): checksum_xl u32 (over bytes 4..512), magic[16]
//! `" LVM2 x[5A%r0N*>"`, version u32 (1), start u64 (the area's own byte
//! offset on the device), size u64 (the area size, header included), then
//! `raw_locn {offset u64, size u64, checksum u32, flags u32}` entries ended by
//! a zero offset. The first raw_locn locates the committed metadata text,
//! relative to the area start, inside a circular buffer that begins right
//! after the header: text that runs past the end of the area continues at
//! area start + 512. Its checksum covers both pieces in order.

use serde::Serialize;

use super::crc::{crc_update, lvm_crc, INITIAL_CRC};
use super::label::DiskArea;
use crate::error::{LvmError, Result};

/// Size of the metadata-area header.
pub const MDA_HEADER_SIZE: u64 = 512;
/// The header magic.
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// `raw_locn.flags` bit: this copy is ignored (vgchange --metadatacopies).
pub const RAW_LOCN_IGNORED: u32 = 1;
/// Refuse metadata texts larger than this (lvm2's own limit is far lower in
/// practice; this only bounds memory for a corrupt header).
pub const MAX_TEXT: u64 = 128 << 20;

/// Where the committed metadata text of an area lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RawLocn {
    /// Offset relative to the area start.
    pub offset: u64,
    /// Text size in bytes.
    pub size: u64,
    /// LVM CRC of the text.
    pub checksum: u32,
    /// Flags ([`RAW_LOCN_IGNORED`]).
    pub flags: u32,
}

/// A parsed metadata-area header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdaHeader {
    /// Format version (1).
    pub version: u32,
    /// Area start on the device, in bytes.
    pub start: u64,
    /// Area size in bytes, header included.
    pub size: u64,
    /// The committed text's location; `None` for an empty area (orphan PV).
    pub text: Option<RawLocn>,
}

fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Parses and checks a metadata-area header read from `area` (the area as
/// listed in the PV header). Never panics.
pub fn parse_mda_header(buf: &[u8], area: DiskArea) -> Result<MdaHeader> {
    let corrupt = |reason: String| LvmError::Corrupt {
        what: "metadata area header",
        offset: area.offset,
        reason,
    };
    if buf.len() < MDA_HEADER_SIZE as usize {
        return Err(LvmError::Truncated {
            what: "metadata area header",
            offset: area.offset,
            need: MDA_HEADER_SIZE,
            size: buf.len() as u64,
        });
    }
    let buf = &buf[..MDA_HEADER_SIZE as usize];
    let stored = le32(buf, 0);
    let computed = lvm_crc(&buf[4..]);
    if &buf[4..20] != MDA_MAGIC {
        return Err(corrupt(format!(
            "magic {:?}, expected {:?}",
            String::from_utf8_lossy(&buf[4..20]),
            String::from_utf8_lossy(MDA_MAGIC)
        )));
    }
    if stored != computed {
        return Err(LvmError::BadCrc {
            what: "metadata area header",
            offset: area.offset,
            stored,
            computed,
        });
    }
    let version = le32(buf, 20);
    if version != 1 {
        return Err(corrupt(format!("version {version}, expected 1")));
    }
    let start = le64(buf, 24);
    if start != area.offset {
        return Err(corrupt(format!(
            "header says the area starts at {start}, the PV header says {}",
            area.offset
        )));
    }
    let size = le64(buf, 32);
    if size <= MDA_HEADER_SIZE {
        return Err(corrupt(format!("area size {size} leaves no room for text")));
    }
    let offset = le64(buf, 40);
    let text = if offset == 0 {
        None
    } else {
        let locn = RawLocn {
            offset,
            size: le64(buf, 48),
            checksum: le32(buf, 56),
            flags: le32(buf, 60),
        };
        if locn.offset < MDA_HEADER_SIZE || locn.offset >= size {
            return Err(corrupt(format!(
                "text offset {} outside the circular buffer {}..{size}",
                locn.offset, MDA_HEADER_SIZE
            )));
        }
        if locn.size > size - MDA_HEADER_SIZE || locn.size > MAX_TEXT {
            return Err(corrupt(format!(
                "text size {} larger than the circular buffer ({})",
                locn.size,
                size - MDA_HEADER_SIZE
            )));
        }
        Some(locn)
    };
    Ok(MdaHeader {
        version,
        start,
        size,
        text,
    })
}

/// The (up to two) byte ranges of the device that hold the text, in order.
pub fn text_pieces(h: &MdaHeader, locn: RawLocn) -> [(u64, u64); 2] {
    let first_len = locn.size.min(h.size - locn.offset);
    let rest = locn.size - first_len;
    [
        (h.start + locn.offset, first_len),
        (h.start + MDA_HEADER_SIZE, rest),
    ]
}

/// Reads a header's metadata text from `src` and verifies its checksum.
/// Returns the raw bytes (trailing NULs included, as written).
pub fn read_text(src: &dyn fsdetect::BlockSource, h: &MdaHeader, locn: RawLocn) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    let mut crc = INITIAL_CRC;
    for (off, len) in text_pieces(h, locn) {
        if len == 0 {
            continue;
        }
        let buf = super::read_at(src, "metadata text", off, len)?;
        crc = crc_update(crc, &buf);
        text.extend_from_slice(&buf);
    }
    if crc != locn.checksum {
        return Err(LvmError::BadCrc {
            what: "metadata text",
            offset: h.start + locn.offset,
            stored: locn.checksum,
            computed: crc,
        });
    }
    Ok(text)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A header for an area at `start` of `size` with text at `off`.
    pub(crate) fn make_header(start: u64, size: u64, text: Option<(u64, &[u8])>) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[4..20].copy_from_slice(MDA_MAGIC);
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&start.to_le_bytes());
        b[32..40].copy_from_slice(&size.to_le_bytes());
        if let Some((off, t)) = text {
            b[40..48].copy_from_slice(&off.to_le_bytes());
            b[48..56].copy_from_slice(&(t.len() as u64).to_le_bytes());
            b[56..60].copy_from_slice(&lvm_crc(t).to_le_bytes());
        }
        let crc = lvm_crc(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    const AREA: DiskArea = DiskArea {
        offset: 4096,
        size: 8192,
    };

    #[test]
    fn header_round_trip_and_wrapped_text() {
        let text = b"abcdefghij";
        let h = parse_mda_header(&make_header(4096, 8192, Some((8188, text))), AREA).unwrap();
        let locn = h.text.unwrap();
        // 4 bytes at the end of the area, 6 after the header.
        assert_eq!(text_pieces(&h, locn), [(4096 + 8188, 4), (4096 + 512, 6)]);
        let mut dev = vec![0u8; 16384];
        dev[4096 + 8188..4096 + 8192].copy_from_slice(&text[..4]);
        dev[4096 + 512..4096 + 518].copy_from_slice(&text[4..]);
        let src = fsdetect::MemSource::new(dev);
        assert_eq!(read_text(&src, &h, locn).unwrap(), text);
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        let mut b = make_header(4096, 8192, None);
        b[100] ^= 1;
        assert!(matches!(
            parse_mda_header(&b, AREA),
            Err(LvmError::BadCrc { .. })
        ));
        let b = make_header(8192, 8192, None);
        assert!(matches!(
            parse_mda_header(&b, AREA),
            Err(LvmError::Corrupt { .. })
        ));
        let b = make_header(4096, 8192, Some((100, b"x")));
        assert!(matches!(
            parse_mda_header(&b, AREA),
            Err(LvmError::Corrupt { .. })
        ));
        assert!(matches!(
            parse_mda_header(&b[..10], AREA),
            Err(LvmError::Truncated { .. })
        ));
        let h = parse_mda_header(&make_header(4096, 8192, None), AREA).unwrap();
        assert_eq!(h.text, None);
    }

    #[test]
    fn zeroed_text_fails_its_checksum() {
        let h = parse_mda_header(&make_header(4096, 8192, Some((512, b"vg { }"))), AREA).unwrap();
        let src = fsdetect::MemSource::new(vec![0u8; 16384]);
        let e = read_text(&src, &h, h.text.unwrap()).unwrap_err();
        assert!(
            matches!(
                e,
                LvmError::BadCrc {
                    what: "metadata text",
                    ..
                }
            ),
            "{e}"
        );
    }
}
