//! Whether an XFS log is clean, decided the way the kernel's log recovery
//! does (`xlog_find_head`, then `xlog_find_tail`'s `xlog_check_unmount_rec`
//! in fs/xfs/xfs_log_recover.c): find the head of the circular log from the
//! cycle numbers stamped in every 512-byte block, step back to the last
//! complete log record, and call the log clean when that record is an
//! unmount record (one op whose header has `XLOG_UNMOUNT_TRANS`) ending
//! exactly at the head. `xfs_logprint -t` prints the same verdict.
//!
//! The log is untrusted input (a clone of whatever a production host wrote):
//! every block number is checked against the log's size, every loop is
//! bounded (the binary search by the log's size, the scans by the kernel's
//! own windows: 8 in-flight records of at most 256 KiB), and anything the
//! kernel would refuse or that makes no sense is reported as undecided,
//! never a panic. Reads: the first and last block (one call when the log is
//! at most 4 MiB: the whole log), one block per halving while the search
//! range is wider than 2 MiB, then one window of at most 4 MiB that holds
//! every block the rest looks at.
//!
//! Not done: the kernel's CRC pass over the records near the head
//! (`xlog_verify_head`), which can trim a torn last write and then find an
//! unmount record before it. Such a log is reported as needing recovery: a
//! conservative answer for a warning.

use crate::bytes::{be32, be64, slice};
use crate::error::ProbeError;
use crate::reader::Window;

/// Basic block: the unit of log addressing and cycle stamping.
pub const BBSIZE: u64 = 512;
/// `XLOG_HEADER_MAGIC_NUM`, first word of a log record header.
pub const HEADER_MAGIC: u32 = 0xFEED_BABE;
/// `XLOG_UNMOUNT_TRANS`, in an op header's `oh_flags`.
pub const UNMOUNT_TRANS: u8 = 0x20;
/// `XLOG_MAX_ICLOGS`: log records that may be in flight at once.
const MAX_ICLOGS: u64 = 8;
/// `XLOG_HEADER_CYCLE_SIZE`: bytes of record data per header block.
const HEADER_CYCLE_SIZE: u64 = 32 * 1024;
/// Largest log record (`XLOG_MAX_RECORD_BSIZE`).
const MAX_RECORD_BSIZE: u64 = 256 * 1024;
/// Largest v1 log record (`XLOG_BIG_RECORD_BSIZE`).
const BIG_RECORD_BSIZE: u64 = 32 * 1024;
/// Largest XFS log (mkfs and the kernel refuse larger ones).
pub const MAX_LOG_BYTES: u64 = 2 << 30;
/// Smallest log this scan accepts: below the kernel's scan windows the
/// algorithm's wrap-around arithmetic no longer holds (real logs are MiBs).
pub const MIN_LOG_BBS: u64 = 1024;
/// Logs up to this size are read whole in one call.
const READ_WHOLE: u64 = 4 << 20;

/// Where the log is and how it is written, from the superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGeometry {
    /// Byte offset of the log's first block within the probed region.
    pub offset: u64,
    /// Length in 512-byte basic blocks.
    pub bbs: u64,
    /// Version 2 log (v5 filesystems, or the v4 `logv2` feature): records
    /// of up to 256 KiB with extra header blocks.
    pub v2: bool,
    /// `sb_uuid`: every record header carries it (or zeros, from IRIX).
    pub uuid: [u8; 16],
}

/// The verdict on a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogVerdict {
    /// The last record is an unmount record ending at the head, or the log
    /// is zeroed: nothing to replay.
    Clean(String),
    /// Records after the last unmount: a mount would replay them.
    Dirty(String),
    /// Not decidable from the data (corrupt, implausible, foreign UUID).
    Undecided(String),
}

/// Why the scan stopped early.
enum Stop {
    Io(ProbeError),
    Undecided(String),
}

impl From<ProbeError> for Stop {
    fn from(e: ProbeError) -> Self {
        Stop::Io(e)
    }
}

type R<T> = std::result::Result<T, Stop>;

fn undecided<T>(why: impl Into<String>) -> R<T> {
    Err(Stop::Undecided(why.into()))
}

/// Whether `xlog_find_verify_log_record` found a record header or ran off
/// the log's start (its return value 1).
enum Found {
    Header,
    HitStart,
}

/// A record header's fields the scan uses.
struct RecHeader {
    version: u32,
    len: u64,
    tail_lsn: u64,
    num_logops: u32,
    size: u64,
    uuid: [u8; 16],
}

impl RecHeader {
    fn parse(b: &[u8]) -> Option<Self> {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(slice(b, 304, 16)?);
        Some(Self {
            version: be32(b, 8)?,
            len: u64::from(be32(b, 12)?),
            tail_lsn: be64(b, 24)?,
            num_logops: be32(b, 40)?,
            size: u64::from(be32(b, 320)?),
            uuid,
        })
    }
}

struct Log<'w, 'a> {
    w: &'w Window<'a>,
    g: &'w LogGeometry,
    /// `XLOG_TOTAL_REC_SHIFT`: blocks all in-flight records can span.
    total: u64,
    /// `XLOG_REC_SHIFT`: blocks one record can span.
    rec: u64,
}

impl Log<'_, '_> {
    fn check(&self, bb: u64, n: u64) -> R<()> {
        match bb.checked_add(n) {
            Some(end) if end <= self.g.bbs => Ok(()),
            _ => undecided(format!(
                "log blocks {bb}+{n} are past the log's end ({} blocks)",
                self.g.bbs
            )),
        }
    }

    /// One basic block of the log.
    fn block(&self, bb: u64) -> R<crate::reader::Bytes> {
        self.check(bb, 1)?;
        Ok(self.w.read(self.g.offset + bb * BBSIZE, BBSIZE as usize)?)
    }

    /// Brings `n` blocks from `bb` into the cache in one call (clamped to the log).
    fn fetch(&self, bb: u64, n: u64) -> R<()> {
        let n = n.min(self.g.bbs.saturating_sub(bb));
        if n == 0 {
            return Ok(());
        }
        self.check(bb, n)?;
        self.w
            .read(self.g.offset + bb * BBSIZE, (n * BBSIZE) as usize)?;
        Ok(())
    }

    /// `xlog_get_cycle`: the cycle a block was written in (a header block
    /// keeps it in `h_cycle`, any other block in its first word).
    fn cycle(&self, bb: u64) -> R<u32> {
        let b = self.block(bb)?;
        let w0 = be32(&b, 0).unwrap_or(0);
        Ok(if w0 == HEADER_MAGIC {
            be32(&b, 4).unwrap_or(0)
        } else {
            w0
        })
    }

    fn is_header(&self, bb: u64) -> R<bool> {
        Ok(be32(&self.block(bb)?, 0) == Some(HEADER_MAGIC))
    }

    /// `xlog_logrec_hblks`: header blocks of a record (v2 records over
    /// 32 KiB have extended headers).
    fn hblks(&self, h: &RecHeader) -> u64 {
        if self.g.v2 && h.version & 2 != 0 && h.size > HEADER_CYCLE_SIZE {
            h.size.div_ceil(HEADER_CYCLE_SIZE)
        } else {
            1
        }
    }

    /// `xlog_find_cycle_start`: binary search for the first block of
    /// `cycle` in `[first, last]`. Once the range fits the verify window,
    /// the window around it is fetched in one call, so the rest of the
    /// search and the checks after it are served from memory.
    fn find_cycle_start(&self, mut first: u64, last: u64, cycle: u32) -> R<u64> {
        let mut end = last;
        let mut fetched = false;
        let mut mid = first + (end - first) / 2;
        while mid != first && mid != end {
            if !fetched && end - first <= self.total {
                let from = first.saturating_sub(self.total);
                self.fetch(from, end + 1 - from)?;
                fetched = true;
            }
            if self.cycle(mid)? == cycle {
                end = mid;
            } else {
                first = mid;
            }
            mid = first + (end - first) / 2;
        }
        Ok(end)
    }

    /// `xlog_find_verify_cycle`: the first block in `[start, start+n)` of
    /// cycle `stop`.
    fn verify_cycle(&self, start: u64, n: u64, stop: u32) -> R<Option<u64>> {
        self.fetch(start, n)?;
        for i in start..start + n {
            if self.cycle(i)? == stop {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// `xlog_find_verify_log_record`: steps back from `*last` to the record
    /// header before it (not before `start`), and moves `*last` to that
    /// header when the record does not end at `*last` (a partial write).
    fn verify_log_record(&self, start: u64, last: &mut u64, extra: u64) -> R<Found> {
        if *last > start {
            self.fetch(start, *last - start)?;
        }
        let mut i = *last;
        let header = loop {
            if i == 0 {
                return Ok(Found::HitStart);
            }
            i -= 1;
            if i < start {
                return undecided(format!(
                    "no log record header in the {} blocks before block {}",
                    *last - start,
                    *last
                ));
            }
            let b = self.block(i)?;
            if be32(&b, 0) == Some(HEADER_MAGIC) {
                break RecHeader::parse(&b);
            }
        };
        let Some(h) = header else {
            return undecided(format!("log record header at block {i} is cut short"));
        };
        if h.uuid != [0u8; 16] && h.uuid != self.g.uuid {
            return undecided(format!(
                "the log record at block {i} belongs to another filesystem (UUID differs)"
            ));
        }
        let spans = h.len.div_ceil(BBSIZE).saturating_add(self.hblks(&h));
        if (*last - i).saturating_add(extra) != spans {
            *last = i;
        }
        Ok(Found::Header)
    }

    /// `xlog_find_head`: the block the next log write would go to, or
    /// `None` for a totally zeroed log.
    fn find_head(&self) -> R<Option<u64>> {
        let n = self.g.bbs;
        // xlog_find_zeroed
        let first_cycle = self.cycle(0)?;
        if first_cycle == 0 {
            // The kernel looks no further ("totally zeroed log") and replays
            // nothing; a log whose start is zeroed but whose records follow
            // is damaged, not clean.
            let scan = self.total.min(n);
            self.fetch(0, scan)?;
            for i in (0..scan).chain([n - 1]) {
                if self.cycle(i)? != 0 {
                    return undecided(format!(
                        "log block 0 is zeroed but block {i} is not: the log is damaged"
                    ));
                }
            }
            return Ok(None);
        }
        let last_cycle = self.cycle(n - 1)?;
        if last_cycle == 0 {
            let mut last = self.find_cycle_start(0, n - 1, 0)?;
            let scan = self.total.min(last);
            let start = last - scan;
            if let Some(b) = self.verify_cycle(start, scan, 0)? {
                last = b;
            }
            return match self.verify_log_record(start, &mut last, 0)? {
                Found::Header => Ok(Some(last)),
                Found::HitStart => undecided("no log record before the zeroed part of the log"),
            };
        }
        let (mut head, stop) = if first_cycle == last_cycle {
            (n, last_cycle.wrapping_sub(1))
        } else {
            (self.find_cycle_start(0, n - 1, last_cycle)?, last_cycle)
        };
        let scan = n.min(self.total);
        if head >= scan {
            if let Some(b) = self.verify_cycle(head - scan, scan, stop)? {
                head = b;
            }
        } else {
            let start = n - (scan - head);
            if let Some(b) = self.verify_cycle(start, scan - head, stop.wrapping_sub(1))? {
                head = b;
            } else if let Some(b) = self.verify_cycle(0, head, stop)? {
                head = b;
            }
        }
        // validate_head: not in the middle of a record.
        let scan = self.rec;
        if head >= scan {
            if let Found::HitStart = self.verify_log_record(head - scan, &mut head, 0)? {
                return undecided("no log record header before the head");
            }
        } else if let Found::HitStart = self.verify_log_record(0, &mut head, 0)? {
            let Some(start) = n.checked_sub(scan - head) else {
                return undecided("the log is smaller than one record");
            };
            let mut new = n;
            if let Found::HitStart = self.verify_log_record(start, &mut new, head)? {
                return undecided("no log record header before the head");
            }
            if new != n {
                head = new;
            }
        }
        Ok(Some(if head == n { 0 } else { head }))
    }

    /// `xlog_find_tail` up to `xlog_check_unmount_rec`.
    fn verdict(&self) -> R<LogVerdict> {
        let n = self.g.bbs;
        let Some(head) = self.find_head()? else {
            return Ok(LogVerdict::Clean("the log is zeroed".into()));
        };
        if head == 0 && self.cycle(0)? == 0 {
            return Ok(LogVerdict::Clean("the log is zeroed".into()));
        }
        // xlog_rseek_logrec_hdr, bounded: after the checks above the last
        // record's header is at most one record (plus its extra header
        // blocks) before the head.
        let limit = (self.rec + MAX_ICLOGS).min(n);
        if head >= limit {
            self.fetch(head - limit, limit)?;
        } else {
            self.fetch(0, head)?;
            self.fetch(n - (limit - head), limit - head)?;
        }
        let mut rhead_blk = None;
        for k in 1..=limit {
            let i = (head + n - k) % n;
            if self.is_header(i)? {
                rhead_blk = Some(i);
                break;
            }
        }
        let Some(rblk) = rhead_blk else {
            return undecided(format!(
                "no log record header within {limit} blocks before the head (block {head})"
            ));
        };
        let Some(h) = RecHeader::parse(&self.block(rblk)?) else {
            return undecided(format!("log record header at block {rblk} is cut short"));
        };
        // xlog_valid_rec_header's sanity rules, so that garbage is not
        // mistaken for a dirty log.
        let max_len = if self.g.v2 {
            h.size.clamp(BIG_RECORD_BSIZE, MAX_RECORD_BSIZE)
        } else {
            BIG_RECORD_BSIZE
        };
        if !(1..=2).contains(&h.version) || (h.version == 2 && !self.g.v2) {
            return undecided(format!(
                "log record at block {rblk} has version {}",
                h.version
            ));
        }
        if h.len == 0 || h.len > max_len {
            return undecided(format!(
                "log record at block {rblk} claims {} bytes (at most {max_len})",
                h.len
            ));
        }
        let hblks = self.hblks(&h);
        let after = (rblk + hblks + h.len.div_ceil(BBSIZE)) % n;
        if head == after && h.num_logops == 1 {
            let data = self.block((rblk + hblks) % n)?;
            if data.get(9).is_some_and(|f| f & UNMOUNT_TRANS != 0) {
                return Ok(LogVerdict::Clean(format!(
                    "the last log record (block {rblk}) is an unmount record"
                )));
            }
        }
        let tail = h.tail_lsn & 0xffff_ffff;
        Ok(LogVerdict::Dirty(format!(
            "the last log record (block {rblk}, {} op(s)) is not an unmount record: \
             head at block {head}, tail at block {tail}",
            h.num_logops
        )))
    }
}

/// Decides whether the log described by `g` on `w` is clean. Errors are I/O
/// failures only; anything wrong with the log's contents is
/// [`LogVerdict::Undecided`].
pub fn log_verdict(w: &Window<'_>, g: &LogGeometry) -> crate::Result<LogVerdict> {
    if g.bbs < MIN_LOG_BBS || g.bbs.saturating_mul(BBSIZE) > MAX_LOG_BYTES {
        return Ok(LogVerdict::Undecided(format!(
            "a log of {} blocks is implausible",
            g.bbs
        )));
    }
    let fits = g
        .bbs
        .checked_mul(BBSIZE)
        .and_then(|b| b.checked_add(g.offset))
        .is_some_and(|end| end <= w.len());
    if !fits {
        return Ok(LogVerdict::Undecided(format!(
            "the log ({} blocks at byte {}) does not fit the device ({} bytes)",
            g.bbs,
            g.offset,
            w.len()
        )));
    }
    let (total, rec) = if g.v2 {
        (
            (MAX_ICLOGS * MAX_RECORD_BSIZE) / BBSIZE,
            MAX_RECORD_BSIZE / BBSIZE,
        )
    } else {
        (
            (MAX_ICLOGS * BIG_RECORD_BSIZE) / BBSIZE,
            BIG_RECORD_BSIZE / BBSIZE,
        )
    };
    let log = Log { w, g, total, rec };
    // A small log costs one call whole; a larger one its two ends at once.
    let bytes = g.bbs * BBSIZE;
    if bytes <= READ_WHOLE {
        w.prefetch(&[(g.offset, bytes)])?;
    } else {
        w.prefetch(&[(g.offset, BBSIZE), (g.offset + bytes - BBSIZE, BBSIZE)])?;
    }
    match log.verdict() {
        Ok(v) => Ok(v),
        Err(Stop::Undecided(why)) => Ok(LogVerdict::Undecided(why)),
        Err(Stop::Io(ProbeError::OutOfRange { offset, .. })) => Ok(LogVerdict::Undecided(format!(
            "the log reaches past the device (byte {offset})"
        ))),
        Err(Stop::Io(e)) => Err(e),
    }
}
