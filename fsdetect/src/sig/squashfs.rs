//! SquashFS 4 images (TYPE `squashfs`), as libblkid 2.38 reads them.
//!
//! blkid checks the little-endian `hsqs` magic and a major version of at
//! least 4, and prints only VERSION (`major.minor`). Older (v1–3) images
//! are blkid's separate `squashfs3` prober, which fsdetect does not have:
//! such an image is reported as nothing here.

use crate::bytes::le16;
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// Probes a region for a SquashFS 4 superblock at offset 0.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(sb) = w.read_if_present(0, 32)? else {
        return Ok(None);
    };
    if &sb[0..4] != b"hsqs" {
        return Ok(None);
    }
    let (Some(major), Some(minor)) = (le16(&sb, 28), le16(&sb, 30)) else {
        return Ok(None);
    };
    if major < 4 {
        return Ok(None);
    }
    let mut sig = Signature::new("squashfs", Usage::Filesystem, 0);
    sig.set("VERSION", format!("{major}.{minor}"));
    Ok(Some(sig))
}
