//! Paths inside an untrusted clone, resolved relative to a directory file
//! descriptor of the clone's root.
//!
//! Everything a clone holds is hostile: an fstab mount point `/../../etc`, a
//! directory `data -> /some/host/dir`, a relative link with enough `../` to
//! leave the volume, `etc/fstab -> /dev/zero`, a FIFO where a file should be.
//! So nothing here joins strings into host paths and hands them to the
//! kernel. A [`CloneRoot`] is an `O_PATH` fd of a trusted host directory (the
//! volume path); every path below it is
//!
//! * checked lexically first ([`ClonePath`]: normal names only, no `..`);
//! * resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a
//!   symlink is read as it was on the original host, i.e. chrooted into the
//!   volume (`/x` means `<volume>/x`, `..` stops at the volume root);
//! * created one component at a time with `mkdirat(2)` on the fd of the
//!   already-resolved parent ([`CloneRoot::ensure_dir`]);
//! * read without following a final symlink, only if it is a regular file,
//!   with a size cap and a deadline ([`CloneRoot::read_file`]).
//!
//! The fd of a resolved directory is what mounts are made onto
//! (`/proc/self/fd/N`, see [`crate::mountfd`]), the way container runtimes
//! (runc, libpathrs) defend against symlink races.
//!
//! Open a `CloneRoot` after the clone's root filesystem is mounted at the
//! volume path: the fd pins the directory it was opened on, and a mount made
//! over it later is not seen through it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::fs::{
    fstat, mkdirat, openat2, statx, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags,
    StatxFlags,
};
use rustix::io::Errno;

/// Longest name one path component may have (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// How often `openat2` is retried when the kernel reports a `..` race
/// (`EAGAIN`) under `RESOLVE_IN_ROOT`.
const RESOLVE_RETRIES: u32 = 16;
/// Bytes read per `read(2)` in [`CloneRoot::read_file`].
const READ_CHUNK: usize = 64 * 1024;

/// Why a path inside a clone was refused or could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path leaves the clone root: a `..` component (refused before any
    /// lookup), or a resolution that ended outside the root.
    #[error("{}", escapes_message(path, resolved.as_deref()))]
    Escapes {
        /// The clone path as given.
        path: String,
        /// Where it resolved on the host, when it got that far.
        resolved: Option<PathBuf>,
    },
    /// Some component of the path does not exist in the clone.
    #[error("{path} does not exist in the clone (a component is missing or a symlink on the way points to nothing inside the clone)")]
    NotFound {
        /// The clone path.
        path: String,
    },
    /// A directory was expected and something else was found.
    #[error("{path} in the clone is not a directory (found: {found}); fix the clone's fstab or the path, goldmount will not replace it")]
    NotADirectory {
        /// The clone path.
        path: String,
        /// What was found instead ("regular file", "dangling symlink", ...).
        found: &'static str,
    },
    /// The text is not a usable path (NUL byte, over-long component, the root
    /// where a name is needed).
    #[error("{path:?} is not a valid path inside a clone: {reason}")]
    Invalid {
        /// The text as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A directory to remove still has entries.
    #[error("{path} in the clone is not empty; it was left in place (remove its content first, or leave it)")]
    NotEmpty {
        /// The clone path.
        path: String,
    },
    /// A directory to remove is a mount point or otherwise in use.
    #[error("{path} in the clone is busy (a mount point or in use); it was left in place (unmount what is on it first)")]
    Busy {
        /// The clone path.
        path: String,
    },
    /// The caller's journal refused to record a step, so it was not taken.
    #[error(
        "could not record the creation of {path} before taking it, nothing was created: {message}"
    )]
    Journal {
        /// The clone path about to be created.
        path: String,
        /// What the journal said.
        message: String,
    },
    /// Any other system call failure.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// What was being done ("open", "mkdirat", ...).
        op: &'static str,
        /// The clone path (or host path for the root itself).
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn escapes_message(path: &str, resolved: Option<&Path>) -> String {
    match resolved {
        None => format!(
            "{path:?} leaves the clone root ('..' is not allowed in a path inside a clone); use a path from the clone's root"
        ),
        Some(r) => format!(
            "{path:?} resolved to {} which is outside the clone root; refused (the clone or the host changed under us)",
            r.display()
        ),
    }
}

/// Why a file of a clone could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file (or a directory on the way) does not exist.
    #[error("{path} does not exist in the clone")]
    NotFound {
        /// The clone path.
        path: String,
    },
    /// The file is a symlink; goldmount does not follow the last component.
    #[error("{path} in the clone is a symlink; goldmount reads only regular files there (replace the link by the file, or point goldmount at the file itself)")]
    Symlink {
        /// The clone path.
        path: String,
    },
    /// The file is not a regular file (FIFO, device, directory, ...).
    #[error("{path} in the clone is a {kind}, not a regular file; refused without opening it")]
    NotRegular {
        /// The clone path.
        path: String,
        /// What it is: "FIFO", "block device", "directory", ...
        kind: &'static str,
    },
    /// The file is larger than the caller allows.
    #[error("{path} in the clone is larger than {cap} bytes; refused (a real file of this kind is much smaller)")]
    TooLarge {
        /// The clone path.
        path: String,
        /// The cap in bytes.
        cap: u64,
    },
    /// Reading did not finish in time (a hung device or filesystem).
    #[error("reading {path} in the clone did not finish within {after:?}; the device or filesystem may be hung (check dmesg)")]
    TimedOut {
        /// The clone path.
        path: String,
        /// The deadline given.
        after: Duration,
    },
    /// Resolving the directory holding the file failed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Opening or reading failed.
    #[error("reading {path} in the clone failed: {source}")]
    Io {
        /// The clone path.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A path inside a clone, checked lexically: only normal names.
///
/// Why: fstab mount points and well-known file names come from clone
/// content; `..` is refused outright so that no lookup is even attempted
/// for a path that means to leave the clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClonePath {
    parts: Vec<String>,
}

impl ClonePath {
    /// Parses `s`: a leading `/` is allowed (fstab style), `""` and `"/"`
    /// mean the root, `.` and repeated `/` are dropped, `..` anywhere is
    /// [`PathError::Escapes`], a NUL byte or a component longer than 255
    /// bytes is [`PathError::Invalid`].
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.contains('\0') {
            return Err(PathError::Invalid {
                path: s.escape_debug().to_string(),
                reason: "it contains a NUL byte",
            });
        }
        let mut parts = Vec::new();
        for part in s.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(PathError::Escapes {
                        path: s.to_string(),
                        resolved: None,
                    })
                }
                p if p.len() > NAME_MAX => {
                    return Err(PathError::Invalid {
                        path: s.to_string(),
                        reason: "a component is longer than 255 bytes",
                    })
                }
                p => parts.push(p.to_string()),
            }
        }
        Ok(Self { parts })
    }

    /// The clone's root.
    pub fn root() -> Self {
        Self { parts: Vec::new() }
    }

    /// Whether this is the clone's root.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The names from the root down.
    pub fn components(&self) -> &[String] {
        &self.parts
    }

    /// The directory holding this path; `None` for the root.
    pub fn parent(&self) -> Option<ClonePath> {
        let (_, head) = self.parts.split_last()?;
        Some(Self {
            parts: head.to_vec(),
        })
    }

    /// The last name; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// `self` with one more name (checked like [`ClonePath::parse`]; `name`
    /// may not contain `/`).
    pub fn join(&self, name: &str) -> Result<ClonePath, PathError> {
        if name.contains('/') {
            return Err(PathError::Invalid {
                path: name.to_string(),
                reason: "a single name was expected and it contains '/'",
            });
        }
        let tail = Self::parse(name)?;
        let mut parts = self.parts.clone();
        parts.extend(tail.parts);
        Ok(Self { parts })
    }

    /// The path relative to the root (`.` for the root itself), as the
    /// `openat2` argument.
    pub fn as_relative(&self) -> PathBuf {
        if self.parts.is_empty() {
            PathBuf::from(".")
        } else {
            self.parts.iter().collect()
        }
    }
}

impl fmt::Display for ClonePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for p in &self.parts {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// Told about every directory [`CloneRoot::ensure_dir`] creates, before and
/// after, so the caller can record the step before it is taken and undo
/// exactly what was made.
pub trait DirJournal {
    /// `p` does not exist and is about to be created. An `Err` stops
    /// `ensure_dir` before anything is created.
    fn will_create(&mut self, p: &ClonePath) -> Result<(), String>;
    /// `p` now exists: `by_us` is true when our `mkdirat` made it, false when
    /// someone else made it between our look and our `mkdirat`.
    fn created(&mut self, p: &ClonePath, by_us: bool) -> Result<(), String>;
}

/// A journal that records nothing, for callers that do not need to undo.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl DirJournal for NoJournal {
    fn will_create(&mut self, _: &ClonePath) -> Result<(), String> {
        Ok(())
    }
    fn created(&mut self, _: &ClonePath, _: bool) -> Result<(), String> {
        Ok(())
    }
}

/// An existing directory inside a clone, held by an `O_PATH` fd, with the
/// host path it had when it was resolved (checked to be under the root).
///
/// Why: a mount is made onto the fd (`/proc/self/fd/N`), not onto a path
/// string the clone could change in between.
#[derive(Debug)]
pub struct ResolvedDir {
    fd: OwnedFd,
    host: PathBuf,
}

impl ResolvedDir {
    /// The real host path of the directory at resolution time (readlink of
    /// `/proc/self/fd/N`). For messages and for finding mounts in
    /// mountinfo; never to be opened again by name.
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The `O_PATH` fd (usable as a `*at` dirfd and for `fstat`/`statx`).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `/proc/self/fd/N`: the path that names exactly this directory, for
    /// system calls that take only a path (`mount(2)`).
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(self.fd.as_fd())
    }

    /// The real host path now (the directory may have been renamed since it
    /// was resolved).
    pub fn current_host_path(&self) -> io::Result<PathBuf> {
        fd_host_path(self.fd.as_fd())
    }
}

/// A trusted host directory (the volume path, a staging directory) that
/// clone paths are resolved in.
#[derive(Debug)]
pub struct CloneRoot {
    fd: OwnedFd,
    host: PathBuf,
}

impl CloneRoot {
    /// Opens `host_dir` (`O_PATH | O_DIRECTORY | O_CLOEXEC`). `host_dir` is
    /// trusted: it is opened normally. [`CloneRoot::host_path`] is its real
    /// path (symlinks on the way resolved).
    pub fn open(host_dir: &Path) -> Result<Self, PathError> {
        let shown = host_dir.display().to_string();
        let fd = rustix::fs::open(
            host_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT => PathError::NotFound {
                path: shown.clone(),
            },
            Errno::NOTDIR => PathError::NotADirectory {
                path: shown.clone(),
                found: "not a directory",
            },
            e => PathError::Io {
                op: "open clone root",
                path: shown.clone(),
                source: e.into(),
            },
        })?;
        let host = fd_host_path(fd.as_fd()).map_err(|source| PathError::Io {
            op: "readlink /proc/self/fd of clone root",
            path: shown,
            source,
        })?;
        Ok(Self { fd, host })
    }

    /// The root's real host path.
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The root's `O_PATH` fd.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A second handle on the same root (a duplicated fd).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            host: self.host.clone(),
        })
    }

    /// Resolves an existing directory inside the root
    /// (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, `O_PATH | O_DIRECTORY`),
    /// checks that its real host path is under [`CloneRoot::host_path`].
    pub fn resolve_dir(&self, p: &ClonePath) -> Result<ResolvedDir, PathError> {
        let fd = self
            .open_in_root(p, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| match e {
                Errno::NOENT => PathError::NotFound {
                    path: p.to_string(),
                },
                Errno::NOTDIR => PathError::NotADirectory {
                    path: p.to_string(),
                    found: self.what_is(p),
                },
                e => self.io_error("resolve", p, e),
            })?;
        self.checked(p, fd)
    }

    /// Like [`CloneRoot::resolve_dir`], but creates the missing directories
    /// one component at a time with `mkdirat(2)` (mode 0755, less umask) on
    /// the fd of the already-resolved parent, telling `journal` before and
    /// after each one. A component that exists as a dangling symlink or as a
    /// non-directory is an error and nothing more is created.
    ///
    /// Existing components are resolved from the root (symlinks chrooted);
    /// a created component is reopened beneath its parent fd with no
    /// symlinks allowed, so what is returned is what was made.
    pub fn ensure_dir(
        &self,
        p: &ClonePath,
        journal: &mut dyn DirJournal,
    ) -> Result<ResolvedDir, PathError> {
        let mut cur = self.resolve_dir(&ClonePath::root())?;
        for (i, name) in p.parts.iter().enumerate() {
            let prefix = ClonePath {
                parts: p.parts[..=i].to_vec(),
            };
            match self.resolve_dir(&prefix) {
                Ok(d) => {
                    cur = d;
                    continue;
                }
                Err(PathError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            // Missing as resolved from the root: look at the entry itself.
            match statx(
                cur.as_fd(),
                name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
                StatxFlags::TYPE,
            ) {
                Ok(st) => {
                    let ft = FileType::from_raw_mode(u32::from(st.stx_mode));
                    if ft == FileType::Symlink {
                        return Err(PathError::NotADirectory {
                            path: prefix.to_string(),
                            found: "dangling symlink (its target does not exist inside the clone)",
                        });
                    }
                    if ft != FileType::Directory {
                        return Err(PathError::NotADirectory {
                            path: prefix.to_string(),
                            found: kind_name(ft),
                        });
                    }
                    // A directory appeared since the lookup: fall through,
                    // mkdirat reports EEXIST and it is opened below.
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.io_error("statx", &prefix, e)),
            }
            journal
                .will_create(&prefix)
                .map_err(|message| PathError::Journal {
                    path: prefix.to_string(),
                    message,
                })?;
            let by_us = match mkdirat(cur.as_fd(), name.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(self.io_error("mkdirat", &prefix, e)),
            };
            journal
                .created(&prefix, by_us)
                .map_err(|message| PathError::Journal {
                    path: prefix.to_string(),
                    message,
                })?;
            let fd = retry_again(|| {
                openat2(
                    cur.as_fd(),
                    name.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )
            })
            .map_err(|e| match e {
                Errno::NOENT => PathError::NotFound {
                    path: prefix.to_string(),
                },
                Errno::NOTDIR | Errno::LOOP => PathError::NotADirectory {
                    path: prefix.to_string(),
                    found: "a symlink or non-directory that replaced it while it was being created",
                },
                e => self.io_error("open created directory", &prefix, e),
            })?;
            cur = self.checked(&prefix, fd)?;
        }
        Ok(cur)
    }

    /// Removes an empty directory (one goldmount created): resolves the
    /// parent in the root and `unlinkat(name, AT_REMOVEDIR)`. `Ok(false)`
    /// when it is already gone; a non-empty or busy directory is an error
    /// and stays where it is. A symlink is never followed to its target.
    pub fn remove_dir(&self, p: &ClonePath) -> Result<bool, PathError> {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Err(PathError::Invalid {
                path: p.to_string(),
                reason: "the clone root itself cannot be removed",
            });
        };
        let dir = match self.resolve_dir(&parent) {
            Ok(d) => d,
            Err(PathError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match unlinkat(dir.as_fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Err(PathError::NotEmpty {
                path: p.to_string(),
            }),
            Err(Errno::BUSY) => Err(PathError::Busy {
                path: p.to_string(),
            }),
            Err(Errno::NOTDIR) => Err(PathError::NotADirectory {
                path: p.to_string(),
                found: entry_kind(dir.as_fd(), name),
            }),
            Err(e) => Err(self.io_error("rmdir", p, e)),
        }
    }

    /// Reads a regular file of the clone, at most `cap` bytes, within
    /// `deadline`.
    ///
    /// The directories on the way are resolved in the root; the last
    /// component is opened `O_PATH | O_NOFOLLOW` beneath its parent and
    /// checked with `fstat` before anything is opened for reading, so a FIFO
    /// or a device node is never opened (no blocking, no driver side
    /// effects); the regular file is then reopened through its `O_PATH` fd
    /// (`O_RDONLY | O_NONBLOCK | O_NOCTTY`) and read in chunks.
    ///
    /// The work runs on a helper thread: if the filesystem hangs, the caller
    /// gets [`ReadError::TimedOut`] at the deadline and the blocked thread is
    /// left behind (it ends when the kernel call returns).
    pub fn read_file(
        &self,
        p: &ClonePath,
        cap: u64,
        deadline: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        let root = self.try_clone().map_err(|source| ReadError::Io {
            path: p.to_string(),
            source,
        })?;
        let path = p.clone();
        let until = Instant::now() + deadline;
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("clonefs-read".into())
            .spawn(move || {
                // The receiver may be gone after a timeout; nothing to do then.
                let _ = tx.send(root.read_file_now(&path, cap, until, deadline));
            })
            .map_err(|source| ReadError::Io {
                path: p.to_string(),
                source,
            })?;
        match rx.recv_timeout(deadline) {
            Ok(r) => r,
            Err(_) => Err(ReadError::TimedOut {
                path: p.to_string(),
                after: deadline,
            }),
        }
    }

    /// The body of [`CloneRoot::read_file`], on the calling thread.
    fn read_file_now(
        &self,
        p: &ClonePath,
        cap: u64,
        until: Instant,
        deadline: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        let shown = p.to_string();
        let io_err = |e: io::Error| ReadError::Io {
            path: shown.clone(),
            source: e,
        };
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Err(ReadError::NotRegular {
                path: shown,
                kind: "directory",
            });
        };
        let dir = self.resolve_dir(&parent).map_err(|e| match e {
            PathError::NotFound { .. } => ReadError::NotFound {
                path: shown.clone(),
            },
            e => ReadError::Path(e),
        })?;
        let pfd = retry_again(|| {
            openat2(
                dir.as_fd(),
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
        })
        .map_err(|e| match e {
            Errno::NOENT => ReadError::NotFound {
                path: shown.clone(),
            },
            e => io_err(e.into()),
        })?;
        let st = fstat(&pfd).map_err(|e| io_err(e.into()))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Symlink {
            return Err(ReadError::Symlink { path: shown });
        }
        if ft != FileType::RegularFile {
            return Err(ReadError::NotRegular {
                path: shown,
                kind: kind_name(ft),
            });
        }
        let too_large = || ReadError::TooLarge {
            path: shown.clone(),
            cap,
        };
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > cap {
            return Err(too_large());
        }
        let fd = rustix::fs::open(
            proc_fd_path(pfd.as_fd()),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(e.into()))?;
        let again = fstat(&fd).map_err(|e| io_err(e.into()))?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(io_err(io::Error::other(
                "the file reopened through its O_PATH fd is not the one checked",
            )));
        }
        let mut file = File::from(fd);
        let mut out = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if Instant::now() >= until {
                return Err(ReadError::TimedOut {
                    path: shown,
                    after: deadline,
                });
            }
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            out.extend_from_slice(&buf[..n]);
            if out.len() as u64 > cap {
                return Err(too_large());
            }
        }
        Ok(out)
    }

    /// `openat2(root, p, flags | O_CLOEXEC, RESOLVE_IN_ROOT |
    /// RESOLVE_NO_MAGICLINKS)`, retried on the kernel's `..`-race `EAGAIN`.
    fn open_in_root(&self, p: &ClonePath, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = p.as_relative();
        retry_again(|| {
            openat2(
                self.fd.as_fd(),
                &rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
        })
    }

    /// Wraps a resolved directory fd after checking its real host path is
    /// under the root.
    fn checked(&self, p: &ClonePath, fd: OwnedFd) -> Result<ResolvedDir, PathError> {
        let host = fd_host_path(fd.as_fd()).map_err(|source| PathError::Io {
            op: "readlink /proc/self/fd of",
            path: p.to_string(),
            source,
        })?;
        if !host.starts_with(&self.host) {
            return Err(PathError::Escapes {
                path: p.to_string(),
                resolved: Some(host),
            });
        }
        Ok(ResolvedDir { fd, host })
    }

    /// What `p` is when it was expected to be a directory (for messages).
    fn what_is(&self, p: &ClonePath) -> &'static str {
        match self.open_in_root(p, OFlags::PATH) {
            Ok(fd) => match fstat(&fd) {
                Ok(st) => kind_name(FileType::from_raw_mode(st.st_mode)),
                Err(_) => "something that is not a directory",
            },
            Err(Errno::NOTDIR) => "a component on the way that is not a directory",
            Err(_) => "something that is not a directory",
        }
    }

    fn io_error(&self, op: &'static str, p: &ClonePath, e: Errno) -> PathError {
        PathError::Io {
            op,
            path: format!("{p} (in {})", self.host.display()),
            source: e.into(),
        }
    }
}

/// Calls `f` again while it fails with `EAGAIN` (openat2's "a `..` raced a
/// rename" answer) or `EINTR`, a bounded number of times.
fn retry_again<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut tries = 0;
    loop {
        match f() {
            Err(Errno::AGAIN) | Err(Errno::INTR) if tries < RESOLVE_RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// `/proc/self/fd/N` for `fd`.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The real host path of `fd`, read from `/proc/self/fd/N`. A path that is
/// not absolute (an fd outside this process's root, a deleted directory)
/// is an error.
pub(crate) fn fd_host_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let p = std::fs::read_link(proc_fd_path(fd))?;
    let deleted = p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)");
    if !p.is_absolute() || deleted {
        return Err(io::Error::other(format!(
            "the directory has no path in this mount namespace (kernel says {})",
            p.display()
        )));
    }
    Ok(p)
}

/// What the entry `name` in `dir` is, without following it (for messages).
fn entry_kind(dir: BorrowedFd<'_>, name: &str) -> &'static str {
    match statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE) {
        Ok(st) => kind_name(FileType::from_raw_mode(u32::from(st.stx_mode))),
        Err(_) => "something that is not a directory",
    }
}

/// A file type as a message names it.
pub fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_normalises_and_refuses() {
        let p = ClonePath::parse("//srv/./data//").unwrap();
        assert_eq!(p.components(), ["srv", "data"]);
        assert_eq!(p.to_string(), "/srv/data");
        assert_eq!(p.as_relative(), PathBuf::from("srv/data"));
        assert_eq!(p.file_name(), Some("data"));
        assert_eq!(p.parent().unwrap().to_string(), "/srv");
        assert!(ClonePath::parse("").unwrap().is_root());
        assert!(ClonePath::parse("/").unwrap().is_root());
        assert_eq!(ClonePath::root().as_relative(), PathBuf::from("."));
        assert_eq!(ClonePath::root().to_string(), "/");
        assert!(ClonePath::root().parent().is_none());
        assert!(matches!(
            ClonePath::parse("/../../../etc"),
            Err(PathError::Escapes { resolved: None, .. })
        ));
        assert!(matches!(
            ClonePath::parse("a/b/.."),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            ClonePath::parse("a\0b"),
            Err(PathError::Invalid { .. })
        ));
        assert!(matches!(
            ClonePath::parse(&"x".repeat(256)),
            Err(PathError::Invalid { .. })
        ));
        assert!(ClonePath::parse(&"x".repeat(255)).is_ok());
        assert!(ClonePath::parse("...").is_ok());
        let j = p.join("x").unwrap();
        assert_eq!(j.to_string(), "/srv/data/x");
        assert!(p.join("..").is_err());
        assert!(p.join("a/b").is_err());
    }

    #[test]
    fn escape_message_says_what_to_do() {
        let e = ClonePath::parse("/../etc").unwrap_err().to_string();
        assert!(
            e.contains("/../etc") && e.contains("'..' is not allowed"),
            "{e}"
        );
    }
}
