//! Publications: a volume's whole mounted tree, bound recursively at a path
//! an API caller chose, and taken down again.
//!
//! goldmount assembles a clone as the original host saw it under one volume
//! path (the root filesystem with `/boot`, `/home`, `/srv/data` mounted
//! below it). Consumers want that tree elsewhere: a person's
//! `/media/pgsql1`, Docker's per-container mount path, a CSI target path.
//! Each publication here is one recursive clone of the volume's mount tree:
//!
//! * the target path comes from another program, so it is validated
//!   ([`Target::parse`]) and its missing directories are created one
//!   component at a time on directory fds, never following a symlink;
//! * the tree is cloned detached (`open_tree(OPEN_TREE_CLONE |
//!   AT_RECURSIVE)`), and *every* mount of the detached clone gets
//!   `nosuid,nodev` (and `ro` when asked) with one recursive
//!   `mount_setattr` before anything is visible — a plain `mount --bind -o
//!   ro` would only make the top mount read-only;
//! * the clone is made private before it is attached (see *Propagation*),
//!   then `move_mount`ed onto the target's directory fd.
//!
//! # Propagation
//!
//! A bind of a shared mount joins the source's peer group, so without care
//! a mount made under the publication would appear under the volume (and the
//! other way round). [`publish`] sets the detached clone's propagation to
//! private (recursively, in the same `mount_setattr`), so:
//!
//! * a mount made under the publication never appears under the volume;
//! * a mount made under the volume after publishing never appears in the
//!   publication (the publication is the tree as it was when published; the
//!   engine re-publishes if the volume's tree changes);
//! * when the target's parent mount is shared, the kernel makes the attached
//!   tree shared in *new* peer groups of its own (`attach_recursive_mnt`) and
//!   copies it to the parent's peers and slaves — that is what a CSI or
//!   Docker host with rshared mount points relies on, and since the peer
//!   groups are new, nothing flows back into the volume. We do not make the
//!   tree private again after attaching: that would cut the link to those
//!   copies, and unmounting ours would no longer take them down.
//!
//! Without the private step the danger is real, not theoretical: with the
//! volume shared, a publication made by `open_tree` alone is a peer of it,
//! and unmounting the publication's `/boot` and `/srv/data` unmounted the
//! volume's too (the tests catch this if the propagation reset is removed).
//!
//! Because the publication holds its own references to the volume's
//! filesystems, the engine must unpublish before it unmounts the volume
//! (unmounting the volume's mounts succeeds, but the filesystems stay alive
//! through the publication).
//!
//! # Foreign mounts
//!
//! [`unpublish_expected`] takes the mount ids [`publish`] returned and
//! refuses to unmount a mount under the target that is not one of them
//! (someone mounted it there later) — [`BindError::Foreign`] names it —
//! unless `lazy`, which detaches the whole tree, foreign mounts included,
//! and reports them. [`unpublish`] (no ids known, e.g. recovery after the
//! record was lost) treats everything at or under the target as the
//! publication's.
//!
//! Mount tables are read from `/proc/thread-self/mountinfo`, the namespace of
//! the calling thread.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    mkdirat, openat2, readlinkat, statx, unlinkat, AtFlags, Dir, Mode, OFlags, ResolveFlags,
    StatxAttributes, StatxFlags, CWD,
};
use rustix::io::Errno;
use rustix::mount::{move_mount, open_tree, unmount, MoveMountFlags, OpenTreeFlags, UnmountFlags};

/// Paths a publication may never be at or under, nor hide by being mounted
/// on one of their ancestors: the kernel's virtual filesystems, the host's
/// system directories and goldmount's own state and volumes.
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/usr",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/lib/goldmount",
];

/// What to suggest when a target is refused.
const SUGGESTION: &str =
    "use a dedicated directory such as /media/<name>, /mnt/<name> or /srv/<name>";

/// Longest target accepted (the kernel's `PATH_MAX`, including the NUL).
const PATH_MAX: usize = 4095;

/// Everything that can go wrong publishing or unpublishing.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The target is not an absolute path.
    #[error(
        "publication target {path:?} is not absolute; expected an absolute path ({SUGGESTION})"
    )]
    NotAbsolute {
        /// The path given.
        path: PathBuf,
    },
    /// The target is absolute but not in normal form.
    #[error("publication target {path:?} is not normalised: {why}; spell it without '.', '..', '//' or a trailing '/'")]
    NotNormalised {
        /// The path given.
        path: PathBuf,
        /// Which rule it broke.
        why: &'static str,
    },
    /// The target is `/`.
    #[error("publication target may not be '/'; {SUGGESTION}")]
    Root,
    /// The target is at or under a forbidden prefix, or would hide one.
    #[error("publication target {path:?} {relation} the protected path {prefix:?}; {SUGGESTION}")]
    Forbidden {
        /// The path given.
        path: PathBuf,
        /// The protected path it collides with.
        prefix: PathBuf,
        /// "is", "is under" or "would hide".
        relation: &'static str,
    },
    /// The target overlaps the source.
    #[error("publication target {target:?} overlaps its source {source_path:?}; publish outside the volume")]
    Overlap {
        /// The volume's path.
        source_path: PathBuf,
        /// The target.
        target: PathBuf,
    },
    /// A component of the target path is a symbolic link.
    #[error("{path:?} is a symbolic link; publication targets are resolved without following links — give the real path")]
    Symlink {
        /// The path up to and including the link.
        path: PathBuf,
    },
    /// A component of the target path is not a directory.
    #[error("{path:?} exists and is not a directory; a publication target must be a directory or missing")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// The target directory has entries.
    #[error("publication target {path:?} is not empty (found {first:?}); use an empty or missing directory")]
    NotEmpty {
        /// The target.
        path: PathBuf,
        /// One entry found in it.
        first: PathBuf,
    },
    /// Something else is already mounted at the target.
    #[error("publication target {path:?} is already a mount point (mount id {mount_id}) of something other than {source_path:?}; unmount it or choose another target")]
    MountPoint {
        /// The target.
        path: PathBuf,
        /// The volume that was to be published.
        source_path: PathBuf,
        /// The mount found there.
        mount_id: u64,
    },
    /// The target already publishes this source.
    #[error("{target:?} already publishes {source_path:?} (mount ids {mount_ids:?}, read-only: {read_only}); treat the request as done if the mode matches, else unpublish first")]
    AlreadyPublished {
        /// The volume.
        source_path: PathBuf,
        /// The target.
        target: PathBuf,
        /// The existing publication's mounts, top first.
        mount_ids: Vec<u32>,
        /// Whether the existing publication's top mount is read-only (a
        /// request for another mode is not the same publication).
        read_only: bool,
    },
    /// A created-directory record names a path that is neither the target
    /// nor one of its ancestors.
    #[error("recorded directory {dir:?} is not {target:?} or one of its ancestors; refusing to remove it")]
    NotAnAncestor {
        /// The recorded directory.
        dir: PathBuf,
        /// The target.
        target: PathBuf,
    },
    /// The mount at the target is not the one that was published.
    #[error("the mount at {target:?} (id {found}) is not the publication recorded (ids {expected:?}); someone replaced it — check with findmnt {target:?}")]
    NotOurs {
        /// The target.
        target: PathBuf,
        /// The mount id found at the target.
        found: u32,
        /// The ids recorded at publish time.
        expected: Vec<u32>,
    },
    /// Mounts under the publication that it did not bring.
    #[error("{target:?} has mounts below it that the publication did not make: {mounts:?}; unmount them first or unpublish lazily")]
    Foreign {
        /// The target.
        target: PathBuf,
        /// (mount id, mount point) of each foreign mount.
        mounts: Vec<(u32, PathBuf)>,
    },
    /// The kernel refused to unmount because the tree is in use.
    #[error("{mount_point:?} (publication {target:?}) is busy; holders: {holders:?}{hint}; stop them or unpublish lazily")]
    Busy {
        /// The target.
        target: PathBuf,
        /// The mount the kernel refused to unmount (the target when the
        /// holders were found before unmounting anything).
        mount_point: PathBuf,
        /// Processes whose cwd, root or open files are in the tree.
        holders: Vec<Holder>,
        /// Extra hint when no holder process was found.
        hint: &'static str,
    },
    /// A mount changed between reading the mount table and unmounting it.
    #[error("{path:?} was expected to be mount {expected} but is mount {found} now; the tree changed under us — retry")]
    Changed {
        /// The mount point.
        path: PathBuf,
        /// Id from the mount table.
        expected: u32,
        /// Id found through the path.
        found: u64,
    },
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> BindError + 'a {
    move |e| BindError::Sys {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// A validated publication target.
///
/// Why a type: the path comes from an API caller; once parsed it is known
/// to be absolute, normalised, not `/` and clear of every protected path,
/// so the functions below need not check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    path: PathBuf,
}

impl Target {
    /// Validates `p`: absolute, normalised (no `.`, `..`, `//`, trailing
    /// `/`, NUL), not `/`, not equal to, under or an ancestor of any
    /// `forbidden` path (an ancestor would hide it). Pass
    /// [`DEFAULT_FORBIDDEN`] unless the configuration says otherwise.
    pub fn parse<F: AsRef<Path>>(p: &Path, forbidden: &[F]) -> Result<Self, BindError> {
        let b = p.as_os_str().as_bytes();
        let bad = |why| BindError::NotNormalised {
            path: p.to_path_buf(),
            why,
        };
        if b.is_empty() {
            return Err(bad("it is empty"));
        }
        if b.contains(&0) {
            return Err(bad("it contains a NUL byte"));
        }
        if b.len() > PATH_MAX {
            return Err(bad("it is longer than PATH_MAX"));
        }
        if b[0] != b'/' {
            return Err(BindError::NotAbsolute {
                path: p.to_path_buf(),
            });
        }
        if b == b"/" {
            return Err(BindError::Root);
        }
        if b.ends_with(b"/") {
            return Err(bad("it ends with '/'"));
        }
        for comp in b[1..].split(|c| *c == b'/') {
            match comp {
                b"" => return Err(bad("it contains '//'")),
                b"." => return Err(bad("it contains a '.' component")),
                b".." => return Err(bad("it contains a '..' component")),
                _ => {}
            }
        }
        for f in forbidden {
            let f = f.as_ref();
            let relation = if p == f {
                "is"
            } else if p.starts_with(f) {
                "is under"
            } else if f.starts_with(p) {
                "would hide"
            } else {
                continue;
            };
            return Err(BindError::Forbidden {
                path: p.to_path_buf(),
                prefix: f.to_path_buf(),
                relation,
            });
        }
        Ok(Self {
            path: p.to_path_buf(),
        })
    }

    /// The validated path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`publish`] did, to be recorded so [`unpublish_expected`] can undo
/// exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where the tree is now visible.
    pub target: PathBuf,
    /// Directories publish created, parents first (removed again on
    /// unpublish when empty).
    pub created_dirs: Vec<PathBuf>,
    /// Mount ids of the new tree's mounts, top first.
    pub mount_ids: Vec<u32>,
}

/// A process that keeps a publication busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// `cwd`, `root` or `fd N`.
    pub what: String,
    /// Where that points, as `/proc` shows it.
    pub path: PathBuf,
}

/// How an unpublish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpublishOutcome {
    /// Nothing was mounted at the target (already unpublished, or never).
    Gone {
        /// Recorded directories removed now.
        dirs_removed: Vec<PathBuf>,
    },
    /// Every mount of the publication was unmounted, deepest first.
    Unmounted {
        /// Mount points unmounted, in order.
        mounts: Vec<PathBuf>,
        /// Recorded directories removed (deepest first).
        dirs_removed: Vec<PathBuf>,
    },
    /// The tree was busy (or had foreign mounts) and `lazy` was asked: it
    /// was detached with `MNT_DETACH`; the kernel frees it when the holders
    /// let go.
    Detached {
        /// Mounts unmounted normally before the tree turned out busy.
        unmounted: Vec<PathBuf>,
        /// Mount ids detached at the target (each takes its subtree along).
        detached: Vec<u32>,
        /// Holders seen when detaching.
        holders: Vec<Holder>,
        /// Foreign mounts that went with the tree.
        foreign: Vec<(u32, PathBuf)>,
        /// Recorded directories removed (deepest first).
        dirs_removed: Vec<PathBuf>,
    },
}

const NO_LINKS: ResolveFlags = ResolveFlags::NO_SYMLINKS.union(ResolveFlags::NO_MAGICLINKS);

/// `struct mount_attr` of `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Sets attributes and private propagation on every mount of the detached
/// tree `tree`.
fn set_tree_attrs(tree: BorrowedFd<'_>, source: &Path, read_only: bool) -> Result<(), BindError> {
    let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if read_only {
        set |= MOUNT_ATTR_RDONLY;
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a
    // live, properly laid out `struct mount_attr` and the size passed is its
    // size; the kernel only reads from it during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(BindError::Sys {
            op: "mount_setattr (recursive nosuid,nodev,private) on the clone of",
            path: source.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Identity of what a path shows: device, inode, mount id, mount root flag.
struct Ident {
    dev: (u32, u32),
    ino: u64,
    mnt_id: u64,
    mount_root: bool,
}

fn ident(fd: BorrowedFd<'_>, path: &Path) -> Result<Ident, BindError> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
    .map_err(sys("statx", path))?;
    Ok(Ident {
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id: st.stx_mnt_id,
        mount_root: st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
    })
}

/// Opens `path` (absolute, normalised) from `/` one component at a time
/// without following any link; `Ok(None)` when a component is missing.
fn open_nofollow(path: &Path, flags: OFlags) -> Result<Option<OwnedFd>, BindError> {
    match openat2(CWD, path, flags | OFlags::CLOEXEC, Mode::empty(), NO_LINKS) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP) => Err(first_symlink(path)),
        Err(Errno::NOTDIR) => Err(BindError::NotADirectory {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(sys("open (no symlinks)", path)(e)),
    }
}

/// Names the first component of `path` that is a symlink (for the error).
fn first_symlink(path: &Path) -> BindError {
    let mut cur = PathBuf::from("/");
    for c in path.components().skip(1) {
        cur.push(c);
        if cur
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return BindError::Symlink { path: cur };
        }
    }
    BindError::Symlink {
        path: path.to_path_buf(),
    }
}

/// Walks `target` from `/`, creating missing directories with `mkdirat` on
/// the parent's fd; returns a readable fd of the target and the directories
/// made (parents first). On error, removes what it made.
fn create_dirs(target: &Path) -> Result<(OwnedFd, Vec<PathBuf>), BindError> {
    let mut created = Vec::new();
    let r = walk_create(target, &mut created);
    if r.is_err() {
        let _ = remove_dirs(target, &created);
    }
    r.map(|fd| (fd, created))
}

fn walk_create(target: &Path, created: &mut Vec<PathBuf>) -> Result<OwnedFd, BindError> {
    // No O_NOFOLLOW: with RESOLVE_NO_SYMLINKS a link in the last component
    // fails with ELOOP (named as a link), whereas O_NOFOLLOW | O_DIRECTORY
    // would say ENOTDIR.
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = Path::new("/");
    let mut fd =
        openat2(CWD, root, dir_flags, Mode::empty(), NO_LINKS).map_err(sys("open", root))?;
    let mut cur = PathBuf::from("/");
    let names: Vec<&OsStr> = target.components().skip(1).map(|c| c.as_os_str()).collect();
    for (i, name) in names.iter().enumerate() {
        cur.push(name);
        let last = i + 1 == names.len();
        let flags = if last {
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
        } else {
            dir_flags
        };
        let open = |dir: &OwnedFd| openat2(dir, *name, flags, Mode::empty(), NO_LINKS);
        let next = match open(&fd) {
            Ok(n) => n,
            Err(Errno::NOENT) => {
                match mkdirat(&fd, *name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => created.push(cur.clone()),
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(sys("mkdirat", &cur)(e)),
                }
                open(&fd).map_err(|e| classify(e, &cur))?
            }
            Err(e) => return Err(classify(e, &cur)),
        };
        fd = next;
    }
    Ok(fd)
}

fn classify(e: Errno, path: &Path) -> BindError {
    match e {
        Errno::LOOP => BindError::Symlink {
            path: path.to_path_buf(),
        },
        Errno::NOTDIR => BindError::NotADirectory {
            path: path.to_path_buf(),
        },
        e => sys("open (no symlinks)", path)(e),
    }
}

/// The first entry of the directory other than `.` and `..`.
fn first_entry(fd: &OwnedFd, path: &Path) -> Result<Option<PathBuf>, BindError> {
    let dir = Dir::read_from(fd).map_err(sys("read directory", path))?;
    for entry in dir {
        let entry = entry.map_err(sys("read directory", path))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(Some(PathBuf::from(OsStr::from_bytes(name))));
        }
    }
    Ok(None)
}

/// Publishes the whole mounted tree at `source` at `target`: missing
/// directories created without following links, a recursive detached clone
/// with `nosuid,nodev` (and `ro` when `read_only`) on every mount, private
/// propagation, attached at the target's fd. The target must be missing or
/// an empty directory that is not a mount point; if it already publishes
/// `source`, [`BindError::AlreadyPublished`] says so (nothing is done).
/// On any error nothing stays mounted and the directories made are removed.
pub fn publish(source: &Path, target: &Target, read_only: bool) -> Result<Published, BindError> {
    let tpath = target.path();
    if source.is_absolute() && (tpath.starts_with(source) || source.starts_with(tpath)) {
        return Err(BindError::Overlap {
            source_path: source.to_path_buf(),
            target: tpath.to_path_buf(),
        });
    }
    let tree = open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys("open_tree (recursive clone)", source))?;
    set_tree_attrs(tree.as_fd(), source, read_only)?;

    let (dir, created) = create_dirs(tpath)?;
    let attached = check_target(source, tpath, &dir).and_then(|()| {
        move_mount(
            &tree,
            "",
            &dir,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(sys("move_mount onto", tpath))
    });
    if let Err(e) = attached {
        drop(tree);
        let _ = remove_dirs(tpath, &created);
        return Err(e);
    }
    // The tree fd now refers to the attached top mount's root.
    let top = ident(tree.as_fd(), tpath)?.mnt_id;
    let mount_ids = read_table()
        .map(|t| subtree(&t, top as u32).iter().map(|m| m.id).collect())
        .unwrap_or_else(|_| vec![top as u32]);
    Ok(Published {
        target: tpath.to_path_buf(),
        created_dirs: created,
        mount_ids,
    })
}

/// Refuses a target that is a mount point or not empty.
fn check_target(source: &Path, tpath: &Path, dir: &OwnedFd) -> Result<(), BindError> {
    let t = ident(dir.as_fd(), tpath)?;
    if t.mount_root {
        if same_tree(source, &t)? {
            let mount_ids = read_table()
                .map(|tab| {
                    subtree(&tab, t.mnt_id as u32)
                        .iter()
                        .map(|m| m.id)
                        .collect()
                })
                .unwrap_or_else(|_| vec![t.mnt_id as u32]);
            let read_only = rustix::fs::fstatvfs(dir)
                .map_err(sys("statvfs", tpath))?
                .f_flag
                .contains(rustix::fs::StatVfsMountFlags::RDONLY);
            return Err(BindError::AlreadyPublished {
                source_path: source.to_path_buf(),
                target: tpath.to_path_buf(),
                mount_ids,
                read_only,
            });
        }
        return Err(BindError::MountPoint {
            path: tpath.to_path_buf(),
            source_path: source.to_path_buf(),
            mount_id: t.mnt_id,
        });
    }
    if let Some(first) = first_entry(dir, tpath)? {
        return Err(BindError::NotEmpty {
            path: tpath.to_path_buf(),
            first,
        });
    }
    Ok(())
}

/// Whether the target identity `t` shows the same directory as `source`.
fn same_tree(source: &Path, t: &Ident) -> Result<bool, BindError> {
    let fd = openat2(
        CWD,
        source,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .map_err(sys("open", source))?;
    let s = ident(fd.as_fd(), source)?;
    Ok(s.dev == t.dev && s.ino == t.ino)
}

/// True when the top mount at `target` shows the same directory (device
/// and inode of its root) as `source` — a repeated publish request can be
/// answered "existing" without a second bind. Read-only-ness is not
/// compared.
pub fn is_published(source: &Path, target: &Target) -> Result<bool, BindError> {
    let tpath = target.path();
    let Some(fd) = open_nofollow(tpath, OFlags::PATH)? else {
        return Ok(false);
    };
    let t = ident(fd.as_fd(), tpath)?;
    if !t.mount_root {
        return Ok(false);
    }
    same_tree(source, &t)
}

/// The mount table of the calling thread's namespace.
fn read_table() -> Result<Vec<mountinfo::MountEntry>, BindError> {
    let p = Path::new("/proc/thread-self/mountinfo");
    std::fs::read_to_string(p)
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .map(|t| mountinfo::parse(&t))
        .map_err(|e| BindError::Sys {
            op: "read",
            path: p.to_path_buf(),
            source: e,
        })
}

/// `top` and every mount below it, parents before children (top first).
fn subtree(table: &[mountinfo::MountEntry], top: u32) -> Vec<mountinfo::MountEntry> {
    let mut out: Vec<mountinfo::MountEntry> =
        table.iter().filter(|m| m.id == top).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let id = out[i].id;
        out.extend(
            table
                .iter()
                .filter(|m| m.parent == id && m.id != id)
                .cloned(),
        );
        i += 1;
    }
    out
}

/// Unmounts the publication at `target`, treating every mount at or under
/// it as the publication's (use [`unpublish_expected`] when the ids
/// [`publish`] returned are known). See [`unpublish_expected`].
pub fn unpublish(
    target: &Target,
    created_dirs: &[PathBuf],
    lazy: bool,
) -> Result<UnpublishOutcome, BindError> {
    unpublish_impl(target, None, created_dirs, lazy)
}

/// Unmounts the publication at `target` whose mounts are `expected_ids`
/// (from [`Published::mount_ids`]): every mount at or under the target,
/// deepest first, each reached by a path opened without following links
/// and checked to be the expected mount. A mount at the target that is not
/// in `expected_ids` → [`BindError::NotOurs`]; a mount below it that is not
/// → [`BindError::Foreign`] (nothing unmounted); processes using the tree →
/// [`BindError::Busy`] with their pids (nothing unmounted when they were
/// found beforehand). With `lazy`, the busy or foreign-holding tree is
/// detached (`MNT_DETACH`) instead and the outcome says so. Then the
/// recorded `created_dirs` that are empty are removed, deepest first.
/// Nothing mounted at the target → [`UnpublishOutcome::Gone`].
pub fn unpublish_expected(
    target: &Target,
    expected_ids: &[u32],
    created_dirs: &[PathBuf],
    lazy: bool,
) -> Result<UnpublishOutcome, BindError> {
    unpublish_impl(target, Some(expected_ids), created_dirs, lazy)
}

fn unpublish_impl(
    target: &Target,
    expected: Option<&[u32]>,
    created_dirs: &[PathBuf],
    lazy: bool,
) -> Result<UnpublishOutcome, BindError> {
    let tpath = target.path();
    for d in created_dirs {
        if !tpath.starts_with(d) || Target::parse::<&str>(d, &[]).is_err() {
            return Err(BindError::NotAnAncestor {
                dir: d.clone(),
                target: tpath.to_path_buf(),
            });
        }
    }
    let table = read_table()?;
    // The bottom mount at the target: mounted there, parent elsewhere.
    let Some(base) = table.iter().filter(|m| m.mount_point == tpath).find(|m| {
        table
            .iter()
            .find(|p| p.id == m.parent)
            .is_none_or(|p| p.mount_point != tpath)
    }) else {
        let dirs_removed = remove_dirs(tpath, created_dirs)?;
        return Ok(UnpublishOutcome::Gone { dirs_removed });
    };
    let tree = subtree(&table, base.id);
    let ids: HashSet<u32> = tree.iter().map(|m| m.id).collect();
    let mut foreign = Vec::new();
    if let Some(exp) = expected {
        if !exp.contains(&base.id) {
            return Err(BindError::NotOurs {
                target: tpath.to_path_buf(),
                found: base.id,
                expected: exp.to_vec(),
            });
        }
        foreign = tree
            .iter()
            .filter(|m| !exp.contains(&m.id))
            .map(|m| (m.id, m.mount_point.clone()))
            .collect();
    }
    if !foreign.is_empty() && !lazy {
        return Err(BindError::Foreign {
            target: tpath.to_path_buf(),
            mounts: foreign,
        });
    }
    let holders = stable_holders(&ids, tpath);
    if !lazy && !holders.is_empty() {
        return Err(busy(tpath, tpath, holders));
    }
    let mut unmounted = Vec::new();
    if foreign.is_empty() && holders.is_empty() {
        // Children before parents: reverse of the top-first order.
        for m in tree.iter().rev() {
            match unmount_retrying(m) {
                Ok(()) => unmounted.push(m.mount_point.clone()),
                Err(BindError::Sys { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) =>
                {
                    if !lazy {
                        let holders = stable_holders(&ids, tpath);
                        return Err(busy(tpath, &m.mount_point, holders));
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if unmounted.len() == tree.len() {
            let dirs_removed = remove_dirs(tpath, created_dirs)?;
            return Ok(UnpublishOutcome::Unmounted {
                mounts: unmounted,
                dirs_removed,
            });
        }
    }
    // Lazy: detach whatever of ours is still stacked at the target.
    let holders = if holders.is_empty() {
        stable_holders(&ids, tpath)
    } else {
        holders
    };
    let mut detached = Vec::new();
    for _ in 0..=tree.len() {
        let Some(mp) = open_mount_point(tpath)? else {
            break;
        };
        let id = mp.now.mnt_id;
        if !mp.now.mount_root || !ids.contains(&(id as u32)) {
            break;
        }
        mp.unmount(UnmountFlags::DETACH, tpath)?;
        detached.push(id as u32);
    }
    let dirs_removed = remove_dirs(tpath, created_dirs)?;
    Ok(UnpublishOutcome::Detached {
        unmounted,
        detached,
        holders,
        foreign,
        dirs_removed,
    })
}

fn busy(target: &Path, mount_point: &Path, holders: Vec<Holder>) -> BindError {
    let hint = if holders.is_empty() {
        " (no process found: a kernel user such as a loop device or swap file on it, or a process in another mount namespace)"
    } else {
        ""
    };
    BindError::Busy {
        target: target.to_path_buf(),
        mount_point: mount_point.to_path_buf(),
        holders,
        hint,
    }
}

/// A mount point reached without following links: an fd of its parent
/// directory and what the name shows now.
struct MountPoint {
    parent: OwnedFd,
    name: PathBuf,
    now: Ident,
}

/// Opens `path`'s parent without following links and looks at `path`
/// through it (the fd on `path` itself is closed again: an open fd on a
/// mount makes it busy). `None` when a component is missing.
fn open_mount_point(path: &Path) -> Result<Option<MountPoint>, BindError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let Some(pfd) = open_nofollow(parent, OFlags::PATH | OFlags::DIRECTORY)? else {
        return Ok(None);
    };
    let fd = match openat2(
        &pfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        NO_LINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(classify(e, path)),
    };
    let now = ident(fd.as_fd(), path)?;
    Ok(Some(MountPoint {
        parent: pfd,
        name: PathBuf::from(name),
        now,
    }))
}

impl MountPoint {
    /// Unmounts the top mount at this name. The path goes through the
    /// parent's `/proc/self/fd` link (the parent was resolved without
    /// following links) and `UMOUNT_NOFOLLOW` keeps a link swapped in at the
    /// name from redirecting the unmount.
    fn unmount(&self, flags: UnmountFlags, shown: &Path) -> Result<(), BindError> {
        let p =
            PathBuf::from(format!("/proc/self/fd/{}", self.parent.as_raw_fd())).join(&self.name);
        unmount(p, flags | UnmountFlags::NOFOLLOW).map_err(sys("umount", shown))
    }
}

/// Pauses between unmount attempts that failed with `EBUSY`. A path walk
/// over the mount (a `/proc` scan such as lsof, a monitoring agent or our
/// own holder search statx-ing `/proc/PID/fd/*`), or a child forked by
/// another thread that has not yet exec'ed and still holds a copy of an fd,
/// pins a mount for a moment, and umount2 counts references exactly — the
/// tests saw this as spurious Busy with no holder about one run in five.
const BUSY_RETRY_MS: &[u64] = &[2, 5, 10, 20, 50, 100];

/// [`unmount_checked`], retried on `EBUSY` after each pause of
/// [`BUSY_RETRY_MS`] (about 190 ms in all) before the tree counts as busy.
fn unmount_retrying(m: &mountinfo::MountEntry) -> Result<(), BindError> {
    let mut pauses = BUSY_RETRY_MS.iter();
    loop {
        match unmount_checked(m, UnmountFlags::empty()) {
            Err(BindError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                match pauses.next() {
                    Some(ms) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
                    None => {
                        return Err(BindError::Sys {
                            op: "umount",
                            path: m.mount_point.clone(),
                            source,
                        })
                    }
                }
            }
            r => return r,
        }
    }
}

/// Unmounts `m` after checking that its mount point, reached without
/// following links, shows that very mount.
fn unmount_checked(m: &mountinfo::MountEntry, flags: UnmountFlags) -> Result<(), BindError> {
    let p = &m.mount_point;
    let Some(mp) = open_mount_point(p)? else {
        return Ok(());
    };
    if !mp.now.mount_root || mp.now.mnt_id != u64::from(m.id) {
        // Already gone (the id at the path is its parent's): nothing to do;
        // anything else means the tree changed.
        if mp.now.mnt_id == u64::from(m.parent) {
            return Ok(());
        }
        return Err(BindError::Changed {
            path: p.clone(),
            expected: m.id,
            found: mp.now.mnt_id,
        });
    }
    mp.unmount(flags, p)
}

/// [`find_holders`] twice, 20 ms apart, keeping only what both saw: a
/// file some thread has open for a moment is not a holder.
fn stable_holders(ids: &HashSet<u32>, target: &Path) -> Vec<Holder> {
    let first = find_holders(ids, target);
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = find_holders(ids, target);
    first.into_iter().filter(|h| second.contains(h)).collect()
}

/// Processes whose cwd, root or open files are on one of the mounts `ids`
/// or, as `/proc` prints it, at or under `target` (catches copies of the
/// tree propagated into other mount namespaces).
fn find_holders(ids: &HashSet<u32>, target: &Path) -> Vec<Holder> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = PathBuf::from(format!("/proc/{pid}"));
        let mut links: Vec<(String, PathBuf)> = vec![
            ("cwd".into(), base.join("cwd")),
            ("root".into(), base.join("root")),
        ];
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for f in fds.flatten() {
                links.push((format!("fd {}", f.file_name().to_string_lossy()), f.path()));
            }
        }
        let comm = std::fs::read_to_string(base.join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        for (what, link) in links {
            // statx, readlink, statx: an fd closed and reused in between
            // (a busy process) must not pair one file's path with
            // another's mount.
            let look = || {
                statx(CWD, &link, AtFlags::STATX_DONT_SYNC, StatxFlags::MNT_ID)
                    .ok()
                    .map(|st| {
                        (
                            st.stx_mnt_id,
                            st.stx_dev_major,
                            st.stx_dev_minor,
                            st.stx_ino,
                        )
                    })
            };
            let before = look();
            let Ok(dest) = readlinkat(CWD, &link, Vec::new()) else {
                continue;
            };
            let dest = PathBuf::from(OsStr::from_bytes(dest.to_bytes()));
            let after = look();
            let on_ours = before.is_some()
                && before == after
                && before
                    .is_some_and(|(id, ..)| u32::try_from(id).is_ok_and(|id| ids.contains(&id)));
            if on_ours || dest.starts_with(target) {
                out.push(Holder {
                    pid,
                    comm: comm.clone(),
                    what,
                    path: dest,
                });
            }
        }
    }
    out
}

/// Removes the recorded directories that are empty, deepest first, each
/// with `unlinkat(AT_REMOVEDIR)` on its parent opened without following
/// links. Missing, non-empty or busy directories are left; returns those
/// removed.
fn remove_dirs(target: &Path, dirs: &[PathBuf]) -> Result<Vec<PathBuf>, BindError> {
    let mut sorted: Vec<&PathBuf> = dirs.iter().filter(|d| target.starts_with(d)).collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut removed = Vec::new();
    for d in sorted {
        let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else {
            continue;
        };
        let Some(pfd) = open_nofollow(parent, OFlags::PATH | OFlags::DIRECTORY)? else {
            continue;
        };
        match unlinkat(&pfd, name, AtFlags::REMOVEDIR) {
            Ok(()) => removed.push(d.clone()),
            Err(Errno::NOENT | Errno::NOTEMPTY | Errno::BUSY | Errno::NOTDIR) => {}
            Err(e) => return Err(sys("rmdir", d)(e)),
        }
    }
    Ok(removed)
}
