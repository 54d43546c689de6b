//! Counted, coalescing reads over a [`BlockSource`].
//!
//! blkid asks the kernel for each superblock separately (43–52 reads for an
//! ext4/xfs/btrfs image). The places the probers look are known before any of
//! them runs ([`crate::sig::read_plan`]), so a region is prefetched in a few
//! coalesced calls that move about the same bytes blkid reads; probers are
//! then served from memory. Reads that depend on on-disk pointers (an NTFS
//! MFT record, a FAT root directory, GPT entries far away) fall back to one
//! small aligned fetch each. Every call that reaches the source is counted,
//! so callers and benchmarks can report exact I/O.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::{ProbeError, Result};
use crate::source::BlockSource;

/// Planned ranges closer than this are fetched together: one larger read is
/// cheaper than two system calls for the bytes in between.
pub const COALESCE_GAP: u64 = 64 * 1024;
/// Unplanned reads are widened to this alignment so neighbours share a fetch.
const ALIGN: u64 = 4096;

/// How many reads reached the source and how many bytes they moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct IoStats {
    /// Number of read calls issued to the source.
    pub read_calls: u64,
    /// Total bytes those calls returned.
    pub bytes_read: u64,
}

/// Bytes read from a source: a shared view into the reader's cache, so
/// probers read superblocks without copying them (dereferences to `[u8]`).
#[derive(Clone)]
pub struct Bytes {
    buf: Rc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.end - self.start)
    }
}

impl<T: AsRef<[u8]> + ?Sized> PartialEq<T> for Bytes {
    fn eq(&self, other: &T) -> bool {
        **self == *other.as_ref()
    }
}

impl PartialEq<Bytes> for Vec<u8> {
    fn eq(&self, other: &Bytes) -> bool {
        self[..] == **other
    }
}

/// A read cache over one source, shared by every region probed on it.
pub struct Reader<'s> {
    src: &'s dyn BlockSource,
    chunks: RefCell<Vec<(u64, Rc<Vec<u8>>)>>,
    stats: Cell<IoStats>,
    /// Planned but not yet fetched ranges `(start, end, region start, region end)`,
    /// fetched together on the first read that needs one of them.
    pending: RefCell<Vec<(u64, u64, u64, u64)>>,
}

impl<'s> Reader<'s> {
    /// Starts with an empty cache and zeroed counters.
    pub fn new(src: &'s dyn BlockSource) -> Self {
        Self {
            src,
            chunks: RefCell::new(Vec::new()),
            stats: Cell::new(IoStats::default()),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> IoStats {
        self.stats.get()
    }

    /// Size of the underlying source in bytes.
    pub fn size(&self) -> u64 {
        self.src.size()
    }

    /// Logical sector size of the underlying source.
    pub fn sector_size(&self) -> u32 {
        self.src.logical_sector_size()
    }

    /// The whole source as a region.
    pub fn whole(&self) -> Window<'_> {
        Window {
            reader: self,
            start: 0,
            len: self.src.size(),
            whole_disk: true,
            covered: None,
        }
    }

    /// A region of the source (a partition, or a `--offset/--size` probe).
    pub fn region(&self, start: u64, len: u64) -> Result<Window<'_>> {
        let size = self.src.size();
        match start.checked_add(len) {
            Some(end) if end <= size => Ok(Window {
                reader: self,
                start,
                len,
                whole_disk: false,
                covered: None,
            }),
            _ => Err(ProbeError::BadRegion {
                offset: start,
                len,
                size,
            }),
        }
    }

    fn cached(&self, abs: u64, len: usize) -> Option<Bytes> {
        let chunks = self.chunks.borrow();
        chunks.iter().find_map(|(start, data)| {
            let rel = abs.checked_sub(*start)?;
            let end = rel.checked_add(len as u64)?;
            if end <= data.len() as u64 {
                Some(Bytes {
                    buf: Rc::clone(data),
                    start: rel as usize,
                    end: end as usize,
                })
            } else {
                None
            }
        })
    }

    fn fetch(&self, start: u64, len: u64) -> Result<()> {
        let mut buf = vec![0u8; len as usize];
        self.src.read_exact_at(start, &mut buf)?;
        let mut s = self.stats.get();
        s.read_calls += 1;
        s.bytes_read += len;
        self.stats.set(s);
        // Rc<Vec> keeps the buffer where it was read: no copy into a new allocation.
        self.chunks.borrow_mut().push((start, Rc::new(buf)));
        Ok(())
    }

    /// Reads `len` bytes at absolute `abs`: from the cache, or with one
    /// aligned fetch (clamped to the region `[rs, re)` it belongs to, so no
    /// byte outside the region is ever read).
    fn read_abs(&self, abs: u64, len: usize, rs: u64, re: u64) -> Result<Bytes> {
        if let Some(v) = self.cached(abs, len) {
            return Ok(v);
        }
        let end = abs + len as u64;
        // A planned range: fetch the whole rest of this region's plan now.
        let planned: Vec<(u64, u64)> = {
            let mut pending = self.pending.borrow_mut();
            let hit = pending
                .iter()
                .any(|p| p.2 == rs && p.3 == re && abs >= p.0 && end <= p.1);
            if hit {
                let (mine, others): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|p| p.2 == rs && p.3 == re);
                *pending = others;
                mine.into_iter().map(|p| (p.0, p.1)).collect()
            } else {
                Vec::new()
            }
        };
        if !planned.is_empty() {
            self.prefetch_abs(planned, rs, re)?;
            if let Some(v) = self.cached(abs, len) {
                return Ok(v);
            }
        }
        let fs = (abs - abs % ALIGN).max(rs);
        let fe = end.div_ceil(ALIGN).saturating_mul(ALIGN).min(re).max(end);
        self.fetch(fs, fe - fs)?;
        self.cached(abs, len).ok_or(ProbeError::Truncated {
            offset: abs,
            size: self.src.size(),
        })
    }

    /// Fetches the absolute ranges `[start, end)` not yet cached, merging
    /// those less than [`COALESCE_GAP`] apart into one call each, aligned but
    /// never beyond the region `[rs, re)`.
    fn prefetch_abs(&self, mut ranges: Vec<(u64, u64)>, rs: u64, re: u64) -> Result<()> {
        ranges.retain(|&(s, e)| e > s && self.cached(s, (e - s) as usize).is_none());
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(COALESCE_GAP) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        for (s, e) in merged {
            let s = (s - s % ALIGN).max(rs);
            let e = e.div_ceil(ALIGN).saturating_mul(ALIGN).min(re);
            if e > s {
                self.fetch(s, e - s)?;
            }
        }
        Ok(())
    }
}

/// A byte range of the source that probers see as a device of its own:
/// the whole disk, or one partition. Offsets are relative to its start.
#[derive(Clone, Copy)]
pub struct Window<'a> {
    reader: &'a Reader<'a>,
    start: u64,
    len: u64,
    whole_disk: bool,
    covered: Option<&'a [(u64, u64)]>,
}

impl<'a> Window<'a> {
    /// Length of the region in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Absolute offset of the region within the source.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Logical sector size of the source.
    pub fn sector_size(&self) -> u32 {
        self.reader.sector_size()
    }

    /// True when the region is the whole source (or was probed as if it were,
    /// like blkid's `--offset`): whole-disk-only rules apply to it.
    pub fn is_whole_disk(&self) -> bool {
        self.whole_disk
    }

    /// Marks the region as probed like a whole device (blkid `-O/-S`).
    pub fn as_whole_disk(mut self) -> Self {
        self.whole_disk = true;
        self
    }

    /// Records the partitions of the table found on this region, so probers
    /// can ignore areas that belong to a partition (blkid's
    /// `blkid_probe_is_covered_by_pt`). Ranges are `(start, len)` relative to
    /// the region.
    pub fn with_partitions(mut self, parts: &'a [(u64, u64)]) -> Self {
        self.covered = Some(parts);
        self
    }

    /// True when `[offset, offset+len)` lies inside one partition of the
    /// table found on this region.
    pub fn covered_by_partition(&self, offset: u64, len: u64) -> bool {
        let Some(parts) = self.covered else {
            return false;
        };
        let end = offset.saturating_add(len);
        parts
            .iter()
            .any(|(s, l)| offset >= *s && end <= s.saturating_add(*l))
    }

    /// Reads exactly `len` bytes at `offset`; outside the region is an
    /// [`ProbeError::OutOfRange`] error.
    pub fn read(&self, offset: u64, len: usize) -> Result<Bytes> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => {
                self.reader
                    .read_abs(self.start + offset, len, self.start, self.start + self.len)
            }
            _ => Err(ProbeError::OutOfRange {
                offset,
                len,
                region_len: self.len,
            }),
        }
    }

    /// Like [`Window::read`], but a range outside the region is `Ok(None)`:
    /// the common case of a superblock location the device is too small for.
    pub fn read_if_present(&self, offset: u64, len: usize) -> Result<Option<Bytes>> {
        match self.read(offset, len) {
            Ok(v) => Ok(Some(v)),
            Err(ProbeError::OutOfRange { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches the given `(offset, len)` ranges of the region (clamped to it)
    /// in as few calls as possible, so the probers that follow read from
    /// memory. See [`crate::sig::read_plan`].
    pub fn prefetch(&self, ranges: &[(u64, u64)]) -> Result<()> {
        let abs = ranges
            .iter()
            .filter(|(off, _)| *off < self.len)
            .map(|&(off, len)| {
                (
                    self.start + off,
                    self.start + off.saturating_add(len).min(self.len),
                )
            })
            .collect();
        self.reader
            .prefetch_abs(abs, self.start, self.start + self.len)
    }

    /// Records ranges that will probably be read, without reading them yet:
    /// the first read that needs one of them fetches all of them in a few
    /// coalesced calls. Probing stops early for RAID/LVM/LUKS members, so
    /// the far parts of the plan are only paid for when a prober gets there.
    pub fn plan(&self, ranges: &[(u64, u64)]) {
        let (rs, re) = (self.start, self.start + self.len);
        let mut pending = self.reader.pending.borrow_mut();
        for &(off, len) in ranges.iter().filter(|(off, _)| *off < self.len) {
            let s = rs + off;
            let e = rs + off.saturating_add(len).min(self.len);
            if e > s {
                pending.push((s, e, rs, re));
            }
        }
    }

    /// A sub-region (a partition), relative to this one.
    pub fn subregion(&self, offset: u64, len: u64) -> Result<Window<'a>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Window {
                reader: self.reader,
                start: self.start + offset,
                len,
                whole_disk: false,
                covered: None,
            }),
            _ => Err(ProbeError::BadRegion {
                offset,
                len,
                size: self.len,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::source::MemSource;

    #[test]
    fn planned_ranges_coalesce_and_serve_later_reads() {
        let data: Vec<u8> = (0..8u32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let src = MemSource::new(data.clone());
        let r = Reader::new(&src);
        let w = r.whole();
        let n = data.len() as u64;
        // Two neighbours (gap below COALESCE_GAP), one far away, one at the end.
        w.prefetch(&[
            (0, 70_000),
            (128 * 1024, 4096),
            (4 << 20, 4096),
            (n - 65536, 65536),
        ])
        .unwrap();
        assert_eq!(r.stats().read_calls, 3);
        for off in [0u64, 1024, 65536, 128 * 1024, 4 << 20, n - 512] {
            assert_eq!(
                w.read(off, 512).unwrap(),
                data[off as usize..off as usize + 512]
            );
        }
        assert_eq!(
            r.stats().read_calls,
            3,
            "planned reads are served from memory"
        );
        // Prefetching what is cached costs nothing.
        w.prefetch(&[(0, 4096)]).unwrap();
        assert_eq!(r.stats().read_calls, 3);
        // A planned range is only fetched when needed, together with the rest
        // of the plan (two ranges 48 KiB apart: one call).
        w.plan(&[(6 << 20, 4096), ((6 << 20) + 49152, 4096)]);
        assert_eq!(r.stats().read_calls, 3);
        assert_eq!(w.read(6 << 20, 16).unwrap(), data[6 << 20..(6 << 20) + 16]);
        assert_eq!(
            w.read((6 << 20) + 49152, 16).unwrap(),
            data[(6 << 20) + 49152..(6 << 20) + 49168]
        );
        assert_eq!(r.stats().read_calls, 4);
        // An unplanned read is one small aligned fetch.
        assert_eq!(w.read(5_000_000, 100).unwrap(), data[5_000_000..5_000_100]);
        assert_eq!(r.stats().read_calls, 5);
        assert!(r.stats().bytes_read < 300_000, "{:?}", r.stats());
    }

    #[test]
    fn reads_outside_the_region_are_refused_without_io() {
        let src = MemSource::new(vec![7u8; 10_000]);
        let r = Reader::new(&src);
        let w = r.region(1000, 2000).unwrap();
        assert!(matches!(
            w.read(1990, 20),
            Err(ProbeError::OutOfRange { .. })
        ));
        assert_eq!(w.read_if_present(u64::MAX - 1, 4).unwrap(), None);
        assert_eq!(r.stats().read_calls, 0);
        assert!(r.region(9000, 2000).is_err());
    }
}
