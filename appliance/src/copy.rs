//! Making image copies: a reflink (FICLONE) when the file system can share
//! extents (XFS with `reflink=1`, btrfs), otherwise a sparse-aware full copy.
//!
//! The copy is written to a temporary name beside the destination and renamed
//! into place only when complete, so a crash never leaves a half image under
//! the real name.

use crate::error::Error;
use rustix::fs::SeekFrom;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom as StdSeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Extents shared with the source (thin, constant time).
    Reflink,
    /// Every data byte copied (holes and zero blocks kept sparse).
    FullCopy,
}

/// Result of [`copy_image`].
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    /// Reflink or full copy.
    pub mode: CopyMode,
    /// Size of the image in bytes.
    pub size: u64,
    /// Why a reflink was not possible (set when `mode` is `FullCopy`).
    pub reflink_error: Option<String>,
}

const CHUNK: usize = 1 << 20;

/// Copies `src` (a regular file or a block device) to the new file `dst`.
/// Tries FICLONE first when `src` is a regular file; falls back to a
/// sparse-aware copy. `dst` must not exist.
pub fn copy_image(src: &Path, dst: &Path) -> Result<CopyOutcome, Error> {
    let input = File::open(src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
    copy_from(&input, src, dst)
}

/// Copies the already opened `input` (a regular file or a block device;
/// `label` names it in errors) to the new file `dst`, which is created with
/// mode 0600 — never readable by other users, whatever the umask. The data
/// is written to `dst` with the extension `partial` and renamed into place
/// when complete; on failure the partial file is removed.
pub fn copy_from(input: &File, label: &Path, dst: &Path) -> Result<CopyOutcome, Error> {
    let src = label;
    if dst.exists() {
        return Err(Error::io(
            format!("creating {}", dst.display()),
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "destination exists"),
        ));
    }
    let meta = input
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", src.display()), e))?;
    // Works for regular files and block devices alike.
    let size = (&*input)
        .seek(StdSeekFrom::End(0))
        .map_err(|e| Error::io(format!("finding the size of {}", src.display()), e))?;
    let tmp = dst.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let result = (|| {
        let reflink_error = if meta.is_file() {
            match rustix::fs::ioctl_ficlone(&out, input) {
                Ok(()) => {
                    return Ok(CopyOutcome {
                        mode: CopyMode::Reflink,
                        size,
                        reflink_error: None,
                    })
                }
                Err(e) => Some(reflink_reason(e)),
            }
        } else {
            Some("source is not a regular file".to_string())
        };
        sparse_copy(input, &out, size, src, &tmp)?;
        Ok(CopyOutcome {
            mode: CopyMode::FullCopy,
            size,
            reflink_error,
        })
    })();
    let finish = result.and_then(|o| {
        out.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, dst).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), dst.display()),
                e,
            )
        })?;
        Ok(o)
    });
    if finish.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    finish
}

fn reflink_reason(e: Errno) -> String {
    match e {
        Errno::OPNOTSUPP | Errno::INVAL | Errno::NOTTY => format!(
            "the data directory's file system does not support reflinks ({e}); \
             use XFS made with -m reflink=1 or btrfs for thin clones"
        ),
        Errno::XDEV => format!("source and destination are on different file systems ({e})"),
        _ => format!("reflink failed: {e}"),
    }
}

/// Copies the data ranges of `input` (found with SEEK_DATA/SEEK_HOLE where
/// supported, else the whole range) and skips all-zero chunks, so holes stay
/// holes.
fn sparse_copy(input: &File, out: &File, size: u64, src: &Path, dst: &Path) -> Result<(), Error> {
    out.set_len(size)
        .map_err(|e| Error::io(format!("sizing {}", dst.display()), e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let (start, end) = match data_range(input, pos, size) {
            Some(r) => r,
            None => break,
        };
        let mut off = start;
        while off < end {
            let want = ((end - off) as usize).min(CHUNK);
            let n = input
                .read_at(&mut buf[..want], off)
                .map_err(|e| Error::io(format!("reading {} at {off}", src.display()), e))?;
            if n == 0 {
                return Err(Error::io(
                    format!("reading {} at {off}", src.display()),
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short image"),
                ));
            }
            if buf[..n].iter().any(|b| *b != 0) {
                out.write_all_at(&buf[..n], off)
                    .map_err(|e| Error::io(format!("writing {} at {off}", dst.display()), e))?;
            }
            off += n as u64;
        }
        pos = end;
    }
    Ok(())
}

/// The next `[start, end)` data range at or after `pos`, or `None` when only
/// a hole remains. Falls back to "all data" where SEEK_DATA is unsupported.
fn data_range(f: &File, pos: u64, size: u64) -> Option<(u64, u64)> {
    match rustix::fs::seek(f, SeekFrom::Data(pos)) {
        Ok(start) if start >= size => None,
        Ok(start) => {
            let end = rustix::fs::seek(f, SeekFrom::Hole(start)).unwrap_or(size);
            Some((start, end.min(size)))
        }
        Err(Errno::NXIO) => None,
        Err(_) => Some((pos, size)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_full_copy_keeps_bytes_and_holes() {
        // /dev/shm is tmpfs: no reflink, but SEEK_DATA works.
        let dir = std::env::temp_dir().join(format!("gm-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.img");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"world", 40 << 20).unwrap();
        drop(f);
        let dst = dir.join("dst.img");
        let o = copy_image(&src, &dst).unwrap();
        assert_eq!(o.size, 64 << 20);
        let a = std::fs::read(&src).unwrap();
        let b = std::fs::read(&dst).unwrap();
        assert!(a == b, "copy differs");
        if o.mode == CopyMode::FullCopy {
            assert!(o.reflink_error.is_some());
            // 2 data chunks of at most 1 MiB each, not 64 MiB.
            let used = std::fs::metadata(&dst).unwrap().blocks() * 512;
            assert!(used <= 4 << 20, "copy not sparse: {used} bytes used");
        }
        assert!(
            copy_image(&src, &dst).is_err(),
            "overwrote an existing file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
