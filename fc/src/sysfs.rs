//! Minimal root-relative sysfs access for the FC readers.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::FcError;

/// `root` joined with an absolute sysfs path.
pub(crate) fn path(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// An attribute's trimmed text, or "" when it is missing or unreadable (a
/// missing FC attribute is normal: drivers export different sets).
pub(crate) fn attr(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Entry names of a directory, sorted; a missing directory is empty (no
/// FC transport class loaded means no FC ports).
pub(crate) fn list(dir: &Path) -> Result<Vec<String>, FcError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FcError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Writes a value to an existing attribute (never creates files).
pub(crate) fn write(p: &Path, value: &str) -> Result<(), FcError> {
    let io = |source| FcError::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(io)?;
    f.write_all(value.as_bytes()).map_err(io)
}
