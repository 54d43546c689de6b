//! Counted, coalescing reads over a [`BlockSource`].
//!
//! blkid asks the kernel for each superblock separately (43–52 reads for an
//! ext4/xfs/btrfs image). The places the probers look are known before any of
//! them runs ([`crate::sig::read_plan`]), so a region is prefetched in a few
//! coalesced calls that move about the same bytes blkid reads; probers are
//! then served from memory. Ranges that are only probably needed are
//! *planned* (recorded, not read): the first read that needs one of them
//! fetches its region's planned ranges together with every *shared* planned
//! range (the first phase of each partition, the ranges probers derived from
//! superblocks), all merged into as few calls as possible. Reads nobody
//! planned (an EBR of an extended chain, GPT entries far away) fall back to
//! one small aligned fetch each. Every call that reaches the source is
//! counted, so callers and benchmarks can report exact I/O.

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

/// Read buffers kept by this thread for the next [`Reader`]: fetched ranges
/// are up to a few hundred KiB, and glibc hands such sizes out as fresh
/// mappings (or trims them off the heap) on every probe, so each probe paid
/// a page fault per 4 KiB read — measured 2.5x the probing time of a set of
/// 35 images in one process. Reused buffers are already mapped.
mod pool {
    use std::cell::RefCell;

    /// At most this many buffers are kept…
    const MAX_BUFFERS: usize = 64;
    /// …and none larger than this.
    const MAX_BUFFER: usize = 4 << 20;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A zeroed buffer of `len` bytes, reusing the smallest kept one that fits.
    pub(super) fn take(len: usize) -> Vec<u8> {
        let reused = FREE
            .try_with(|free| {
                let mut free = free.borrow_mut();
                let best = free
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.capacity() >= len)
                    .min_by_key(|(_, b)| b.capacity())
                    .map(|(i, _)| i);
                best.map(|i| free.swap_remove(i))
            })
            .ok()
            .flatten();
        match reused {
            Some(mut buf) => {
                buf.clear();
                buf.resize(len, 0);
                buf
            }
            None => vec![0u8; len],
        }
    }

    /// Keeps a buffer for a later [`take`].
    pub(super) fn give(buf: Vec<u8>) {
        if buf.capacity() > MAX_BUFFER || buf.capacity() == 0 {
            return;
        }
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < MAX_BUFFERS {
                free.push(buf);
            }
        });
    }
}

/// A read cache over one source, shared by every region probed on it.
pub struct Reader<'s> {
    src: &'s dyn BlockSource,
    chunks: RefCell<Vec<(u64, Rc<Vec<u8>>)>>,
    stats: Cell<IoStats>,
    /// Planned but not yet fetched ranges, fetched together on the first
    /// read that needs one of them.
    pending: RefCell<Vec<Planned>>,
}

/// A planned range: absolute `[start, end)`, the bounds a fetch for it may
/// be widened to (the probed root region), and the region whose plan it is
/// (`None`: shared, fetched with whichever plan is fetched first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Planned {
    start: u64,
    end: u64,
    bounds: (u64, u64),
    owner: Option<(u64, u64)>,
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
            root: (0, self.src.size()),
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
                root: (start, end),
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

    /// The bytes at `[abs, abs+len)` if the cache holds all of them: a view
    /// of one cached chunk, or (rarely, when the range straddles two chunks)
    /// a copy assembled from several.
    fn cached(&self, abs: u64, len: usize) -> Option<Bytes> {
        if len == 0 {
            return Some(Bytes {
                buf: Rc::new(Vec::new()),
                start: 0,
                end: 0,
            });
        }
        let chunks = self.chunks.borrow();
        let one = chunks.iter().find_map(|(start, data)| {
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
        });
        if one.is_some() {
            return one;
        }
        let end = abs.checked_add(len as u64)?;
        if !Self::gaps(&chunks, abs, end).is_empty() {
            return None;
        }
        let mut out = pool::take(len);
        for (start, data) in chunks.iter() {
            let cs = (*start).max(abs);
            let ce = (start + data.len() as u64).min(end);
            if cs < ce {
                let src = &data[(cs - start) as usize..(ce - start) as usize];
                out[(cs - abs) as usize..(ce - abs) as usize].copy_from_slice(src);
            }
        }
        drop(chunks);
        // Kept as a chunk of its own: a second read of it is a view again,
        // and the buffer goes back to the pool with the others.
        let out = Rc::new(out);
        self.chunks.borrow_mut().push((abs, Rc::clone(&out)));
        Some(Bytes {
            buf: out,
            start: 0,
            end: len,
        })
    }

    /// True when the cache holds every byte of `[s, e)`.
    fn holds(&self, s: u64, e: u64) -> bool {
        Self::gaps(&self.chunks.borrow(), s, e).is_empty()
    }

    /// The parts of `[s, e)` that no cached chunk holds.
    fn gaps(chunks: &[(u64, Rc<Vec<u8>>)], s: u64, e: u64) -> Vec<(u64, u64)> {
        let mut held: Vec<(u64, u64)> = chunks
            .iter()
            .map(|(start, data)| (*start, start + data.len() as u64))
            .filter(|&(cs, ce)| cs < e && ce > s)
            .collect();
        held.sort_unstable();
        let mut out = Vec::new();
        let mut at = s;
        for (cs, ce) in held {
            if cs > at {
                out.push((at, cs.min(e)));
            }
            at = at.max(ce);
            if at >= e {
                break;
            }
        }
        if at < e {
            out.push((at, e));
        }
        out
    }

    fn fetch(&self, start: u64, len: u64) -> Result<()> {
        let mut buf = pool::take(len as usize);
        self.src.read_exact_at(start, &mut buf)?;
        let mut s = self.stats.get();
        s.read_calls += 1;
        s.bytes_read += len;
        self.stats.set(s);
        // Rc<Vec> keeps the buffer where it was read: no copy into a new allocation.
        self.chunks.borrow_mut().push((start, Rc::new(buf)));
        Ok(())
    }

    /// Reads `len` bytes at absolute `abs` for the region `owner`: from the
    /// cache; or, when a planned range holds it, together with the rest of
    /// that region's plan and every shared planned range; or else with one
    /// aligned fetch. Fetches are widened only within `bounds` (the probed
    /// root region), so no byte outside it is ever read.
    fn read_abs(
        &self,
        abs: u64,
        len: usize,
        bounds: (u64, u64),
        owner: (u64, u64),
    ) -> Result<Bytes> {
        if let Some(v) = self.cached(abs, len) {
            return Ok(v);
        }
        let end = abs + len as u64;
        let planned: Vec<Planned> = {
            let mut pending = self.pending.borrow_mut();
            let hit = pending.iter().find(|p| {
                p.bounds == bounds
                    && p.owner.is_none_or(|o| o == owner)
                    && abs < p.end
                    && end > p.start
            });
            match hit.copied() {
                Some(h) => {
                    let (take, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| {
                        p.owner.is_none() || p.owner == h.owner || p.owner == Some(owner)
                    });
                    *pending = keep;
                    take
                }
                None => Vec::new(),
            }
        };
        if !planned.is_empty() {
            let mut ranges: Vec<(u64, u64, (u64, u64))> =
                planned.iter().map(|p| (p.start, p.end, p.bounds)).collect();
            // The read itself joins the pass (a planned range may hold only part of it).
            ranges.push((abs, end, bounds));
            self.fetch_coalesced(ranges)?;
            if let Some(v) = self.cached(abs, len) {
                return Ok(v);
            }
        }
        let fs = (abs - abs % ALIGN).max(bounds.0);
        let fe = end
            .div_ceil(ALIGN)
            .saturating_mul(ALIGN)
            .min(bounds.1)
            .max(end);
        let gaps = Self::gaps(&self.chunks.borrow(), fs, fe);
        if let (Some(first), Some(last)) = (gaps.first(), gaps.last()) {
            self.fetch(first.0, last.1 - first.0)?;
        }
        self.cached(abs, len).ok_or(ProbeError::Truncated {
            offset: abs,
            size: self.src.size(),
        })
    }

    /// Fetches the parts of the absolute ranges `[start, end)` not yet
    /// cached, merging those less than [`COALESCE_GAP`] apart into one call
    /// each, aligned to [`ALIGN`] but never beyond each range's bounds.
    fn fetch_coalesced(&self, ranges: Vec<(u64, u64, (u64, u64))>) -> Result<()> {
        let mut todo: Vec<(u64, u64, (u64, u64))> = Vec::new();
        {
            let chunks = self.chunks.borrow();
            for (s, e, b) in ranges {
                if e > s {
                    todo.extend(
                        Self::gaps(&chunks, s, e)
                            .into_iter()
                            .map(|(s, e)| (s, e, b)),
                    );
                }
            }
        }
        let mut merged = Self::merge(todo);
        if merged.is_empty() {
            return Ok(());
        }
        // Planned ranges of any region that fall within the gap of a call
        // made anyway ride along: more bytes, no more calls, and one call
        // fewer later if that region's plan is needed.
        loop {
            let riders: Vec<Planned> = {
                let mut pending = self.pending.borrow_mut();
                let (ride, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| {
                    merged.iter().any(|&(s, e, b)| {
                        b == p.bounds
                            && p.start <= e.saturating_add(COALESCE_GAP)
                            && p.end.saturating_add(COALESCE_GAP) >= s
                    })
                });
                *pending = keep;
                ride
            };
            if riders.is_empty() {
                break;
            }
            let chunks = self.chunks.borrow();
            merged.extend(riders.iter().flat_map(|p| {
                Self::gaps(&chunks, p.start, p.end)
                    .into_iter()
                    .map(move |(s, e)| (s, e, p.bounds))
            }));
            drop(chunks);
            merged = Self::merge(merged);
        }
        for (s, e, (bs, be)) in merged {
            let s = (s - s % ALIGN).max(bs);
            let e = e.div_ceil(ALIGN).saturating_mul(ALIGN).min(be);
            // Alignment may reach into cached bytes: trim what is held at the ends.
            let gaps = Self::gaps(&self.chunks.borrow(), s, e);
            if let (Some(first), Some(last)) = (gaps.first(), gaps.last()) {
                let (s, e) = (first.0, last.1);
                self.fetch(s, e - s)?;
            }
        }
        Ok(())
    }

    /// Sorts ranges and merges those (with the same bounds) less than
    /// [`COALESCE_GAP`] apart.
    fn merge(mut ranges: Vec<(u64, u64, (u64, u64))>) -> Vec<(u64, u64, (u64, u64))> {
        ranges.sort_unstable_by_key(|&(s, e, b)| (b, s, e));
        let mut merged: Vec<(u64, u64, (u64, u64))> = Vec::new();
        for (s, e, b) in ranges {
            match merged.last_mut() {
                Some(last) if last.2 == b && s <= last.1.saturating_add(COALESCE_GAP) => {
                    last.1 = last.1.max(e)
                }
                _ => merged.push((s, e, b)),
            }
        }
        merged
    }

    /// Adds ranges to the plan, dropping what is already cached or planned.
    fn add_planned(&self, ranges: impl IntoIterator<Item = Planned>) {
        let mut pending = self.pending.borrow_mut();
        for p in ranges {
            let dup = pending
                .iter()
                .any(|q| q.start == p.start && q.end == p.end && q.bounds == p.bounds);
            if p.end > p.start && !dup && !self.holds(p.start, p.end) {
                pending.push(p);
            }
        }
    }

    /// Fetches every shared planned range now (coalesced), leaving the
    /// regions' own plans pending.
    fn fetch_shared(&self) -> Result<()> {
        let shared: Vec<(u64, u64, (u64, u64))> = {
            let mut pending = self.pending.borrow_mut();
            let (take, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.owner.is_none());
            *pending = keep;
            take.into_iter()
                .map(|p| (p.start, p.end, p.bounds))
                .collect()
        };
        self.fetch_coalesced(shared)
    }
}

impl Drop for Reader<'_> {
    /// Hands the read buffers nobody holds any more back to the pool.
    fn drop(&mut self) {
        for (_, buf) in self.chunks.get_mut().drain(..) {
            if let Ok(buf) = Rc::try_unwrap(buf) {
                pool::give(buf);
            }
        }
    }
}

/// A byte range of the source that probers see as a device of its own:
/// the whole disk, or one partition. Offsets are relative to its start.
#[derive(Clone, Copy)]
pub struct Window<'a> {
    reader: &'a Reader<'a>,
    start: u64,
    len: u64,
    /// Absolute `[start, end)` of the region probing started from (the
    /// whole source, or a `--offset/--size` region): reads for this window
    /// may be widened and merged with neighbours up to these bounds.
    root: (u64, u64),
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
                    .read_abs(self.start + offset, len, self.root, self.owner())
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

    /// This window's key in the reader's plan.
    fn owner(&self) -> (u64, u64) {
        (self.start, self.start + self.len)
    }

    /// The given `(offset, len)` ranges as absolute planned ranges, clamped
    /// to the region.
    fn planned(&self, ranges: &[(u64, u64)], owner: Option<(u64, u64)>) -> Vec<Planned> {
        ranges
            .iter()
            .filter(|(off, _)| *off < self.len)
            .map(|&(off, len)| Planned {
                start: self.start + off,
                end: self.start + off.saturating_add(len).min(self.len),
                bounds: self.root,
                owner,
            })
            .filter(|p| p.end > p.start)
            .collect()
    }

    /// The bytes at `offset` if they are cached, without any I/O: for
    /// planning reads that depend on a superblock already in memory.
    pub fn read_cached(&self, offset: u64, len: usize) -> Option<Bytes> {
        let end = offset.checked_add(len as u64)?;
        if end > self.len {
            return None;
        }
        self.reader.cached(self.start + offset, len)
    }

    /// Fetches the given `(offset, len)` ranges of the region (clamped to it)
    /// in as few calls as possible, so the probers that follow read from
    /// memory. When anything has to be read, every shared planned range
    /// ([`Window::plan_shared`]) joins the same pass. See
    /// [`crate::sig::read_plan`].
    pub fn prefetch(&self, ranges: &[(u64, u64)]) -> Result<()> {
        let mine = self.planned(ranges, None);
        if mine.iter().all(|p| self.reader.holds(p.start, p.end)) {
            return Ok(());
        }
        self.reader.add_planned(mine);
        self.reader.fetch_shared()
    }

    /// Records ranges that will probably be read, without reading them yet:
    /// the first read that needs one of them fetches all of them (and every
    /// shared planned range) in a few coalesced calls. Probing stops early
    /// for RAID/LVM/LUKS members, so the far parts of the plan are only paid
    /// for when a prober gets there.
    pub fn plan(&self, ranges: &[(u64, u64)]) {
        let owner = Some(self.owner());
        self.reader.add_planned(self.planned(ranges, owner));
    }

    /// Like [`Window::plan`], but the ranges are fetched with whichever
    /// region's plan is fetched first: for ranges that will be needed
    /// whatever this region turns out to hold (the first phase of each
    /// partition once the table is known, ranges derived from a superblock).
    pub fn plan_shared(&self, ranges: &[(u64, u64)]) {
        self.reader.add_planned(self.planned(ranges, None));
    }

    /// Fetches every shared planned range now, in as few calls as possible.
    pub fn fetch_shared(&self) -> Result<()> {
        self.reader.fetch_shared()
    }

    /// A sub-region (a partition), relative to this one.
    pub fn subregion(&self, offset: u64, len: u64) -> Result<Window<'a>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Window {
                reader: self.reader,
                start: self.start + offset,
                len,
                root: self.root,
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

    #[test]
    fn shared_plans_join_the_first_fetch_and_neighbours_ride_along() {
        let data: Vec<u8> = (0..16u32 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
        let src = MemSource::new(data.clone());
        let r = Reader::new(&src);
        let w = r.whole();
        let p1 = w.subregion(1 << 20, 4 << 20).unwrap();
        let p2 = w.subregion(5 << 20, 4 << 20).unwrap();
        // The disk's own second phase, two partitions' first phases (shared),
        // and p2's own second phase, 32 KiB past p1's first phase's end.
        w.plan(&[(512 * 1024, 4096)]);
        p1.plan_shared(&[(0, 8192), ((4 << 20) - 8192, 8192)]);
        p2.plan_shared(&[(0, 8192)]);
        p2.plan(&[(64 * 1024, 4096)]);
        assert_eq!(r.stats().read_calls, 0, "planning reads nothing");
        assert!(w.read_cached(512 * 1024, 16).is_none());
        // The disk's plan is needed: the shared ranges come with it; p1's
        // tail and p2's head touch, and p2's own range rides along.
        assert_eq!(
            w.read(512 * 1024, 16).unwrap(),
            data[512 * 1024..512 * 1024 + 16]
        );
        assert_eq!(r.stats().read_calls, 3, "{:?}", r.stats());
        for (win, off) in [
            (&p1, 0u64),
            (&p1, (4 << 20) - 100),
            (&p2, 0),
            (&p2, 64 * 1024),
        ] {
            let abs = (win.start() + off) as usize;
            assert_eq!(win.read_cached(off, 100).unwrap(), data[abs..abs + 100]);
        }
        assert_eq!(r.stats().read_calls, 3);
        // A read across two chunks (p1's tail into p2's head) is served by a copy.
        let abs = (5 << 20) - 50;
        assert_eq!(
            w.read(abs, 100).unwrap(),
            data[abs as usize..abs as usize + 100]
        );
        assert_eq!(r.stats().read_calls, 3);
    }

    #[test]
    fn a_subregion_read_may_widen_to_the_disk_but_not_past_a_probed_region() {
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 241) as u8).collect();
        let src = MemSource::new(data.clone());
        let r = Reader::new(&src);
        // A probed region (blkid --offset/--size) of 10000 bytes at 5000:
        // nothing outside it is read, even when aligning.
        let w = r.region(5000, 10_000).unwrap();
        w.plan(&[(0, 100)]);
        assert_eq!(w.read(0, 100).unwrap(), data[5000..5100]);
        // [5000, 8192): aligned at the end only; the start stays at the region's.
        assert_eq!(r.stats().bytes_read, 3192, "{:?}", r.stats());
        // A partition of the whole disk: its read is aligned within the disk
        // ([4096, 8192), starting before the partition).
        let r = Reader::new(&src);
        let p = r.whole().subregion(5000, 10_000).unwrap();
        assert_eq!(p.read(0, 100).unwrap(), data[5000..5100]);
        assert_eq!(r.stats().bytes_read, 4096, "{:?}", r.stats());
        assert_eq!(r.whole().read_cached(4096, 4096).unwrap(), data[4096..8192]);
    }

    #[test]
    fn read_buffers_are_reused_by_the_next_reader() {
        let src = MemSource::new((0..1u32 << 20).map(|i| (i % 239) as u8).collect());
        let first = {
            let r = Reader::new(&src);
            r.whole().prefetch(&[(0, 200_000)]).unwrap();
            let p = r.chunks.borrow()[0].1.as_ptr();
            p
        };
        let r = Reader::new(&src);
        r.whole().prefetch(&[(8192, 100_000)]).unwrap();
        assert_eq!(
            r.chunks.borrow()[0].1.as_ptr(),
            first,
            "the buffer was reused"
        );
        let want: Vec<u8> = (8192..8292u32).map(|i| (i % 239) as u8).collect();
        assert_eq!(r.whole().read(8192, 100).unwrap(), want);
        assert_eq!(r.stats().read_calls, 1);
    }
}
