//! Which files and devices a gold copy may be imported from, and opening
//! them safely.
//!
//! `POST /v1/gold-copies` names a path on the appliance machine, and the
//! appliance (root) reads it on the caller's behalf; without a policy any API
//! caller could copy `/etc/shadow` or a whole system disk out through a
//! clone. So a source must be either
//!
//! - a regular file beneath one of the admin's `--import-from` directories,
//!   opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to
//!   that directory's descriptor (no symlink, no `..`, no magic link can lead
//!   out), first as `O_PATH` so a FIFO or device node is never opened (an
//!   open can block or have side effects), then re-opened for reading
//!   through that descriptor; or
//! - exactly one of the block devices the admin listed (`--allow-device`).
//!
//! The copy is made from the descriptor opened here: there is no second
//! lookup by path that a rename could redirect.

use crate::error::Error;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// The admin's import policy.
#[derive(Debug, Clone, Default)]
pub struct ImportPolicy {
    /// Directories whose regular files may be imported (`--import-from`).
    pub dirs: Vec<PathBuf>,
    /// Block devices that may be imported (`--allow-device`).
    pub devices: Vec<PathBuf>,
}

/// A source opened for reading, and what it is.
#[derive(Debug)]
pub struct OpenedSource {
    /// Open for reading.
    pub file: File,
    /// The path as requested (recorded in the gold copy).
    pub path: PathBuf,
    /// True for a block device, false for a regular file.
    pub is_block_device: bool,
}

impl ImportPolicy {
    /// What is allowed, for error messages.
    pub fn describe(&self) -> String {
        let list = |v: &[PathBuf]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        format!(
            "allowed: regular files beneath the directories [{}] (--import-from), without \
             symlinks on the way; block devices [{}] (--allow-device)",
            list(&self.dirs),
            list(&self.devices)
        )
    }

    fn forbidden(&self, path: &Path, why: &str) -> Error {
        Error::Forbidden(format!(
            "gold copy source {}: {why}; {}",
            path.display(),
            self.describe()
        ))
    }

    /// Opens `path` for import if the policy allows it; a 403
    /// ([`Error::Forbidden`]) saying what is allowed otherwise.
    pub fn open(&self, path: &Path) -> Result<OpenedSource, Error> {
        if !path.is_absolute() {
            return Err(self.forbidden(path, "expected an absolute path"));
        }
        if self.devices.iter().any(|d| d == path) {
            return open_device(path);
        }
        for dir in &self.dirs {
            if let Some(rest) = beneath(dir, path) {
                return self.open_beneath(dir, &rest, path);
            }
        }
        Err(self.forbidden(
            path,
            "not beneath an import directory and not an allowed block device",
        ))
    }

    fn open_beneath(&self, dir: &Path, rest: &Path, path: &Path) -> Result<OpenedSource, Error> {
        // The admin named the directory itself: it may be reached through
        // symlinks. Everything below it may not.
        let dirfd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::io(
                format!("opening import directory {}", dir.display()),
                e.into(),
            )
        })?;
        let opath = rustix::fs::openat2(
            &dirfd,
            rest,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => self.forbidden(path, "a component is a symbolic link"),
            rustix::io::Errno::XDEV => {
                self.forbidden(path, "resolving it would leave the import directory")
            }
            rustix::io::Errno::NOENT => Error::Invalid(format!(
                "source: {} does not exist (expected an image file beneath {})",
                path.display(),
                dir.display()
            )),
            e => Error::io(format!("opening {}", path.display()), e.into()),
        })?;
        let st = rustix::fs::fstat(&opath)
            .map_err(|e| Error::io(format!("stat {}", path.display()), e.into()))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(self.forbidden(
                path,
                &format!("expected a regular file, found {}", describe_kind(kind)),
            ));
        }
        if st.st_nlink != 1 {
            // A hard link can bring a file from outside the directory in
            // (where fs.protected_hardlinks is off).
            return Err(self.forbidden(
                path,
                &format!(
                    "the file has {} hard links; expected 1 (a hard link may lead to a file \
                     outside the import directory) — copy the image instead",
                    st.st_nlink
                ),
            ));
        }
        // Re-open the very inode for reading through its O_PATH descriptor.
        let file: File = rustix::fs::open(
            format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&opath)),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::io(
                format!(
                    "re-opening {} for reading (through /proc/self/fd)",
                    path.display()
                ),
                e.into(),
            )
        })?
        .into();
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if meta.dev() != st.st_dev || meta.ino() != st.st_ino {
            return Err(Error::Conflict(format!(
                "source {} changed while it was opened; try again",
                path.display()
            )));
        }
        Ok(OpenedSource {
            file,
            path: path.to_path_buf(),
            is_block_device: false,
        })
    }
}

/// An allowed block device: the admin named this exact path, so it is
/// opened as named (a `/dev/disk/by-id/…` symlink is fine), but what opens
/// must be a block device.
fn open_device(path: &Path) -> Result<OpenedSource, Error> {
    let file: File = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", path.display()), e.into()))?
    .into();
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if !meta.file_type().is_block_device() {
        return Err(Error::Forbidden(format!(
            "gold copy source {} is listed with --allow-device but is not a block device",
            path.display()
        )));
    }
    Ok(OpenedSource {
        file,
        path: path.to_path_buf(),
        is_block_device: true,
    })
}

/// Opens a source the way the local CLI (direct mode) does: as the invoking
/// user, with that user's own permissions. Only regular files and block
/// devices.
pub fn open_local(path: &Path) -> Result<OpenedSource, Error> {
    let file = File::open(path).map_err(|e| {
        Error::Invalid(format!(
            "source: expected an image file or block device, {}: {e}",
            path.display()
        ))
    })?;
    let ft = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .file_type();
    if !(ft.is_file() || ft.is_block_device()) {
        return Err(Error::Invalid(format!(
            "source: expected a regular file or block device, {} is neither",
            path.display()
        )));
    }
    Ok(OpenedSource {
        file,
        path: path.to_path_buf(),
        is_block_device: ft.is_block_device(),
    })
}

/// `path` relative to `dir` when it lies lexically beneath it, with only
/// normal components (no `.`/`..`) — else `None`.
fn beneath(dir: &Path, path: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(dir).ok()?;
    if rest.as_os_str().is_empty() {
        return None;
    }
    rest.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| rest.to_path_buf())
}

fn describe_kind(k: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match k {
        T::RegularFile => "a regular file",
        T::Directory => "a directory",
        T::Symlink => "a symbolic link",
        T::Fifo => "a FIFO",
        T::Socket => "a socket",
        T::CharacterDevice => "a character device",
        T::BlockDevice => "a block device (list it with --allow-device to import it)",
        T::Unknown => "a file of unknown type",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn beneath_is_lexical_and_rejects_dots() {
        let d = Path::new("/srv/images");
        assert_eq!(
            beneath(d, Path::new("/srv/images/a/b.img")),
            Some(PathBuf::from("a/b.img"))
        );
        assert_eq!(beneath(d, Path::new("/srv/images")), None);
        assert_eq!(beneath(d, Path::new("/srv/images/../x")), None);
        assert_eq!(beneath(d, Path::new("/srv/imagesx/a")), None);
        assert_eq!(beneath(d, Path::new("/etc/shadow")), None);
    }
}
