//! LUKS1/LUKS2 encrypted containers (TYPE `crypto_LUKS`), as libblkid 2.38
//! finds them.
//!
//! Both versions start with `LUKS\xba\xbe` and a big-endian version. LUKS2
//! keeps a second binary header at one of a few fixed offsets (`SKUL\xba\xbe`)
//! that blkid uses when the first one is gone. blkid does not verify the
//! LUKS2 header checksum, so a header with a damaged checksum is still
//! reported (cryptsetup would refuse it); we report it the same way.

use crate::bytes::{be16, be64, label_bytes, slice};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
const LUKS_MAGIC_2: &[u8; 6] = b"SKUL\xba\xbe";
/// Where a LUKS2 secondary header may be, by the size of the JSON area.
pub(crate) const SECONDARY_OFFSETS: [u64; 9] = [
    0x04000, 0x008000, 0x010000, 0x020000, 0x40000, 0x080000, 0x100000, 0x200000, 0x400000,
];
/// sizeof(struct luks2_phdr) up to and including the checksum.
const HDR_LEN: usize = 512;

/// Probes a region for a LUKS header.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(hdr) = w.read_if_present(0, HDR_LEN)? else {
        return Ok(None);
    };
    if hdr.starts_with(LUKS_MAGIC) {
        return Ok(Some(attributes(&hdr, 0)));
    }
    for off in SECONDARY_OFFSETS {
        let Some(hdr) = w.read_if_present(off, HDR_LEN)? else {
            return Ok(None);
        };
        if hdr.starts_with(LUKS_MAGIC_2)
            && be16(&hdr, 6) == Some(2)
            && be64(&hdr, 0x100) == Some(off)
        {
            let mut sig = attributes(&hdr, off);
            sig.set_detail("LUKS_HEADER", "secondary");
            return Ok(Some(sig));
        }
    }
    Ok(None)
}

/// blkid_probe_strncpy_uuid: the text up to the first NUL, whitespace-trimmed.
fn text_field(hdr: &[u8], off: usize, len: usize) -> Option<Vec<u8>> {
    slice(hdr, off, len).and_then(label_bytes)
}

/// The values blkid sets for a header found at `off`.
fn attributes(hdr: &[u8], off: u64) -> Signature {
    let mut sig = Signature::new("crypto_LUKS", Usage::Crypto, off);
    let version = be16(hdr, 6).unwrap_or(0);
    sig.set("VERSION", version.to_string());
    match version {
        1 => {
            // struct luks_phdr: uuid[40] at 168.
            if let Some(u) = text_field(hdr, 168, 40) {
                sig.set("UUID", u);
            }
        }
        2 => {
            if let Some(u) = text_field(hdr, 0xa8, 40) {
                sig.set("UUID", u);
            }
            if let Some(l) = text_field(hdr, 0x18, 48) {
                sig.set("LABEL", l);
            }
            if let Some(s) = text_field(hdr, 0xd0, 48) {
                sig.set("SUBSYSTEM", s);
            }
            if let Some(seq) = be64(hdr, 16) {
                sig.set_detail("LUKS2_SEQID", seq.to_string());
            }
        }
        _ => {}
    }
    sig
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::reader::Reader;
    use crate::source::MemSource;

    #[test]
    fn secondary_header_needs_its_own_offset() {
        let mut d = vec![0u8; 1 << 20];
        let o = 0x8000;
        d[o..o + 6].copy_from_slice(LUKS_MAGIC_2);
        d[o + 6..o + 8].copy_from_slice(&2u16.to_be_bytes());
        d[o + 0xa8..o + 0xa8 + 4].copy_from_slice(b"abcd");
        d[o + 0x100..o + 0x108].copy_from_slice(&(o as u64).to_be_bytes());
        let src = MemSource::new(d.clone());
        let r = Reader::new(&src);
        let s = probe(&r.whole()).unwrap().unwrap();
        assert_eq!(s.uuid().unwrap(), "abcd");
        assert_eq!(s.offset, 0x8000);
        d[o + 0x106] = 0x90;
        let src = MemSource::new(d);
        let r = Reader::new(&src);
        assert!(probe(&r.whole()).unwrap().is_none());
    }
}
