//! ext2/ext3/ext4/ext4dev filesystems and ext3/4 external journals (jbd),
//! as libblkid 2.38's `ext.c` tells them apart.
//!
//! All five share one superblock (1 KiB at byte 1024, magic `0xEF53` at
//! 0x438); blkid runs one prober per name and each claims the superblock only
//! when the feature flags fit it, so at most one of them matches:
//! - `jbd`: the `journal_dev` incompat flag (an external journal device);
//! - `ext4dev`: the `test_fs` flag in `s_flags`;
//! - `ext4`: any feature ext3 does not know (extents, 64bit, flex_bg,
//!   metadata_csum…), without `test_fs`;
//! - `ext3`: a journal and only features ext3 knows;
//! - `ext2`: no journal and only features ext2 knows.
//!
//! blkid 2.38.1 does **not** verify the metadata_csum superblock checksum
//! (checked on this machine: a superblock with a flipped checksum byte is
//! still reported as ext4), so neither do we for the result; the checksum is
//! still computed and exposed as the `SB_CSUM` detail (`valid`/`invalid`) for
//! callers that want to know.

use crate::bytes::{be32, le16, le32, slice, uuid_string};
use crate::checksum::crc32c_raw;
use crate::error::Result;
use crate::journal::{Journal, JournalState};
use crate::reader::Window;
use crate::signature::{Signature, Usage};

/// Byte offset of the superblock.
const SB_OFF: u64 = 0x400;
/// Size of the superblock.
const SB_LEN: usize = 1024;
/// Offset of the magic inside the superblock.
const MAGIC_OFF: usize = 0x38;
/// `s_magic`, little-endian 0xEF53.
const MAGIC: &[u8] = b"\x53\xef";

const FLAGS_TEST_FILESYS: u32 = 0x0004;
const COMPAT_HAS_JOURNAL: u32 = 0x0004;

const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;

const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;

/// `JBD2_MAGIC_NUMBER`, first word (big-endian) of a journal superblock.
const JBD_MAGIC: u32 = 0xC03B_3998;
/// `JBD2_SUPERBLOCK_V1` and `_V2` block types.
const JBD_SB_V1: u32 = 3;
const JBD_SB_V2: u32 = 4;

/// Read-only features ext2 and ext3 both understand.
const EXT2_RO_COMPAT_SUPP: u32 =
    RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
const EXT3_RO_COMPAT_SUPP: u32 = EXT2_RO_COMPAT_SUPP;
/// Incompatible features ext2 understands.
const EXT2_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
/// Incompatible features ext3 understands.
const EXT3_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;

/// The superblock fields the probers look at.
struct ExtSuper {
    raw: Vec<u8>,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    flags: u32,
}

impl ExtSuper {
    fn field(&self, off: usize, len: usize) -> &[u8] {
        slice(&self.raw, off, len).unwrap_or(&[])
    }
}

/// Reads the superblock when its magic is there. Like libblkid, the magic only
/// counts when the whole 1 KiB block holding it is inside the region.
fn read_super(w: &Window<'_>) -> Result<Option<ExtSuper>> {
    let Some(raw) = w.read_if_present(SB_OFF, SB_LEN)? else {
        return Ok(None);
    };
    if slice(&raw, MAGIC_OFF, MAGIC.len()) != Some(MAGIC) {
        return Ok(None);
    }
    let get = |off| le32(&raw, off).unwrap_or(0);
    Ok(Some(ExtSuper {
        compat: get(0x5c),
        incompat: get(0x60),
        ro_compat: get(0x64),
        flags: get(0x160),
        raw: raw.to_vec(),
    }))
}

/// libblkid's `ext_get_info`: the values every ext flavour reports, in its
/// order (LABEL, UUID, EXT_JOURNAL, SEC_TYPE, VERSION, BLOCK_SIZE).
fn ext_info(name: &str, usage: Usage, ver: u32, es: &ExtSuper) -> Signature {
    let mut sig = Signature::new(name, usage, SB_OFF);
    let label = es.field(0x78, 16);
    if label.first().is_some_and(|&c| c != 0) {
        if let Some(l) = crate::bytes::label_bytes(label) {
            sig.set("LABEL", l);
        }
    }
    if let Some(u) = uuid_string(es.field(0x68, 16)) {
        sig.set("UUID", u);
    }
    if es.compat & COMPAT_HAS_JOURNAL != 0 {
        if let Some(u) = uuid_string(es.field(0xd0, 16)) {
            sig.set("EXT_JOURNAL", u);
        }
    }
    if ver != 2 && es.incompat & !EXT2_INCOMPAT_SUPP == 0 {
        sig.set("SEC_TYPE", "ext2");
    }
    let rev = le32(&es.raw, 0x4c).unwrap_or(0);
    let minor = le16(&es.raw, 0x3e).unwrap_or(0);
    sig.set("VERSION", format!("{rev}.{minor}"));
    // `1024U << s_log_block_size` in 32 bits (bits shifted out are lost),
    // and only for shifts below 32: blkid 2.38 omits BLOCK_SIZE otherwise
    // (checked on this machine with log 21, 22, 31, 32).
    let log = le32(&es.raw, 0x18).unwrap_or(0);
    if log < 32 {
        sig.set("BLOCK_SIZE", 1024u32.wrapping_shl(log).to_string());
    }
    if es.ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        let stored = le32(&es.raw, 0x3fc).unwrap_or(0);
        let ok = crc32c_raw(!0, es.field(0, 0x3fc)) == stored;
        sig.set_detail("SB_CSUM", if ok { "valid" } else { "invalid" });
    }
    sig.journal = fs_journal(es);
    sig
}

/// The journal of an ext3/ext4 filesystem, from its superblock alone: the
/// kernel sets `needs_recovery` (`EXT3_FEATURE_INCOMPAT_RECOVER`) while the
/// journal holds transactions not yet checkpointed, clears it on a clean
/// unmount, and replays only when it is set (ext4_load_journal wipes the
/// journal otherwise). `None` without `has_journal`.
fn fs_journal(es: &ExtSuper) -> Option<Journal> {
    if es.compat & COMPAT_HAS_JOURNAL == 0 {
        return None;
    }
    let inum = le32(&es.raw, 0xe0).unwrap_or(0);
    let dev = le32(&es.raw, 0xe4).unwrap_or(0);
    let uuid_set = es.field(0xd0, 16).iter().any(|&b| b != 0);
    let external = inum == 0 && (uuid_set || dev != 0);
    let (state, basis) = if es.incompat & INCOMPAT_RECOVER != 0 {
        (
            JournalState::NeedsRecovery,
            "the superblock has needs_recovery set",
        )
    } else {
        (
            JournalState::Clean,
            "the superblock has needs_recovery clear",
        )
    };
    Some(Journal {
        state,
        external,
        basis: basis.into(),
    })
}

/// The state of an external journal device: its journal superblock (block
/// 1, or block 2 with 1 KiB blocks, inside the probe's first read) has
/// `s_start == 0` when nothing needs replay.
fn jbd_journal(w: &Window<'_>, es: &ExtSuper) -> Result<Journal> {
    let unknown = |why: String| Journal::internal(JournalState::Unknown, why);
    let log = le32(&es.raw, 0x18).unwrap_or(u32::MAX);
    if log > 6 {
        return Ok(unknown(format!("s_log_block_size {log} is implausible")));
    }
    let bs = 1024u64 << log;
    let at = if bs == 1024 { 2048 } else { bs };
    let Some(jsb) = w.read_if_present(at, 1024)? else {
        return Ok(unknown(
            "the journal superblock is past the device's end".into(),
        ));
    };
    let magic = be32(&jsb, 0).unwrap_or(0);
    let kind = be32(&jsb, 4).unwrap_or(0);
    if magic != JBD_MAGIC || !(kind == JBD_SB_V1 || kind == JBD_SB_V2) {
        return Ok(unknown(format!(
            "no journal superblock at byte {at} (magic {magic:#x}, type {kind})"
        )));
    }
    Ok(match be32(&jsb, 0x1c).unwrap_or(0) {
        0 => Journal::internal(JournalState::Clean, "the journal superblock has s_start 0"),
        s => Journal::internal(
            JournalState::NeedsRecovery,
            format!("the journal superblock has s_start {s}: transactions to replay"),
        ),
    })
}

/// An external ext3/ext4 journal device (`mke2fs -O journal_dev`).
pub fn probe_jbd(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(es) = read_super(w)? else {
        return Ok(None);
    };
    if es.incompat & INCOMPAT_JOURNAL_DEV == 0 {
        return Ok(None);
    }
    let mut sig = ext_info("jbd", Usage::Other, 2, &es);
    if let Some(u) = uuid_string(es.field(0x68, 16)) {
        sig.set("LOGUUID", u);
    }
    sig.journal = Some(jbd_journal(w, &es)?);
    Ok(Some(sig))
}

/// ext2: no journal, nothing ext2 does not understand.
pub fn probe_ext2(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(es) = read_super(w)? else {
        return Ok(None);
    };
    if es.compat & COMPAT_HAS_JOURNAL != 0
        || es.ro_compat & !EXT2_RO_COMPAT_SUPP != 0
        || es.incompat & !EXT2_INCOMPAT_SUPP != 0
    {
        return Ok(None);
    }
    Ok(Some(ext_info("ext2", Usage::Filesystem, 2, &es)))
}

/// ext3: a journal and only ext3 features.
pub fn probe_ext3(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(es) = read_super(w)? else {
        return Ok(None);
    };
    if es.compat & COMPAT_HAS_JOURNAL == 0
        || es.ro_compat & !EXT3_RO_COMPAT_SUPP != 0
        || es.incompat & !EXT3_INCOMPAT_SUPP != 0
    {
        return Ok(None);
    }
    Ok(Some(ext_info("ext3", Usage::Filesystem, 3, &es)))
}

/// ext4dev: a filesystem flagged for the in-development ext4 code (`test_fs`).
pub fn probe_ext4dev(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(es) = read_super(w)? else {
        return Ok(None);
    };
    if es.incompat & INCOMPAT_JOURNAL_DEV != 0 || es.flags & FLAGS_TEST_FILESYS == 0 {
        return Ok(None);
    }
    Ok(Some(ext_info("ext4dev", Usage::Filesystem, 4, &es)))
}

/// ext4: at least one feature ext3 does not understand, and not `test_fs`.
pub fn probe_ext4(w: &Window<'_>) -> Result<Option<Signature>> {
    let Some(es) = read_super(w)? else {
        return Ok(None);
    };
    if es.incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Ok(None);
    }
    if es.ro_compat & !EXT3_RO_COMPAT_SUPP == 0 && es.incompat & !EXT3_INCOMPAT_SUPP == 0 {
        return Ok(None);
    }
    if es.flags & FLAGS_TEST_FILESYS != 0 {
        return Ok(None);
    }
    Ok(Some(ext_info("ext4", Usage::Filesystem, 4, &es)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::reader::Reader;
    use crate::source::MemSource;

    fn image(compat: u32, incompat: u32, ro: u32, flags: u32) -> Vec<u8> {
        let mut d = vec![0u8; 8192];
        let sb = &mut d[0x400..0x800];
        sb[0x38..0x3a].copy_from_slice(MAGIC);
        sb[0x5c..0x60].copy_from_slice(&compat.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
        sb[0x160..0x164].copy_from_slice(&flags.to_le_bytes());
        sb[0x4c] = 1;
        sb[0x68..0x78].copy_from_slice(&[0xab; 16]);
        d
    }

    fn which(d: Vec<u8>) -> Vec<&'static str> {
        let src = MemSource::new(d);
        let r = Reader::new(&src);
        let w = r.whole();
        let probers: [(&str, crate::sig::ProbeFn); 5] = [
            ("ext4dev", probe_ext4dev),
            ("ext4", probe_ext4),
            ("ext3", probe_ext3),
            ("ext2", probe_ext2),
            ("jbd", probe_jbd),
        ];
        probers
            .iter()
            .filter(|(_, p)| p(&w).unwrap().is_some())
            .map(|(n, _)| *n)
            .collect()
    }

    #[test]
    fn flavours_are_exclusive() {
        assert_eq!(which(image(0, 2, 1, 0)), ["ext2"]);
        assert_eq!(which(image(4, 2, 1, 0)), ["ext3"]);
        assert_eq!(which(image(4, 0x42, 1, 0)), ["ext4"]);
        assert_eq!(which(image(0, 0x42, 1, 0)), ["ext4"]);
        assert_eq!(which(image(4, 0x42, 1, 4)), ["ext4dev"]);
        assert_eq!(which(image(0, 8, 0, 0)), ["jbd"]);
        let mut no_magic = image(0, 2, 1, 0);
        no_magic[0x438] = 0;
        assert!(which(no_magic).is_empty());
    }

    #[test]
    fn magic_needs_its_whole_kib() {
        let mut d = image(0, 2, 1, 0);
        d.truncate(0x7ff);
        assert!(which(d).is_empty());
    }
}
