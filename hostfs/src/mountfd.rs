//! Mounting onto, and unmounting from, directories held by fd.
//!
//! A mount point inside a clone is clone content: between a lookup and a
//! `mount(2)` by path, a directory could become a symlink to a host path.
//! So [`mount_on`] mounts onto the `O_PATH` fd of a [`ResolvedDir`]
//! (`/proc/self/fd/N`) and reads back the identity of the mount it made
//! (mount id and device number from `/proc/self/mountinfo`, and the unique
//! mount id that the kernel never reuses).
//! [`unmount`] takes that identity and unmounts exactly that mount or nothing:
//! it opens the mount point, checks `statx(STATX_MNT_ID)` of what it opened
//! against the id, and unmounts through the fd it checked.
//!
//! Kernel note (measured on 6.18): `umount2("/proc/self/fd/N", 0)` of an
//! `O_PATH` fd on the mount root fails with `EBUSY`, because the fd itself
//! holds a reference to the mount; `MNT_DETACH` through it works. So a
//! non-lazy unmount goes through an `O_PATH` fd of the mount point's
//! *parent* directory (`/proc/self/fd/P/<name>`, `UMOUNT_NOFOLLOW`), after
//! `statx` of `<name>` beneath that fd showed our mount id; a lazy one goes
//! through the mount's own fd.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, statx, AtFlags, Mode, OFlags, ResolveFlags, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::clonefs::{proc_fd_path, ResolvedDir};

/// Per-mount flags for [`mount_on`]. The default is what clone data gets:
/// `nosuid,nodev`, read-write, exec allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_RDONLY`.
    pub read_only: bool,
    /// `MS_NOSUID`: setuid bits in the clone grant nothing on the host.
    pub nosuid: bool,
    /// `MS_NODEV`: device nodes in the clone cannot be opened.
    pub nodev: bool,
    /// `MS_NOEXEC`.
    pub noexec: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            nosuid: true,
            nodev: true,
            noexec: false,
        }
    }
}

impl MountOptions {
    /// The `mount(2)` flags these options stand for.
    pub fn flags(&self) -> MountFlags {
        let mut f = MountFlags::empty();
        f.set(MountFlags::RDONLY, self.read_only);
        f.set(MountFlags::NOSUID, self.nosuid);
        f.set(MountFlags::NODEV, self.nodev);
        f.set(MountFlags::NOEXEC, self.noexec);
        f
    }
}

/// The identity of a mount [`mount_on`] made: what undo checks before
/// unmounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountId {
    /// Mount id (mountinfo field 1, `statx` `STATX_MNT_ID`).
    pub mnt_id: u32,
    /// The 64-bit mount id that is never reused while the system runs
    /// (`STATX_MNT_ID_UNIQUE`, Linux 6.8+; `None` on older kernels).
    pub unique_id: Option<u64>,
    /// Device major number of the mounted filesystem.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Where it is mounted on the host.
    pub host_path: PathBuf,
    /// Its per-mount options as mountinfo shows them (`rw,nosuid,nodev,...`).
    pub mount_options: String,
}

/// What [`unmount_id`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmountOutcome {
    /// The mount was unmounted.
    Unmounted,
    /// There was no mount with that id (already unmounted).
    Gone,
    /// The mount was detached lazily (`MNT_DETACH`); the filesystem stays
    /// alive until its last user closes it.
    Detached,
}

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount(2)` failed.
    #[error("mounting {} ({fstype}, options {data:?}) on {} failed: {errno}{}", source_dev.display(), target.display(), hint_suffix(*errno))]
    Mount {
        /// The device.
        source_dev: PathBuf,
        /// The mount point (host path).
        target: PathBuf,
        /// Filesystem type asked for.
        fstype: String,
        /// Filesystem-specific options asked for.
        data: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The mount was made but could not be found in mountinfo; it is left
    /// in place.
    #[error("mounted {} on {} but found no matching new mount there in /proc/self/mountinfo; it was left in place, check `findmnt {}` and unmount it by hand", source_dev.display(), target.display(), target.display())]
    Unidentified {
        /// The device.
        source_dev: PathBuf,
        /// The mount point.
        target: PathBuf,
    },
    /// The mount point path now leads to a different mount; nothing was
    /// unmounted.
    #[error("mount {mnt_id} is recorded at {} but that path now leads to {found}; nothing was unmounted (something was mounted over it or the path changed; unmount what is on top first)", mount_point.display())]
    NotOurs {
        /// The mount asked for.
        mnt_id: u32,
        /// Its mount point per mountinfo.
        mount_point: PathBuf,
        /// What the path leads to now.
        found: String,
    },
    /// The mount is in use.
    #[error("mount {mnt_id} at {} is busy (open files, a process's working directory, or mounts below it); close them, or unmount lazily", mount_point.display())]
    Busy {
        /// The mount.
        mnt_id: u32,
        /// Its mount point.
        mount_point: PathBuf,
    },
    /// Bad input (NUL in options, unmounting `/`).
    #[error("{0}")]
    Invalid(String),
    /// Any other failure.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A hint for the common `mount(2)` failures.
pub fn mount_hint(errno: Errno) -> Option<&'static str> {
    Some(match errno {
        Errno::ROFS | Errno::ACCESS => {
            "the device is read-only: mount it read-only (ro), with norecovery for a journalled filesystem"
        }
        Errno::INVAL => {
            "wrong filesystem type or bad superblock, or an option the filesystem does not know (see dmesg)"
        }
        Errno::BUSY => "already mounted / in use (another mount of this device, or a holder such as LVM, md or multipath)",
        Errno::NODEV => "this kernel does not know the filesystem type (load its module)",
        Errno::NOTBLK => "the source is not a block device",
        Errno::NOENT => "the source device or the mount point does not exist",
        Errno::UCLEAN | Errno::IO => "the filesystem is corrupt or the device has I/O errors (see dmesg)",
        _ => return None,
    })
}

fn hint_suffix(errno: Errno) -> String {
    mount_hint(errno)
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

fn io_err(op: impl Into<String>, source: impl Into<io::Error>) -> MountError {
    MountError::Io {
        op: op.into(),
        source: source.into(),
    }
}

/// `mount(2)` of `source` (a trusted host device node, or a pseudo source
/// such as `none` for tmpfs) with `fstype` and filesystem options `data`
/// onto `dir` through its fd, and the identity of the new mount: the top
/// mount at `dir`'s host path that was not there before and whose device
/// number equals the source's `st_rdev` (for a non-device source: whose
/// filesystem type is `fstype`).
pub fn mount_on(
    dir: &ResolvedDir,
    source: &Path,
    fstype: &str,
    opts: MountOptions,
    data: &str,
) -> Result<MountId, MountError> {
    mount_on_with(dir, source, fstype, opts, MountFlags::empty(), data)
}

/// [`mount_on`] with further per-mount flags on top of `opts` (access-time
/// flags such as `MS_NOATIME`, which the kernel takes as flags and refuses
/// in the data string).
pub fn mount_on_with(
    dir: &ResolvedDir,
    source: &Path,
    fstype: &str,
    opts: MountOptions,
    extra: MountFlags,
    data: &str,
) -> Result<MountId, MountError> {
    let rdev = match std::fs::metadata(source) {
        Ok(m) if m.file_type().is_block_device() => Some(m.rdev()),
        _ => None,
    };
    let cdata = CString::new(data)
        .map_err(|_| MountError::Invalid(format!("mount options {data:?} contain a NUL byte")))?;
    let before_path = dir
        .current_host_path()
        .unwrap_or_else(|_| dir.host_path().to_path_buf());
    let before: HashSet<u32> = mountinfo::current()
        .map_err(|e| io_err("reading /proc/self/mountinfo", e))?
        .into_iter()
        .filter(|e| e.mount_point == before_path)
        .map(|e| e.id)
        .collect();
    rustix::mount::mount(
        source,
        dir.proc_path(),
        fstype,
        opts.flags() | extra,
        if data.is_empty() {
            None
        } else {
            Some(cdata.as_c_str())
        },
    )
    .map_err(|errno| MountError::Mount {
        source_dev: source.to_path_buf(),
        target: dir.host_path().to_path_buf(),
        fstype: fstype.to_string(),
        data: data.to_string(),
        errno,
    })?;
    // The directory may have been renamed since it was resolved; the fd
    // knows where it is now.
    let target = dir
        .current_host_path()
        .unwrap_or_else(|_| dir.host_path().to_path_buf());
    let unidentified = || MountError::Unidentified {
        source_dev: source.to_path_buf(),
        target: target.clone(),
    };
    let after = mountinfo::current().map_err(|e| io_err("reading /proc/self/mountinfo", e))?;
    let at: Vec<&mountinfo::MountEntry> =
        after.iter().filter(|e| e.mount_point == target).collect();
    let top = at
        .iter()
        .find(|e| !at.iter().any(|o| o.parent == e.id))
        .ok_or_else(unidentified)?;
    // btrfs (and other filesystems with anonymous device numbers) show
    // `0:N` in mountinfo, not the device's number: then the new top mount
    // must name the source device and have the type asked for.
    let matches = match rdev {
        Some(r) => {
            (top.major, top.minor) == (rustix::fs::major(r), rustix::fs::minor(r))
                || (top.fstype == fstype && Path::new(&top.source) == source)
        }
        None => top.fstype == fstype,
    };
    if before.contains(&top.id) || !matches {
        return Err(unidentified());
    }
    // The unique id, read through an fd that statx shows is that mount.
    let fd = open_no_symlinks(CWD, &top.mount_point, OFlags::PATH).map_err(|_| unidentified())?;
    let (id_now, unique_id) =
        mount_ids(&fd, Path::new(""), AtFlags::EMPTY_PATH).map_err(|_| unidentified())?;
    if id_now != top.id {
        return Err(unidentified());
    }
    Ok(MountId {
        mnt_id: top.id,
        unique_id,
        major: top.major,
        minor: top.minor,
        host_path: top.mount_point.clone(),
        mount_options: top.mount_options.clone(),
    })
}

/// Unmounts exactly the mount `id` that [`mount_on`] returned, or nothing.
///
/// The mount with `id.mnt_id` must still be in mountinfo with the same
/// device number (absent → [`UnmountOutcome::Gone`]); its mount point is
/// opened with no symlinks allowed on the way, and `statx` of what was
/// opened must report `id.mnt_id` and, when recorded, the never-reused
/// `id.unique_id`; otherwise [`MountError::NotOurs`] and nothing is
/// unmounted. `lazy` detaches (`MNT_DETACH`) through the checked fd; a plain
/// unmount goes through the parent's fd (see the module doc), `EBUSY` →
/// [`MountError::Busy`].
pub fn unmount(id: &MountId, lazy: bool) -> Result<UnmountOutcome, MountError> {
    unmount_checked(id.mnt_id, Some(id), lazy)
}

/// Unmounts the mount whose id is `mnt_id` now, checked by fd as
/// [`unmount`] does, but with nothing more than the id to check.
///
/// Caution (measured on 6.18): the kernel reuses a mount id as soon as its
/// mount is gone (a tmpfs detached and a new one mounted at the same place
/// got the same id), so a recorded `u32` alone can name a later mount.
/// Prefer [`unmount`] with the whole [`MountId`].
pub fn unmount_id(mnt_id: u32, lazy: bool) -> Result<UnmountOutcome, MountError> {
    unmount_checked(mnt_id, None, lazy)
}

fn unmount_checked(
    mnt_id: u32,
    expect: Option<&MountId>,
    lazy: bool,
) -> Result<UnmountOutcome, MountError> {
    let Some(entry) = find(mnt_id)? else {
        return Ok(UnmountOutcome::Gone);
    };
    let mp = entry.mount_point.clone();
    let not_ours = |found: String| MountError::NotOurs {
        mnt_id,
        mount_point: mp.clone(),
        found,
    };
    if let Some(want) = expect {
        if (entry.major, entry.minor) != (want.major, want.minor) {
            return Err(not_ours(format!(
                "mount {mnt_id} of device {}:{} (the id was reused; ours, {}:{}, is gone)",
                entry.major, entry.minor, want.major, want.minor
            )));
        }
    }
    let (Some(parent), Some(name)) = (mp.parent(), mp.file_name()) else {
        return Err(MountError::Invalid(format!(
            "mount {mnt_id} is at {}; goldmount never unmounts the root",
            mp.display()
        )));
    };
    let parent_fd = match open_no_symlinks(CWD, parent, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => {
            return gone_or(mnt_id, || {
                not_ours(format!("no directory its parent can be opened as ({e})"))
            })
        }
    };
    let fd = match open_no_symlinks(&parent_fd, Path::new(name), OFlags::PATH) {
        Ok(fd) => fd,
        Err(e) => return gone_or(mnt_id, || not_ours(format!("nothing openable ({e})"))),
    };
    // While `fd` is open the mount it names stays allocated, so its id
    // cannot pass to another mount.
    let found = match mount_ids(&fd, Path::new(""), AtFlags::EMPTY_PATH) {
        Ok(ids) => ids,
        Err(e) => return gone_or(mnt_id, || not_ours(format!("nothing statx can see ({e})"))),
    };
    if found.0 != mnt_id {
        return gone_or(mnt_id, || not_ours(format!("mount {}", found.0)));
    }
    if let (Some(want), (_, Some(got))) = (expect.and_then(|m| m.unique_id), found) {
        if want != got {
            return Err(not_ours(format!(
                "mount {mnt_id} with unique id {got}, not {want} (the id was reused)"
            )));
        }
    }
    let result = if lazy {
        rustix::mount::unmount(proc_fd_path(fd.as_fd()), UnmountFlags::DETACH)
    } else {
        // The fd on the mount would make a plain unmount EBUSY: check the
        // name beneath the parent fd once more while it is held, then let
        // it go and unmount by that name.
        match mount_ids(&parent_fd, Path::new(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok((now, _)) if now == mnt_id => {}
            Ok((now, _)) => return Err(not_ours(format!("mount {now}"))),
            Err(e) => return gone_or(mnt_id, || not_ours(format!("nothing statx can see ({e})"))),
        }
        drop(fd);
        // A path walk that is passing through the mount (another thread's
        // /proc scan, a forked child not yet exec'ed, a reader thread just
        // closing its fd) pins it for a moment: retry EBUSY briefly before
        // calling the mount busy.
        let by_name = proc_fd_path(parent_fd.as_fd()).join(name);
        let mut tries = 0;
        loop {
            match rustix::mount::unmount(&by_name, UnmountFlags::NOFOLLOW) {
                Err(Errno::BUSY) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r,
            }
        }
    };
    match result {
        Ok(()) if lazy => Ok(UnmountOutcome::Detached),
        Ok(()) => Ok(UnmountOutcome::Unmounted),
        Err(Errno::BUSY) => Err(MountError::Busy {
            mnt_id,
            mount_point: mp.clone(),
        }),
        // Detached or unmounted by someone else since the check.
        Err(Errno::INVAL) if find(mnt_id)?.is_none() => Ok(UnmountOutcome::Gone),
        Err(e) => Err(io_err(
            format!("umount2 of mount {mnt_id} at {}", mp.display()),
            e,
        )),
    }
}

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): a 64-bit mount id never reused
/// while the system runs (rustix 1.1 has no name for it).
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// The mount id (`STATX_MNT_ID`) and, when the kernel has it, the unique
/// mount id (`STATX_MNT_ID_UNIQUE`) of what `path` beneath `dir` names.
fn mount_ids(dir: impl AsFd, path: &Path, flags: AtFlags) -> Result<(u32, Option<u64>), Errno> {
    let flags = flags | AtFlags::NO_AUTOMOUNT;
    let st = statx(&dir, path, flags, StatxFlags::MNT_ID)?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return Err(Errno::NOSYS);
    }
    let id = u32::try_from(st.stx_mnt_id).map_err(|_| Errno::OVERFLOW)?;
    let unique = statx(
        &dir,
        path,
        flags,
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )?;
    let unique = (unique.stx_mask & STATX_MNT_ID_UNIQUE != 0).then_some(unique.stx_mnt_id);
    Ok((id, unique))
}

/// The mountinfo entry with id `mnt_id`.
fn find(mnt_id: u32) -> Result<Option<mountinfo::MountEntry>, MountError> {
    Ok(mountinfo::current()
        .map_err(|e| io_err("reading /proc/self/mountinfo", e))?
        .into_iter()
        .find(|e| e.id == mnt_id))
}

/// `Gone` when `mnt_id` vanished meanwhile, else the error `other` makes.
fn gone_or(mnt_id: u32, other: impl FnOnce() -> MountError) -> Result<UnmountOutcome, MountError> {
    match find(mnt_id)? {
        None => Ok(UnmountOutcome::Gone),
        Some(_) => Err(other()),
    }
}

/// Opens `path` under `dir` with no symlink (and no magic link) followed
/// anywhere: mountinfo paths are canonical, a symlink on the way means the
/// path changed.
fn open_no_symlinks(dir: impl AsFd, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(
            dir.as_fd(),
            path,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) | Err(Errno::INTR) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}
