//! Where bytes come from: image files, block devices, or memory (tests, fuzzing).
//!
//! Everything is opened read-only. Probing must never be able to write, so no
//! source here even holds a writable handle.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{ProbeError, Result};

/// A read-only, random-access view of a disk or image.
///
/// `read_exact_at` must fill the whole buffer or fail; sources report short
/// reads inside their advertised size as [`ProbeError::Truncated`].
pub trait BlockSource {
    /// Fills `buf` with the bytes at absolute `offset`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical sector size in bytes (512 or 4096 in practice). Partition tables
    /// count in these units, so a wrong value misreads GPT/MBR.
    fn logical_sector_size(&self) -> u32;
}

/// Any source, recording every read it serves as (offset, length): to show
/// *which* reads a probe made, where [`crate::IoStats`] only counts them
/// (benchmarks, the `trace_reads` example, read-plan tests).
#[derive(Debug)]
pub struct TracedSource<S> {
    inner: S,
    reads: std::cell::RefCell<Vec<(u64, usize)>>,
}

impl<S: BlockSource> TracedSource<S> {
    /// Wraps `inner`, with no reads recorded yet.
    pub fn new(inner: S) -> Self {
        TracedSource {
            inner,
            reads: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// The reads served so far, in order.
    pub fn reads(&self) -> Vec<(u64, usize)> {
        self.reads.borrow().clone()
    }

    /// Forgets the reads recorded so far.
    pub fn clear(&self) {
        self.reads.borrow_mut().clear();
    }
}

impl<S: BlockSource> BlockSource for TracedSource<S> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.reads.borrow_mut().push((offset, buf.len()));
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
}

/// How a [`FileSource`] reads a block device.
///
/// A probe makes a few small reads far apart. With the kernel's read-ahead
/// each of them can pull in `read_ahead_kb` of the disk: an iSCSI LUN whose
/// target reports an 8 MiB optimal I/O size gets `read_ahead_kb=16384`, and
/// 22 reads became 16 MiB on the wire. blkid switches read-ahead off the
/// same way ([`ReadMode::NoReadAhead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Through the page cache with read-ahead off (`POSIX_FADV_RANDOM`): the
    /// device gets what was asked for, rounded to pages. The default.
    #[default]
    NoReadAhead,
    /// `O_DIRECT` with aligned bounce buffers: no page cache at all, each
    /// read rounded out to the logical block size. Image files are read
    /// as with [`ReadMode::NoReadAhead`] (tmpfs has no `O_DIRECT`).
    Direct,
    /// Through the page cache with the kernel's read-ahead, as a plain
    /// `open(2)` does: only to measure what switching it off saves.
    ReadAhead,
}

/// An image file or block device opened read-only.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    size: u64,
    sector_size: u32,
    is_block_device: bool,
    /// `(major, minor)` of a block device.
    devno: Option<(u32, u32)>,
    /// Reads go through aligned bounce buffers (the file has `O_DIRECT`).
    direct: bool,
}

/// `_IOR(0x12, 114, size_t)`: the size of a block device in bytes.
const BLKGETSIZE64: u64 = 0x8008_1272;

/// `POSIX_FADV_RANDOM` (the same value on every Linux architecture).
const POSIX_FADV_RANDOM: i32 = 1;

/// `O_DIRECT`, which Linux numbers differently per architecture.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_DIRECT: i32 = 0o200000;
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64"))]
const O_DIRECT: i32 = 0o400000;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const O_DIRECT: i32 = 0o100000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64"
)))]
const O_DIRECT: i32 = 0o40000;

/// Memory alignment of `O_DIRECT` buffers: a page satisfies every device's
/// DMA alignment.
const DIRECT_ALIGN: usize = 4096;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    // off_t is 64 bits on the 64-bit Linux targets this crate is built for.
    fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
}

/// Switches the kernel's read-ahead off for reads through this open file
/// (not for other openers of the device), as blkid does.
fn advise_random(file: &File) -> io::Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is owned
    // by `file` and open for the duration of the call.
    let rc = unsafe { posix_fadvise(file.as_raw_fd(), 0, 0, POSIX_FADV_RANDOM) };
    // posix_fadvise returns the error number instead of setting errno.
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Asks the kernel for a block device's size in bytes.
fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes exactly one u64 through the pointer, which
    // points at a live, properly aligned u64 for the duration of the call; the
    // fd is owned by `file` and open.
    let rc = unsafe { ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Reads the logical block size of a block device from sysfs (a partition
/// inherits its disk's queue limits, one directory up).
fn sysfs_logical_block_size((major, minor): (u32, u32)) -> Option<u32> {
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    for rel in ["queue/logical_block_size", "../queue/logical_block_size"] {
        if let Ok(text) = std::fs::read_to_string(base.join(rel)) {
            if let Ok(v) = text.trim().parse::<u32>() {
                if v >= 512 && v.is_power_of_two() {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// Splits a `st_rdev` into (major, minor) as glibc's `gnu_dev_major/minor` do.
fn split_devno(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl FileSource {
    /// Opens an image file or block device read-only, with read-ahead off
    /// ([`ReadMode::NoReadAhead`]). Image files use 512-byte logical sectors
    /// (as blkid does); use [`FileSource::with_sector_size`] for images of
    /// 4K-sector disks.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, ReadMode::NoReadAhead)
    }

    /// Opens read-only and reads block devices the way `mode` says.
    pub fn open_with(path: impl AsRef<Path>, mode: ReadMode) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open_err = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => ProbeError::NotFound(path.clone()),
            io::ErrorKind::PermissionDenied => ProbeError::PermissionDenied(path.clone()),
            _ => ProbeError::Open {
                path: path.clone(),
                source: e,
            },
        };
        // O_DIRECT only for block devices: look before opening.
        let direct = mode == ReadMode::Direct
            && std::fs::metadata(&path)
                .map_err(open_err)?
                .file_type()
                .is_block_device();
        let mut opts = OpenOptions::new();
        opts.read(true);
        if direct {
            opts.custom_flags(O_DIRECT);
        }
        let file = opts.open(&path).map_err(open_err)?;
        let meta = file.metadata().map_err(|e| ProbeError::Open {
            path: path.clone(),
            source: e,
        })?;
        let ft = meta.file_type();
        if !ft.is_block_device() && !ft.is_file() {
            return Err(ProbeError::NotBlockOrFile(path));
        }
        if mode != ReadMode::ReadAhead && !direct {
            // Only a hint: a source that refuses it is still read correctly,
            // just with more bytes, so a failure does not stop the probe.
            let _ = advise_random(&file);
        }
        if ft.is_block_device() {
            let size = block_device_size(&file).map_err(|e| ProbeError::Open {
                path: path.clone(),
                source: e,
            })?;
            let devno = split_devno(meta.rdev());
            let sector_size = sysfs_logical_block_size(devno).unwrap_or(512);
            Ok(Self {
                file,
                path,
                size,
                sector_size,
                is_block_device: true,
                devno: Some(devno),
                direct,
            })
        } else {
            Ok(Self {
                file,
                path,
                size: meta.len(),
                sector_size: 512,
                is_block_device: false,
                devno: None,
                direct: false,
            })
        }
    }

    /// Overrides the logical sector size (for images of 4K-sector disks).
    pub fn with_sector_size(mut self, sector_size: u32) -> Self {
        self.sector_size = sector_size;
        self
    }

    /// The path this source was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a block device, false for an image file.
    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    /// `(major, minor)` of a block device (`None` for an image file): where
    /// to look in `/sys/dev/block/` for its partition entry.
    pub fn devno(&self) -> Option<(u32, u32)> {
        self.devno
    }

    /// Serves a read through an aligned bounce buffer (`O_DIRECT` needs the
    /// offset, the length and the memory aligned to the logical block size).
    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let align = u64::from(self.sector_size.max(512));
        let want_end = offset.saturating_add(buf.len() as u64);
        let start = offset - offset % align;
        let end = want_end
            .div_ceil(align)
            .saturating_mul(align)
            .min(self.size);
        if end < want_end {
            return Err(ProbeError::Truncated {
                offset: end,
                size: self.size,
            });
        }
        let len = (end - start) as usize;
        let mut raw = vec![0u8; len + DIRECT_ALIGN];
        let pad = raw.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = raw.get_mut(pad..pad + len).ok_or(ProbeError::Read {
            offset,
            len: buf.len(),
            source: io::Error::other("cannot align an O_DIRECT buffer"),
        })?;
        read_fully(&self.file, start, aligned, self.size)?;
        let skip = (offset - start) as usize;
        buf.copy_from_slice(&aligned[skip..skip + buf.len()]);
        Ok(())
    }
}

/// `read_at` until `buf` is full; a short read inside the advertised size
/// is [`ProbeError::Truncated`].
fn read_fully(file: &File, offset: u64, buf: &mut [u8], size: u64) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(ProbeError::Truncated {
                    offset: offset + done as u64,
                    size,
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ProbeError::Read {
                    offset,
                    len: buf.len(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

impl BlockSource for FileSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.direct {
            self.read_direct(offset, buf)
        } else {
            read_fully(&self.file, offset, buf, self.size)
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn logical_sector_size(&self) -> u32 {
        self.sector_size
    }
}

/// Bytes in memory: for tests, fuzzing and benchmarks of the parsers alone.
#[derive(Debug, Clone)]
pub struct MemSource {
    data: Vec<u8>,
    sector_size: u32,
}

impl MemSource {
    /// Wraps `data` as a disk with 512-byte sectors.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            sector_size: 512,
        }
    }

    /// Same, with another logical sector size.
    pub fn with_sector_size(data: Vec<u8>, sector_size: u32) -> Self {
        Self { data, sector_size }
    }
}

impl BlockSource for MemSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.data.len() as u64;
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(ProbeError::Truncated { offset, size })?;
        if end > size {
            return Err(ProbeError::Truncated {
                offset: size.max(offset),
                size,
            });
        }
        // Both bounds were checked against the length above.
        buf.copy_from_slice(&self.data[offset as usize..end as usize]);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn logical_sector_size(&self) -> u32 {
        self.sector_size
    }
}
