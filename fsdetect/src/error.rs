//! Typed errors of the prober. Hand-written (no `thiserror`) to keep `fsdetect` std-only.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a probe could not be completed.
///
/// A signature that is simply absent is *not* an error: probers return `Ok(None)`.
/// Errors are reserved for the source itself misbehaving (I/O failure, a device
/// that is shorter than it claims) or for a path that cannot be probed at all.
#[derive(Debug)]
pub enum ProbeError {
    /// The path does not exist.
    NotFound(PathBuf),
    /// The path exists but is neither a regular file nor a block device.
    NotBlockOrFile(PathBuf),
    /// The caller may not open the path for reading.
    PermissionDenied(PathBuf),
    /// Opening or querying the path failed for another reason.
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A read inside the source's advertised size failed.
    Read {
        /// Absolute byte offset of the failed read.
        offset: u64,
        /// Requested length.
        len: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// The source ended before its advertised size (a truncated image or a
    /// device that shrank while being probed).
    Truncated {
        /// Absolute offset at which data ran out.
        offset: u64,
        /// Size the source claimed to have.
        size: u64,
    },
    /// A prober asked for bytes outside the probed region. Probers treat this as
    /// "signature not present"; it only escapes when a caller reads directly.
    OutOfRange {
        /// Offset relative to the region.
        offset: u64,
        /// Requested length.
        len: usize,
        /// Length of the region.
        region_len: u64,
    },
    /// The caller asked for a region that does not fit the source.
    BadRegion {
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Size of the source.
        size: u64,
    },
    /// A sysfs attribute of a block device was missing or not what the
    /// kernel writes there (e.g. a partition's `start`).
    Sysfs {
        /// The attribute's path.
        path: PathBuf,
        /// What was expected and what was found.
        problem: String,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NotFound(p) => write!(f, "{}: no such file or device", p.display()),
            ProbeError::NotBlockOrFile(p) => write!(
                f,
                "{}: not a regular file or block device (expected an image file or /dev/...)",
                p.display()
            ),
            ProbeError::PermissionDenied(p) => {
                write!(
                    f,
                    "{}: permission denied (probing needs read access)",
                    p.display()
                )
            }
            ProbeError::Open { path, source } => {
                write!(f, "{}: cannot open: {source}", path.display())
            }
            ProbeError::Read {
                offset,
                len,
                source,
            } => {
                write!(f, "read of {len} bytes at offset {offset} failed: {source}")
            }
            ProbeError::Truncated { offset, size } => write!(
                f,
                "source is truncated: data ends at byte {offset} but its size is {size} bytes"
            ),
            ProbeError::OutOfRange {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "read of {len} bytes at offset {offset} is outside the {region_len}-byte region"
            ),
            ProbeError::BadRegion { offset, len, size } => write!(
                f,
                "region of {len} bytes at offset {offset} does not fit the {size}-byte source"
            ),
            ProbeError::Sysfs { path, problem } => write!(
                f,
                "{}: {problem} (is /sys mounted, and is this a kernel block device?)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Open { source, .. } | ProbeError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, ProbeError>;
