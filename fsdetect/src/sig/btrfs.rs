//! btrfs as libblkid 2.38's `btrfs.c` sees it: only the primary superblock
//! (64 KiB into the region, magic `_BHRfS_M` at +0x40) is probed — the
//! copies at 64 MiB and 256 GiB are not — and it reports LABEL, UUID (the
//! filesystem id), UUID_SUB (this device's id) and BLOCK_SIZE (sectorsize).
//!
//! blkid 2.38.1 does not verify the superblock checksum (checked on this
//! machine: a flipped byte in the label or the stored checksum is still
//! reported); the result therefore ignores it, and the CRC-32C check is
//! exposed as the `SB_CSUM` detail (`valid`/`invalid`) when the checksum
//! type is crc32c. Zoned devices (superblock log zones) are not handled:
//! images and loop devices are never zoned.

use crate::bytes::{le16, le32, le64, slice, uuid_string};
use crate::checksum::crc32c;
use crate::error::Result;
use crate::journal::{Journal, JournalState};
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// Offset of the primary superblock.
const SB_OFF: u64 = 64 * 1024;
/// libblkid reads the whole 1 KiB block holding the magic.
const SB_READ: usize = 1024;
/// Bytes covered by the superblock checksum (from 0x20 up to here).
const SB_SIZE: usize = 4096;
const MAGIC_OFF: usize = 0x40;
const MAGIC: &[u8] = b"_BHRfS_M";
/// Smallest region blkid probes for btrfs (`minsz` of its table entry).
const MIN_SIZE: u64 = 1024 * 1024;
/// libblkid keeps at most this many bytes of a label.
const PROBVAL_BUFSIZ: usize = 128;

const FSID_OFF: usize = 0x20;
/// `log_root`: the root of the tree-log (fsync'd changes since the last
/// commit), zero when there is none.
const LOG_ROOT_OFF: usize = 0x60;
const SECTORSIZE_OFF: usize = 0x90;
const CSUM_TYPE_OFF: usize = 0xc4;
/// `dev_item` starts at 0xc9; its uuid is 66 bytes into it.
const DEV_UUID_OFF: usize = 0xc9 + 66;
const LABEL_OFF: usize = 0x12b;
const LABEL_LEN: usize = 256;

/// Whether the crc32c checksum matches; `None` for other checksum types or
/// when the 4 KiB superblock does not fit the region.
fn csum_matches(w: &Window<'_>, sb: &[u8]) -> Result<Option<bool>> {
    if le16(sb, CSUM_TYPE_OFF) != Some(0) {
        return Ok(None);
    }
    let Some(full) = w.read_if_present(SB_OFF, SB_SIZE)? else {
        return Ok(None);
    };
    let (Some(stored), Some(data)) = (le32(&full, 0), full.get(0x20..)) else {
        return Ok(None);
    };
    Ok(Some(crc32c(data) == stored))
}

/// btrfs primary superblock.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid's btrfs entry has a minimum device size of 1 MiB (checked on
    // this machine: a btrfs image cut to 1 MiB - 1 byte is not reported).
    if w.len() < MIN_SIZE {
        return Ok(None);
    }
    let Some(sb) = w.read_if_present(SB_OFF, SB_READ)? else {
        return Ok(None);
    };
    if slice(&sb, MAGIC_OFF, MAGIC.len()) != Some(MAGIC) {
        return Ok(None);
    }
    let mut sig = Signature::new("btrfs", Usage::Filesystem, SB_OFF);
    let label = slice(&sb, LABEL_OFF, LABEL_LEN).unwrap_or(&[]);
    if label.first().is_some_and(|&c| c != 0) {
        let capped = &label[..label.len().min(PROBVAL_BUFSIZ)];
        if let Some(l) = crate::bytes::label_bytes(capped) {
            sig.set("LABEL", l);
        }
    }
    if let Some(u) = slice(&sb, FSID_OFF, 16).and_then(uuid_string) {
        sig.set("UUID", u);
    }
    if let Some(u) = slice(&sb, DEV_UUID_OFF, 16).and_then(uuid_string) {
        sig.set("UUID_SUB", u);
    }
    sig.set(
        "BLOCK_SIZE",
        le32(&sb, SECTORSIZE_OFF).unwrap_or(0).to_string(),
    );
    // btrfs is copy-on-write: a commit is always consistent, and only a
    // tree-log (written by fsync between commits) is replayed at mount.
    sig.journal = Some(match le64(&sb, LOG_ROOT_OFF) {
        Some(0) => Journal::internal(JournalState::Clean, "the superblock has no log tree"),
        Some(root) => Journal::internal(
            JournalState::NeedsRecovery,
            format!("the superblock points to a log tree at {root}: fsync'd changes to replay"),
        ),
        None => Journal::internal(JournalState::Unknown, "the superblock is cut short"),
    });
    if let Some(ok) = csum_matches(w, &sb)? {
        sig.set_detail("SB_CSUM", if ok { "valid" } else { "invalid" });
    }
    Ok(Some(sig))
}
