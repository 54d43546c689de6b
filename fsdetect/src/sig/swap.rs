//! Linux swap areas as libblkid 2.38's `swap.c` sees them: the signature
//! `SWAP-SPACE` (v0) or `SWAPSPACE2` (v1) in the last 10 bytes of the first
//! page, tried for page sizes 4, 8, 16, 32 and 64 KiB in that order. v1
//! headers (at byte 1024) give VERSION, LABEL and UUID; v0 only VERSION.
//!
//! Not handled: blkid's separate `swsuspend` prober (hibernation images:
//! `S1SUSPEND`, `ULSUSPEND`…), which is not in our prober table. A TuxOnIce
//! image is recognised only to be ignored, as blkid does.

use crate::bytes::{le32, slice, uuid_string};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// End of the first page for each page size blkid tries; the magic sits in
/// the 10 bytes before it.
const PAGE_SIZES: [u64; 5] = [0x1000, 0x2000, 0x4000, 0x8000, 0x10000];
const MAGIC_LEN: u64 = 10;
/// Smallest region blkid probes for swap.
const MIN_SIZE: u64 = 10 * 4096;
/// TuxOnIce keeps a valid swap signature but marks its first bytes.
const TOI_MAGIC: &[u8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";
/// The v1 header: version, last_page, nr_badpages, uuid[16], volume[16],
/// padding[117] (u32), badpages[1] — 516 bytes at byte 1024.
const HDR_OFF: u64 = 1024;
const HDR_LEN: usize = 516;
/// `padding[32]` and `padding[33]`: blkid trusts LABEL/UUID only when both
/// are zero ("is there any garbage down there?").
const PAD32_OFF: usize = 44 + 32 * 4;
const PAD33_OFF: usize = 44 + 33 * 4;

/// Which magic a page ends with (libblkid tries "SWAP-SPACE" before
/// "SWAPSPACE2" at each offset; both cannot match at once).
fn find_magic(w: &Window<'_>) -> Result<Option<(u64, &'static [u8])>> {
    for page in PAGE_SIZES {
        // libblkid compares the magic inside the 1 KiB block that holds it.
        let Some(block) = w.read_if_present(page - 1024, 1024)? else {
            continue;
        };
        let at = (1024 - MAGIC_LEN) as usize;
        for magic in [&b"SWAP-SPACE"[..], &b"SWAPSPACE2"[..]] {
            if slice(&block, at, magic.len()) == Some(magic) {
                return Ok(Some((page - MAGIC_LEN, magic)));
            }
        }
    }
    Ok(None)
}

/// A swap signature.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid's swap entry needs at least ten 4 KiB pages (its `minsz`;
    // checked on this machine: 40959 bytes are ignored, 40960 are not).
    if w.len() < MIN_SIZE {
        return Ok(None);
    }
    let Some((off, magic)) = find_magic(w)? else {
        return Ok(None);
    };
    let Some(head) = w.read_if_present(0, TOI_MAGIC.len())? else {
        return Ok(None);
    };
    if head == TOI_MAGIC {
        return Ok(None);
    }
    let mut sig = Signature::new("swap", Usage::Other, off);
    if magic == b"SWAP-SPACE" {
        sig.set("VERSION", "0");
        return Ok(Some(sig));
    }
    let Some(hdr) = w.read_if_present(HDR_OFF, HDR_LEN)? else {
        return Ok(None);
    };
    let version = le32(&hdr, 0).unwrap_or(0);
    if version != 1 && version.swap_bytes() != 1 {
        return Ok(None);
    }
    if le32(&hdr, 4) == Some(0) {
        return Ok(None);
    }
    if le32(&hdr, PAD32_OFF) == Some(0) && le32(&hdr, PAD33_OFF) == Some(0) {
        let volume = slice(&hdr, 28, 16).unwrap_or(&[]);
        if volume.first().is_some_and(|&c| c != 0) {
            if let Some(l) = crate::bytes::label_bytes(volume) {
                sig.set("LABEL", l);
            }
        }
        if let Some(u) = slice(&hdr, 12, 16).and_then(uuid_string) {
            sig.set("UUID", u);
        }
    }
    sig.set("VERSION", "1");
    Ok(Some(sig))
}
