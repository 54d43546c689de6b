//! Whatever the bytes, probing never panics and never reads outside the
//! probed region: random images (with magic numbers planted where each format
//! looks for them) go through `probe_disk`, `probe_region`, every prober of
//! `sig::IDINFOS`, `table::read_table` and the ZFS nvlist / LVM label parsers,
//! with 512- and 4096-byte sectors, on a source that panics on any read
//! outside the allowed range. Inputs that once crashed a fuzzer live in
//! `tests/fuzz-regressions/` and are replayed the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::path::PathBuf;

use fsdetect::{probe_disk, probe_region, sig, table, BlockSource, MemSource, Reader};
use proptest::prelude::*;

/// A memory source that panics on any read outside `[lo, hi)`, and counts reads.
struct Checked {
    inner: MemSource,
    lo: u64,
    hi: u64,
    reads: Cell<u64>,
}

impl Checked {
    fn new(data: Vec<u8>, sector: u32, lo: u64, hi: u64) -> Self {
        Self {
            inner: MemSource::with_sector_size(data, sector),
            lo,
            hi,
            reads: Cell::new(0),
        }
    }
}

impl BlockSource for Checked {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> fsdetect::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        assert!(
            offset >= self.lo && end.is_some_and(|e| e <= self.hi),
            "read of {} bytes at {offset} outside the allowed [{}, {})",
            buf.len(),
            self.lo,
            self.hi
        );
        self.reads.set(self.reads.get() + 1);
        self.inner.read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
}

/// Magic numbers of every format the probers know, planted by the strategies.
const MAGICS: &[&[u8]] = &[
    b"\x55\xaa",                         // MBR boot signature (510)
    b"EFI PART",                         // GPT header (LBA 1, last LBA)
    b"LABELONE",                         // LVM2 label (sector 0..3)
    b"LVM2 001",                         // LVM2 label type
    b"LUKS\xba\xbe",                     // LUKS1/2 primary
    b"SKUL\xba\xbe",                     // LUKS2 secondary
    b"\xfc\x4e\x2b\xa9",                 // md superblock, little endian
    b"\xa9\x2b\x4e\xfc",                 // md 0.90, big endian
    b"XFSB",                             // xfs
    b"\x53\xef",                         // ext2/3/4 (1080)
    b"\xc0\x3b\x39\x98",                 // jbd journal block
    b"_BHRfS_M",                         // btrfs (65536+64)
    b"hsqs",                             // squashfs LE
    b"sqsh",                             // squashfs BE
    b"\x01CD001\x01",                    // iso9660 primary descriptor (32768)
    b"\xffCD001\x01",                    // iso9660 terminator
    b"NTFS    ",                         // ntfs OEM id (3)
    b"FAT32   ",                         // vfat (82)
    b"FAT16   ",                         // vfat (54)
    b"MSWIN4.1",                         // vfat OEM
    b"mkfs.fat",                         // vfat OEM
    b"SWAPSPACE2",                       // swap (pagesize - 10)
    b"SWAP-SPACE",                       // old swap
    b"\x0c\xb1\xba\x00\x00\x00\x00\x00", // ZFS uberblock, little endian
    b"\x00\x00\x00\x00\x00\xba\xb1\x0c", // ZFS uberblock, big endian
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x01\x00\x00\x00\x00\x00\x00\x00",
];

/// Offsets from the start of a region where formats keep magic numbers or
/// the fields right after them.
const HEAD_ANCHORS: &[u64] = &[
    0, 3, 11, 36, 54, 82, 446, 510, 512, 520, 536, 1024, 1048, 1080, 1120, 2048, 3072, 4086, 4096,
    8182, 8192, 16374, 32768, 32769, 34816, 65526, 65536, 65600, 131072, 139264, 262144,
];

/// Where a format looks relative to the end of a region of `size` bytes.
fn tail_anchor(size: u64, which: usize) -> Option<u64> {
    let kib = 1024u64;
    match which % 7 {
        0 => size.checked_sub(512),
        1 => size.checked_sub(8 * kib),
        2 => size.checked_sub(4 * kib),
        3 => (size & !(64 * kib - 1)).checked_sub(64 * kib), // md 0.90
        4 => (size & !(256 * kib - 1)).checked_sub(512 * kib), // ZFS L2
        5 => (size & !(256 * kib - 1)).checked_sub(256 * kib), // ZFS L3
        _ => size.checked_sub(2 * kib),
    }
}

/// What to write at a planted location.
#[derive(Debug, Clone)]
enum Payload {
    Magic(usize),
    Bytes(Vec<u8>),
    /// A magic followed by random bytes (the fields that come after it).
    MagicThen(usize, Vec<u8>),
}

#[derive(Debug, Clone)]
struct Patch {
    from_end: bool,
    anchor: usize,
    delta: u16,
    payload: Payload,
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (0..MAGICS.len()).prop_map(Payload::Magic),
        proptest::collection::vec(any::<u8>(), 1..96).prop_map(Payload::Bytes),
        (
            0..MAGICS.len(),
            proptest::collection::vec(any::<u8>(), 1..256)
        )
            .prop_map(|(m, v)| Payload::MagicThen(m, v)),
    ]
}

fn patch() -> impl Strategy<Value = Patch> {
    (
        any::<bool>(),
        0usize..64,
        prop_oneof![Just(0u16), 0u16..600],
        payload(),
    )
        .prop_map(|(from_end, anchor, delta, payload)| Patch {
            from_end,
            anchor,
            delta,
            payload,
        })
}

/// Background of an image: random, zeros or 0xff (zeros get deeper into
/// probers whose checks are "field must be zero").
#[derive(Debug, Clone, Copy)]
enum Fill {
    Random(u64),
    Zero,
    Ones,
}

fn image_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..600,
        Just(4096u64),
        4097u64..70_000,
        Just(1u64 << 20),
        (1u64 << 20) + 1..(1u64 << 20) + 70_000,
        Just(1440 * 1024),
        Just(1440 * 1024 + 512),
    ]
}

fn fill() -> impl Strategy<Value = Fill> {
    prop_oneof![
        any::<u64>().prop_map(Fill::Random),
        Just(Fill::Zero),
        Just(Fill::Ones)
    ]
}

/// Builds the image: background, then every patch that fits.
fn build(size: u64, fill: Fill, patches: &[Patch]) -> Vec<u8> {
    let mut data = match fill {
        Fill::Zero => vec![0u8; size as usize],
        Fill::Ones => vec![0xffu8; size as usize],
        Fill::Random(seed) => {
            let mut x = seed | 1;
            let mut v = Vec::with_capacity(size as usize + 8);
            while v.len() < size as usize {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.truncate(size as usize);
            v
        }
    };
    for p in patches {
        let base = if p.from_end {
            tail_anchor(size, p.anchor)
        } else {
            Some(HEAD_ANCHORS[p.anchor % HEAD_ANCHORS.len()])
        };
        let Some(at) = base.map(|b| b + u64::from(p.delta)) else {
            continue;
        };
        let bytes: Vec<u8> = match &p.payload {
            Payload::Magic(m) => MAGICS[*m].to_vec(),
            Payload::Bytes(b) => b.clone(),
            Payload::MagicThen(m, b) => [MAGICS[*m], b.as_slice()].concat(),
        };
        let at = at as usize;
        if at < data.len() {
            let n = bytes.len().min(data.len() - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
        }
    }
    data
}

/// Everything a fuzz target does with one input, on a checked source.
fn exercise(data: &[u8]) {
    let size = data.len() as u64;
    let _ = sig::zfs::parse_nvlist(data);
    let _ = sig::lvm2::parse_label(data);
    for sector in [512u32, 4096] {
        let src = Checked::new(data.to_vec(), sector, 0, size);
        let _ = probe_disk(&src);
        let reader = Reader::new(&src);
        let _ = table::read_table(&reader.whole());
        for info in sig::IDINFOS {
            let _ = (info.probe)(&reader.whole());
        }
    }
    // A region inside the data, as the fuzz targets use, and as blkid -O/-S.
    if size > 1024 {
        let (off, len) = (512, size - 1024);
        exercise_region(data, off, len);
    }
}

fn exercise_region(data: &[u8], off: u64, len: u64) {
    for sector in [512u32, 4096] {
        let src = Checked::new(data.to_vec(), sector, off, off + len);
        let _ = probe_region(&src, off, len);
        let reader = Reader::new(&src);
        let w = reader.region(off, len).unwrap();
        let _ = table::read_table(&w);
        for info in sig::IDINFOS {
            let _ = (info.probe)(&w);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn whole_disk_never_panics_nor_reads_outside(
        size in image_size(),
        fill in fill(),
        patches in proptest::collection::vec(patch(), 0..12),
    ) {
        let data = build(size, fill, &patches);
        exercise(&data);
    }

    #[test]
    fn any_region_never_panics_nor_reads_outside(
        size in image_size(),
        fill in fill(),
        patches in proptest::collection::vec(patch(), 0..12),
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let data = build(size, fill, &patches);
        let n = data.len() as u64;
        let off = if n == 0 { 0 } else { a % n };
        let len = if n - off == 0 { 0 } else { b % (n - off + 1) };
        exercise_region(&data, off, len);
    }
}

/// A large device that is zeros except for its first and last `EDGE` bytes:
/// lets probers with a minimum device size (ZFS: 64 MiB, which libFuzzer
/// inputs never reach) see planted structures at both ends, cheaply. Panics
/// on any read past its size.
struct Sparse {
    size: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    sector: u32,
}

/// Bytes kept at each end of a [`Sparse`] device: both ZFS label pairs.
const EDGE: u64 = 1 << 20;

impl BlockSource for Sparse {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> fsdetect::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        assert!(
            end.is_some_and(|e| e <= self.size),
            "read of {} bytes at {offset} past the {}-byte device",
            buf.len(),
            self.size
        );
        buf.fill(0);
        let (start, end) = (offset, offset + buf.len() as u64);
        // Overlap with the head [0, EDGE).
        if start < EDGE {
            let e = end.min(EDGE);
            buf[..(e - start) as usize].copy_from_slice(&self.head[start as usize..e as usize]);
        }
        // Overlap with the tail [size - EDGE, size).
        let tail_start = self.size - EDGE;
        if end > tail_start {
            let s = start.max(tail_start);
            let dst = (s - start) as usize;
            let n = (end - s) as usize;
            let src = (s - tail_start) as usize;
            buf[dst..dst + n].copy_from_slice(&self.tail[src..src + n]);
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn logical_sector_size(&self) -> u32 {
        self.sector
    }
}

/// Offsets inside a ZFS label (256 KiB) where the prober looks: the nvlist
/// (16 KiB in) and the uberblock ring (128 KiB in), a few slots of it.
const ZFS_IN_LABEL: &[u64] = &[
    0,
    16 * 1024,
    16 * 1024 + 4,
    128 * 1024,
    129 * 1024,
    130 * 1024,
    160 * 1024,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn large_sparse_devices_never_panic(
        extra in prop_oneof![Just(0u64), 1u64..(4 << 20)],
        sector in prop_oneof![Just(512u32), Just(4096u32)],
        seed in any::<u64>(),
        random_edges in any::<bool>(),
        patches in proptest::collection::vec(
            (0usize..4, 0usize..ZFS_IN_LABEL.len(), 0u16..64, payload()), 0..16),
    ) {
        let size = (64 << 20) + extra;
        let fill = if random_edges { Fill::Random(seed) } else { Fill::Zero };
        let mut head = build(EDGE, fill, &[]);
        let mut tail = build(EDGE, fill, &[]);
        // Labels L0/L1 at 0 and 256 KiB, L2/L3 at the 256 KiB-aligned end.
        let aligned = size & !((256 << 10) - 1);
        for (label, slot, delta, payload) in &patches {
            let abs = match label {
                0 => 0,
                1 => 256 << 10,
                2 => aligned - (512 << 10),
                _ => aligned - (256 << 10),
            } + ZFS_IN_LABEL[*slot] + u64::from(*delta);
            let bytes: Vec<u8> = match payload {
                Payload::Magic(m) => MAGICS[*m].to_vec(),
                Payload::Bytes(b) => b.clone(),
                Payload::MagicThen(m, b) => [MAGICS[*m], b.as_slice()].concat(),
            };
            let (buf, at) = if abs < EDGE {
                (&mut head, abs)
            } else {
                (&mut tail, abs - (size - EDGE))
            };
            let at = at as usize;
            if at < buf.len() {
                let n = bytes.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&bytes[..n]);
            }
        }
        let src = Sparse { size, head, tail, sector };
        let _ = probe_disk(&src);
        let reader = Reader::new(&src);
        for info in sig::IDINFOS {
            let _ = (info.probe)(&reader.whole());
        }
    }
}

#[test]
fn the_checking_source_catches_reads_outside_its_range() {
    let src = Checked::new(vec![0u8; 4096], 512, 1024, 2048);
    let mut buf = [0u8; 16];
    src.read_exact_at(1024, &mut buf).unwrap();
    let outside = std::panic::catch_unwind(|| {
        let mut buf = [0u8; 16];
        let src = Checked::new(vec![0u8; 4096], 512, 1024, 2048);
        let _ = src.read_exact_at(2040, &mut buf);
    });
    assert!(outside.is_err(), "a read past the allowed range must panic");
    assert_eq!(src.reads.get(), 1);
}

#[test]
fn probe_region_reads_only_inside_its_region() {
    // An ext-like magic right outside the region on both sides must not be read.
    let mut data = vec![0u8; 3 << 20];
    data[1080..1082].copy_from_slice(b"\x53\xef");
    let off = 1 << 20;
    let src = Checked::new(data, 512, off, 2 << 20);
    let report = probe_region(&src, off, 1 << 20).unwrap();
    assert!(src.reads.get() > 0, "the region was not read at all");
    assert_eq!(report.io.read_calls, src.reads.get());
}

/// Inputs that crashed a fuzzer once; each file is replayed through everything.
#[test]
fn fuzz_regressions_replay() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"));
    for path in entries {
        let data = std::fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        exercise(&data);
    }
}

#[test]
fn the_sparse_device_serves_its_edges_and_zeros_between() {
    let size = (64 << 20) + 4096;
    let src = Sparse {
        size,
        head: vec![1u8; EDGE as usize],
        tail: vec![2u8; EDGE as usize],
        sector: 512,
    };
    let mut buf = vec![9u8; 8];
    src.read_exact_at(EDGE - 4, &mut buf).unwrap();
    assert_eq!(buf, [1, 1, 1, 1, 0, 0, 0, 0]);
    src.read_exact_at(size - EDGE - 4, &mut buf).unwrap();
    assert_eq!(buf, [0, 0, 0, 0, 2, 2, 2, 2]);
    let past = std::panic::catch_unwind(|| {
        let mut b = [0u8; 2];
        let _ = src.read_exact_at(size - 1, &mut b);
    });
    assert!(past.is_err(), "a read past the end must panic");
}
