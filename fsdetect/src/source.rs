//! Where bytes come from: image files, block devices, or memory (tests, fuzzing).
//!
//! Everything is opened read-only. Probing must never be able to write, so no
//! source here even holds a writable handle.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
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

/// An image file or block device opened read-only.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    size: u64,
    sector_size: u32,
    is_block_device: bool,
}

/// `_IOR(0x12, 114, size_t)`: the size of a block device in bytes.
const BLKGETSIZE64: u64 = 0x8008_1272;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

/// Asks the kernel for a block device's size in bytes.
fn block_device_size(file: &File) -> io::Result<u64> {
    use std::os::unix::io::AsRawFd;
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
fn sysfs_logical_block_size(rdev: u64) -> Option<u32> {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
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

impl FileSource {
    /// Opens an image file or block device read-only. Image files use 512-byte
    /// logical sectors (as blkid does); use [`FileSource::with_sector_size`] for
    /// images of 4K-sector disks.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ProbeError::NotFound(path.clone()),
                io::ErrorKind::PermissionDenied => ProbeError::PermissionDenied(path.clone()),
                _ => ProbeError::Open {
                    path: path.clone(),
                    source: e,
                },
            })?;
        let meta = file.metadata().map_err(|e| ProbeError::Open {
            path: path.clone(),
            source: e,
        })?;
        let ft = meta.file_type();
        if ft.is_block_device() {
            let size = block_device_size(&file).map_err(|e| ProbeError::Open {
                path: path.clone(),
                source: e,
            })?;
            let sector_size = sysfs_logical_block_size(meta.rdev()).unwrap_or(512);
            Ok(Self {
                file,
                path,
                size,
                sector_size,
                is_block_device: true,
            })
        } else if ft.is_file() {
            Ok(Self {
                file,
                path,
                size: meta.len(),
                sector_size: 512,
                is_block_device: false,
            })
        } else {
            Err(ProbeError::NotBlockOrFile(path))
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
}

impl BlockSource for FileSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(ProbeError::Truncated {
                        offset: offset + done as u64,
                        size: self.size,
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
