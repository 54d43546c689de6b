//! Root-relative access to /sys, /proc, /etc and /dev, so every reader runs
//! unchanged against the live host (`/`) or a tree captured from the lab.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A filesystem root under which absolute paths like `/sys/block` are read.
#[derive(Debug, Clone)]
pub struct Root {
    base: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Self::host()
    }
}

impl Root {
    /// The live system.
    pub fn host() -> Self {
        Self {
            base: PathBuf::from("/"),
        }
    }

    /// A captured tree (tests): `/sys/x` is read as `<base>/sys/x`.
    pub fn at(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// True for the live system, where writes reach the kernel.
    pub fn is_host(&self) -> bool {
        self.base == Path::new("/")
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Maps an absolute path into this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.base.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// An attribute's text, trimmed; None when missing or unreadable.
    pub fn attr(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// An attribute's text, trimmed, None also when empty.
    pub fn attr_nonempty(&self, abs: impl AsRef<Path>) -> Option<String> {
        self.attr(abs).filter(|s| !s.is_empty())
    }

    /// A binary attribute (VPD pages); None when missing, unreadable or empty.
    pub fn bytes(&self, abs: impl AsRef<Path>) -> Option<Vec<u8>> {
        std::fs::read(self.path(abs)).ok().filter(|b| !b.is_empty())
    }

    /// Sorted entry names of a directory; empty when it does not exist.
    pub fn list(&self, abs: impl AsRef<Path>) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.path(abs)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// True when the path exists (following symlinks).
    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    /// The last component of a symlink's target (e.g. `2:0:0:1` for
    /// `/sys/block/sdb/device`).
    pub fn link_name(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_link(self.path(abs))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// The fully resolved path, expressed inside this root (starts with `/`),
    /// e.g. `/sys/devices/platform/host2/session1/…/block/sdb`.
    pub fn real(&self, abs: impl AsRef<Path>) -> Option<String> {
        let real = std::fs::canonicalize(self.path(abs)).ok()?;
        let base = std::fs::canonicalize(&self.base).ok()?;
        let rel = real.strip_prefix(&base).ok()?;
        Some(format!("/{}", rel.display()))
    }

    /// Writes a value to an existing attribute (never creates a file).
    pub fn write(&self, abs: impl AsRef<Path>, value: &str) -> Result<()> {
        let p = self.path(abs);
        let io = |source| Error::Io {
            path: p.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io)?;
        f.write_all(value.as_bytes()).map_err(io)
    }
}
