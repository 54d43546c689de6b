//! XFS (v4 and v5) as libblkid 2.38's `xfs.c` sees it: magic `XFSB` at byte
//! 0, the geometry sanity checks of `xfs_verify_sb`, then LABEL, UUID and
//! BLOCK_SIZE (which blkid sets to the *sector* size, not the block size).
//!
//! blkid 2.38.1 does not check the v5 superblock CRC, nor the v5-only
//! feature rules (checked on this machine: a v5 superblock with a flipped
//! CRC byte or with `features2 != bad_features2` is still reported), so the
//! result does not depend on them. The CRC is still verified and exposed as
//! the `SB_CSUM` detail (`valid`/`invalid`) on v5 superblocks.

use crate::bytes::{be16, be32, be64, le32, slice, uuid_string};
use crate::checksum::crc32c;
use crate::error::Result;
use crate::journal::{Journal, JournalState};
use crate::reader::Window;
use crate::signature::{Signature, Usage};

use super::xfs_log::{self, LogGeometry, LogVerdict};

const MAGIC: &[u8] = b"XFSB";
/// libblkid reads the 1 KiB block holding a magic; the superblock fields we
/// need all lie in it.
const SB_READ: usize = 1024;

const MIN_SECTORSIZE_LOG: u8 = 9;
const MAX_SECTORSIZE_LOG: u8 = 15;
const MIN_SECTORSIZE: u16 = 1 << MIN_SECTORSIZE_LOG;
const MAX_SECTORSIZE: u16 = 1 << MAX_SECTORSIZE_LOG;
const MIN_BLOCKSIZE_LOG: u8 = 9;
const MAX_BLOCKSIZE_LOG: u8 = 16;
const MIN_BLOCKSIZE: u32 = 1 << MIN_BLOCKSIZE_LOG;
const MAX_BLOCKSIZE: u32 = 1 << MAX_BLOCKSIZE_LOG;
const DINODE_MIN_LOG: u8 = 8;
const DINODE_MAX_LOG: u8 = 11;
const DINODE_MIN_SIZE: u16 = 1 << DINODE_MIN_LOG;
const DINODE_MAX_SIZE: u16 = 1 << DINODE_MAX_LOG;
const MAX_RTEXTSIZE: u32 = 1024 * 1024 * 1024;
const MIN_RTEXTSIZE: u32 = 4 * 1024;
const MIN_AG_BLOCKS: u64 = 64;
/// Offset of `sb_crc` (little-endian on disk, unlike every other field).
const CRC_OFF: usize = 224;
/// `XFS_SB_VERSION_LOGV2BIT` in `sb_versionnum` (v4).
const VERSION_LOGV2BIT: u16 = 0x0400;

/// The fields `xfs_verify_sb` looks at, host-endian.
struct Geometry {
    blocksize: u32,
    dblocks: u64,
    rextsize: u32,
    agblocks: u32,
    agcount: u32,
    versionnum: u16,
    sectsize: u16,
    inodesize: u16,
    blocklog: u8,
    sectlog: u8,
    inodelog: u8,
    inopblog: u8,
    imax_pct: u8,
}

impl Geometry {
    fn parse(sb: &[u8]) -> Option<Self> {
        Some(Self {
            blocksize: be32(sb, 4)?,
            dblocks: be64(sb, 8)?,
            rextsize: be32(sb, 80)?,
            agblocks: be32(sb, 84)?,
            agcount: be32(sb, 88)?,
            versionnum: be16(sb, 100)?,
            sectsize: be16(sb, 102)?,
            inodesize: be16(sb, 104)?,
            blocklog: *sb.get(120)?,
            sectlog: *sb.get(121)?,
            inodelog: *sb.get(122)?,
            inopblog: *sb.get(123)?,
            imax_pct: *sb.get(127)?,
        })
    }

    /// `xfs_verify_sb`'s sanity checks, in its order and with C's integer
    /// semantics (the realtime extent size product wraps in 32 bits).
    fn is_sane(&self) -> bool {
        let max_dblocks = u64::from(self.agcount) * u64::from(self.agblocks);
        let min_dblocks =
            u64::from(self.agcount.wrapping_sub(1)) * u64::from(self.agblocks) + MIN_AG_BLOCKS;
        let rtext = self.rextsize.wrapping_mul(self.blocksize);
        !(self.agcount == 0
            || self.sectsize < MIN_SECTORSIZE
            || self.sectsize > MAX_SECTORSIZE
            || self.sectlog < MIN_SECTORSIZE_LOG
            || self.sectlog > MAX_SECTORSIZE_LOG
            || u32::from(self.sectsize) != 1u32 << self.sectlog
            || self.blocksize < MIN_BLOCKSIZE
            || self.blocksize > MAX_BLOCKSIZE
            || self.blocklog < MIN_BLOCKSIZE_LOG
            || self.blocklog > MAX_BLOCKSIZE_LOG
            || u64::from(self.blocksize) != 1u64 << self.blocklog
            || self.inodesize < DINODE_MIN_SIZE
            || self.inodesize > DINODE_MAX_SIZE
            || self.inodelog < DINODE_MIN_LOG
            || self.inodelog > DINODE_MAX_LOG
            || u32::from(self.inodesize) != 1u32 << self.inodelog
            || i32::from(self.blocklog) - i32::from(self.inodelog) != i32::from(self.inopblog)
            || !(MIN_RTEXTSIZE..=MAX_RTEXTSIZE).contains(&rtext)
            || self.imax_pct > 100
            || self.dblocks == 0
            || self.dblocks > max_dblocks
            || self.dblocks < min_dblocks)
    }
}

/// Whether a v5 superblock's CRC (CRC-32C over one sector with the CRC field
/// zeroed) matches; `None` when the sector cannot be read.
fn crc_matches(w: &Window<'_>, sectsize: u16) -> Result<Option<bool>> {
    let Some(sector) = w.read_if_present(0, usize::from(sectsize))? else {
        return Ok(None);
    };
    let mut sector = sector.to_vec();
    let Some(stored) = le32(&sector, CRC_OFF) else {
        return Ok(None);
    };
    if let Some(f) = sector.get_mut(CRC_OFF..CRC_OFF + 4) {
        f.fill(0);
    }
    Ok(Some(crc32c(&sector) == stored))
}

/// Where the internal log is, from a sane superblock; an external log or
/// implausible log fields give the journal verdict directly.
fn log_geometry(sb: &[u8], geo: &Geometry) -> std::result::Result<LogGeometry, Journal> {
    let unknown = |why: String| Journal::internal(JournalState::Unknown, why);
    let (Some(logstart), Some(logblocks), Some(&agblklog)) =
        (be64(sb, 48), be32(sb, 96), sb.get(124))
    else {
        return Err(unknown("the superblock is cut short".into()));
    };
    if logstart == 0 {
        return Err(Journal {
            state: JournalState::Unknown,
            external: true,
            basis: "the XFS log is on an external device".into(),
        });
    }
    if agblklog >= 32 {
        return Err(unknown(format!("sb_agblklog {agblklog} is implausible")));
    }
    let agno = logstart >> agblklog;
    let agbno = logstart & ((1u64 << agblklog) - 1);
    if agno >= u64::from(geo.agcount) || agbno >= u64::from(geo.agblocks) {
        return Err(unknown(format!(
            "sb_logstart {logstart} is outside the filesystem"
        )));
    }
    let Some(offset) =
        (agno * u64::from(geo.agblocks) + agbno).checked_mul(u64::from(geo.blocksize))
    else {
        return Err(unknown(format!("sb_logstart {logstart} is implausible")));
    };
    let bbs = u64::from(logblocks) * u64::from(geo.blocksize) / xfs_log::BBSIZE;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(slice(sb, 32, 16).unwrap_or(&[0u8; 16]));
    Ok(LogGeometry {
        offset,
        bbs,
        v2: geo.versionnum & 0x0f == 5 || geo.versionnum & VERSION_LOGV2BIT != 0,
        uuid,
    })
}

/// Reads the log of the XFS at the start of `w` and says whether it is
/// clean (see [`xfs_log`]). Anything but an I/O error is a verdict: no XFS
/// superblock, an external log, or a corrupt log give
/// [`JournalState::Unknown`] with the reason.
pub fn log_journal(w: &Window<'_>) -> Result<Journal> {
    let unknown = |why: &str| Journal::internal(JournalState::Unknown, why);
    let Some(sb) = w.read_if_present(0, SB_READ)? else {
        return Ok(unknown("the device is too small for an XFS superblock"));
    };
    let geo = match Geometry::parse(&sb) {
        Some(g) if sb.starts_with(MAGIC) && g.is_sane() => g,
        _ => return Ok(unknown("no sane XFS superblock")),
    };
    let lg = match log_geometry(&sb, &geo) {
        Ok(lg) => lg,
        Err(j) => return Ok(j),
    };
    Ok(match xfs_log::log_verdict(w, &lg)? {
        LogVerdict::Clean(why) => Journal::internal(JournalState::Clean, why),
        LogVerdict::Dirty(why) => Journal::internal(JournalState::NeedsRecovery, why),
        LogVerdict::Undecided(why) => Journal::internal(JournalState::Unknown, why),
    })
}

/// XFS superblock at the start of the region.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    // blkid skips superblock probing on regions of 1 KiB or less.
    if w.len() <= 1024 {
        return Ok(None);
    }
    let Some(sb) = w.read_if_present(0, SB_READ)? else {
        return Ok(None);
    };
    if !sb.starts_with(MAGIC) {
        return Ok(None);
    }
    let Some(geo) = Geometry::parse(&sb) else {
        return Ok(None);
    };
    if !geo.is_sane() {
        return Ok(None);
    }
    let mut sig = Signature::new("xfs", Usage::Filesystem, 0);
    let fname = slice(&sb, 108, 12).unwrap_or(&[]);
    if fname.first().is_some_and(|&c| c != 0) {
        if let Some(l) = crate::bytes::label_bytes(fname) {
            sig.set("LABEL", l);
        }
    }
    if let Some(u) = slice(&sb, 32, 16).and_then(uuid_string) {
        sig.set("UUID", u);
    }
    sig.set("BLOCK_SIZE", geo.sectsize.to_string());
    sig.set_detail("SB_VERSION", (geo.versionnum & 0x0f).to_string());
    // The superblock does not say whether the log is clean: only reading the
    // log does (journal::inspect), which the probe does not pay for.
    sig.journal = Some(match log_geometry(&sb, &geo) {
        Ok(_) => Journal::internal(
            JournalState::NotInspected,
            "the XFS log must be read to tell (fsdetect::journal::inspect)",
        ),
        Err(j) => j,
    });
    if geo.versionnum & 0x0f == 5 {
        if let Some(ok) = crc_matches(w, geo.sectsize)? {
            sig.set_detail("SB_CSUM", if ok { "valid" } else { "invalid" });
        }
    }
    Ok(Some(sig))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::reader::Reader;
    use crate::source::MemSource;

    /// A minimal sane v4 superblock: 4 AGs of 4096 4 KiB blocks.
    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 64 * 1024];
        d[0..4].copy_from_slice(MAGIC);
        d[4..8].copy_from_slice(&4096u32.to_be_bytes());
        d[8..16].copy_from_slice(&16384u64.to_be_bytes());
        d[80..84].copy_from_slice(&1u32.to_be_bytes());
        d[84..88].copy_from_slice(&4096u32.to_be_bytes());
        d[88..92].copy_from_slice(&4u32.to_be_bytes());
        d[100..102].copy_from_slice(&0xb4a4u16.to_be_bytes());
        d[102..104].copy_from_slice(&512u16.to_be_bytes());
        d[104..106].copy_from_slice(&256u16.to_be_bytes());
        d[108..111].copy_from_slice(b"lab");
        d[120] = 12;
        d[121] = 9;
        d[122] = 8;
        d[123] = 4;
        d[127] = 25;
        d[32..48].copy_from_slice(&[7u8; 16]);
        d
    }

    fn run(d: Vec<u8>) -> Option<Signature> {
        let src = MemSource::new(d);
        let r = Reader::new(&src);
        probe(&r.whole()).unwrap()
    }

    #[test]
    fn sane_superblock_is_found_and_insane_ones_are_not() {
        let sig = run(image()).unwrap();
        assert_eq!(sig.label().as_deref(), Some("lab"));
        assert_eq!(sig.get_str("BLOCK_SIZE").as_deref(), Some("512"));
        for (off, val) in [(88usize, 0u8), (121, 10), (123, 3), (127, 101)] {
            let mut d = image();
            if off == 88 {
                d[88..92].fill(0);
            } else {
                d[off] = val;
            }
            assert!(run(d).is_none(), "field at {off} = {val} accepted");
        }
    }
}
