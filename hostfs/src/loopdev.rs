//! Loop devices goldmount can prove it made, and that a crash never leaves
//! behind.
//!
//! Shelling out to `losetup --find --show` and journalling the answer has two
//! holes: a kill between attach and journal commit leaves a loop nobody
//! records, and a journal step naming `/dev/loopN` says nothing once the
//! number has been reused by someone else. This module closes both:
//!
//! * [`attach`] binds the loop itself with `LOOP_CONFIGURE`, in one ioctl,
//!   with `LO_FLAGS_AUTOCLEAR` and an owner **tag** in `lo_file_name` (the
//!   64-byte name in `struct loop_info64`; sysfs `loop/backing_file` still
//!   shows the real file, so `losetup -a` output is unchanged). It hands back
//!   an fd that holds the device: with autoclear the kernel frees the loop
//!   when its last opener closes, so if the process dies before a mount or a
//!   dm table holds it, the loop disappears by itself.
//! * [`detach_if`] opens the device, reads its status *on that fd* and clears
//!   it only when backing file, range and tag are the recorded ones. While
//!   that fd is open the kernel cannot unbind and rebind the device (an
//!   opener pins the binding), so what was compared is what is cleared.
//! * [`find_by_tag`] / [`find_by_tag_prefix`] let recovery look loops up by
//!   owner tag instead of by image file, so a loop someone else made over
//!   the same file is never mistaken for ours.
//!
//! ## What identifies a loop ([`LoopIdentity`])
//! The kernel reports, for the backing file it holds (`vfs_getattr` of it):
//! `lo_device` = its `st_dev`, `lo_inode` = its `st_ino`, `lo_rdevice` = its
//! `st_rdev` (0 for a regular file). [`LoopIdentity::backing_dev`] is
//! `st_dev` for a regular file and `st_rdev` for a block device (the device
//! itself, not the devtmpfs that holds its node); `backing_ino` is always the
//! inode the loop opened — for a block device that is the inode of the
//! *node* (`/dev/dm-3`), so a node in another `/dev` (container) differs.
//! [`backing_of`] computes the same pair from a path.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Kernel ABI (include/uapi/linux/loop.h)
// ---------------------------------------------------------------------------

const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// The block major of loop devices (`LOOP_MAJOR`).
const LOOP_MAJOR: u32 = 7;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` (`LOOP_CONFIGURE`, Linux ≥ 5.8).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

// Layout of linux/loop.h on every Linux ABI (all fields are fixed-width);
// the unit test `layout_matches_uapi_header` compiles the header to check.
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_offset) == 24);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_number) == 40);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_flags) == 52);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_file_name) == 56);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_init) == 216);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);
const _: () = assert!(std::mem::offset_of!(LoopConfig, info) == 8);
const _: () = assert!(std::mem::offset_of!(LoopConfig, reserved) == 240);

impl LoopInfo64 {
    fn zeroed() -> Self {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        }
    }

    /// `lo_file_name` up to its NUL: the raw tag bytes.
    fn name(&self) -> &[u8] {
        let end = self
            .lo_file_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LO_NAME_SIZE);
        &self.lo_file_name[..end]
    }

    fn identity(&self) -> LoopIdentity {
        LoopIdentity {
            // lo_rdevice is the backing file's st_rdev: non-zero only for a
            // block device, whose own number is what identifies it.
            backing_dev: if self.lo_rdevice != 0 {
                self.lo_rdevice
            } else {
                self.lo_device
            },
            backing_ino: self.lo_inode,
            offset: self.lo_offset,
            size_limit: self.lo_sizelimit,
            tag: String::from_utf8_lossy(self.name()).into_owned(),
            autoclear: self.lo_flags & LO_FLAGS_AUTOCLEAR != 0,
            read_only: self.lo_flags & LO_FLAGS_READ_ONLY != 0,
        }
    }

    /// Backing file, range and tag equal `expected`'s. The tag is compared as
    /// raw bytes, so a foreign name that is not UTF-8 never matches.
    fn matches(&self, expected: &LoopIdentity) -> bool {
        let found = self.identity();
        found.backing_dev == expected.backing_dev
            && found.backing_ino == expected.backing_ino
            && found.offset == expected.offset
            && found.size_limit == expected.size_limit
            && self.name() == expected.tag.as_bytes()
    }
}

// SAFETY (all ioctl wrappers below): each passes a request number together
// with the argument type the kernel defines for it (a pointer to a live,
// correctly laid out #[repr(C)] struct, an fd number, or nothing); the fd is
// borrowed for the duration of the call, so it is open. The kernel does not
// keep the pointer after the call returns.

fn ioctl_ptr<T>(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    arg: *mut T,
) -> io::Result<libc::c_int> {
    // SAFETY: see the note above; `arg` points to a `T` owned by the caller
    // and valid for reads and writes for the whole call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn ioctl_val(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    arg: libc::c_ulong,
) -> io::Result<libc::c_int> {
    // SAFETY: see the note above; the argument is passed by value (an fd
    // number or 0), no memory is shared with the kernel.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn get_status(fd: BorrowedFd<'_>) -> io::Result<LoopInfo64> {
    let mut info = LoopInfo64::zeroed();
    ioctl_ptr(fd, LOOP_GET_STATUS64, &mut info)?;
    Ok(info)
}

fn set_status(fd: BorrowedFd<'_>, info: &LoopInfo64) -> io::Result<()> {
    let mut copy = *info;
    ioctl_ptr(fd, LOOP_SET_STATUS64, &mut copy).map(drop)
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// What to bind: a range of a backing file, and the owner tag that later
/// proves the loop is goldmount's.
#[derive(Debug, Clone, Copy)]
pub struct LoopSpec<'a> {
    /// Image file or block device to expose.
    pub backing: &'a Path,
    /// First byte of the range.
    pub offset: u64,
    /// Length of the range in bytes; 0 = to the end of the backing file.
    pub size_limit: u64,
    /// Bind read-only (backing opened `O_RDONLY`, `LO_FLAGS_READ_ONLY`).
    pub read_only: bool,
    /// Owner tag stored in `lo_file_name`: 1..=63 bytes, no NUL.
    pub tag: &'a str,
}

/// What identifies a bound loop device, to record before the loop is made
/// and to compare before it is undone. See the module doc for what
/// `backing_dev`/`backing_ino` hold for files and for block devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopIdentity {
    /// `st_dev` of a backing regular file, `st_rdev` of a backing block device.
    pub backing_dev: u64,
    /// `st_ino` of the backing file (of the node for a block device).
    pub backing_ino: u64,
    /// `lo_offset`.
    pub offset: u64,
    /// `lo_sizelimit` (0 = to the end).
    pub size_limit: u64,
    /// `lo_file_name` (lossy UTF-8; comparisons use the raw bytes).
    pub tag: String,
    /// `LO_FLAGS_AUTOCLEAR`: the kernel unbinds it at its last close.
    pub autoclear: bool,
    /// `LO_FLAGS_READ_ONLY`.
    pub read_only: bool,
}

/// A loop device this process bound, held open by an fd so that it lives
/// exactly as long as something (this fd, a mount, a dm table) uses it.
pub struct Attached {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// `N`.
    pub number: u32,
    /// The identity read back from the kernel after binding.
    pub identity: LoopIdentity,
    holder: OwnedFd,
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached")
            .field("device", &self.device)
            .field("number", &self.number)
            .field("identity", &self.identity)
            .field("holder", &self.holder.as_raw_fd())
            .finish()
    }
}

impl Attached {
    /// The fd that keeps the loop bound (opened `O_RDONLY|O_CLOEXEC`, so it
    /// never counts as a writer against a read-write mount). Keep the
    /// `Attached` alive until a mount or dm table holds the device.
    pub fn holder(&self) -> BorrowedFd<'_> {
        self.holder.as_fd()
    }

    /// Splits off the holder fd, e.g. to keep it across a longer-lived
    /// structure; closing it frees the loop unless something else holds it.
    pub fn into_parts(self) -> (PathBuf, LoopIdentity, OwnedFd) {
        (self.device, self.identity, self.holder)
    }
}

/// What [`detach_if`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachOutcome {
    /// The device was ours and is unbound now.
    Detached,
    /// The device is ours but still held (mounted, a dm table, another
    /// opener): it is marked autoclear and the kernel frees it when released.
    AutoclearSet,
    /// Not bound, or no such device: nothing to undo.
    Gone,
    /// Bound to something else (the number was reused): left untouched.
    NotOurs(LoopIdentity),
}

/// Why a loop operation failed: which device, which ioctl, which errno and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The tag cannot be stored in `lo_file_name`.
    #[error(
        "loop owner tag {tag:?} is {len} bytes; expected 1..=63 bytes without NUL \
         (lo_file_name holds 64 bytes including its terminator) — use a shorter tag"
    )]
    BadTag {
        /// The rejected tag.
        tag: String,
        /// Its length in bytes.
        len: usize,
    },
    /// `/dev/loop-control` could not be opened or gave no device.
    #[error(
        "no free loop device: {op} on /dev/loop-control failed: {errno} ({source}); \
         load the loop driver (modprobe loop) or raise its max_loop limit"
    )]
    NoFreeDevice {
        /// open or the ioctl.
        op: &'static str,
        /// Symbolic errno.
        errno: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A loop ioctl failed.
    #[error("{ioctl} on {device} failed: {errno} ({source}); {hint}")]
    Ioctl {
        /// The loop device.
        device: PathBuf,
        /// The ioctl name.
        ioctl: &'static str,
        /// Symbolic errno.
        errno: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// A file or device node could not be opened or examined.
    #[error("{op} {path} failed: {errno} ({source}); {hint}")]
    Io {
        /// What was attempted ("open backing file", "stat", ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Symbolic errno.
        errno: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// A path given as a loop device is something else.
    #[error(
        "{path} is not a loop device: expected a block device of major {LOOP_MAJOR}, \
         found {found}; pass a /dev/loopN node"
    )]
    NotALoopDevice {
        /// The path.
        path: PathBuf,
        /// What it is.
        found: String,
    },
    /// The kernel created loopN but its node never appeared.
    #[error(
        "{device} did not appear within {waited_ms} ms after LOOP_CTL_GET_FREE \
         returned {number}; is /dev a devtmpfs (mount -t devtmpfs devtmpfs /dev)?"
    )]
    NodeMissing {
        /// The expected node.
        device: PathBuf,
        /// Its number.
        number: u32,
        /// How long we waited.
        waited_ms: u128,
    },
    /// Every free number was taken by another process first.
    #[error(
        "gave up after {attempts} attempts: each free loop device was bound by another \
         process before LOOP_CONFIGURE (last tried {device}); retry when fewer loop \
         devices are being set up"
    )]
    Contended {
        /// Attempts made.
        attempts: u32,
        /// The last device tried.
        device: PathBuf,
    },
    /// The kernel holds something other than what was configured.
    #[error(
        "{device} was bound but reads back {found:?}, expected {expected:?}; it was \
         unbound again — check that the kernel supports the requested offset/size"
    )]
    ReadBack {
        /// The loop device.
        device: PathBuf,
        /// What we configured.
        expected: Box<LoopIdentity>,
        /// What the kernel reported.
        found: Box<LoopIdentity>,
    },
}

/// How many times [`attach`] takes a new free number after losing a race.
const ATTACH_ATTEMPTS: u32 = 32;
/// How long [`attach`] waits for devtmpfs to create `/dev/loopN`.
const NODE_WAIT: Duration = Duration::from_secs(2);

/// Binds `spec` to a free loop device, tagged and autoclear, and returns it
/// held by an fd.
///
/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`, open `/dev/loopN` (waiting
/// briefly for devtmpfs), open the backing file (`O_RDONLY` when read-only,
/// else `O_RDWR`; `O_CLOEXEC`), `LOOP_CONFIGURE` with offset, size limit,
/// `LO_FLAGS_AUTOCLEAR` (| `LO_FLAGS_READ_ONLY`) and the tag. When another
/// process binds the same number first (`EBUSY`) a new number is taken, up
/// to 32 times. Kernels without `LOOP_CONFIGURE` (< 5.8: `ENOTTY`/`EINVAL`)
/// get `LOOP_SET_FD` + `LOOP_SET_STATUS64` — there a kill between the two
/// ioctls leaves an untagged loop without autoclear. The identity is read
/// back from the kernel and checked against the spec.
pub fn attach(spec: &LoopSpec<'_>) -> Result<Attached, LoopError> {
    let name = tag_bytes(spec.tag)?;
    let backing = open_backing(spec)?;
    let bmeta = backing
        .metadata()
        .map_err(|e| io_err("stat backing file", spec.backing, e, "check the path"))?;
    let (bdev, bino) = identity_of_meta(&bmeta);

    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(|source| LoopError::NoFreeDevice {
            op: "open",
            errno: errno_name(&source),
            source,
        })?;

    let mut info = LoopInfo64::zeroed();
    info.lo_offset = spec.offset;
    info.lo_sizelimit = spec.size_limit;
    info.lo_flags = LO_FLAGS_AUTOCLEAR
        | if spec.read_only {
            LO_FLAGS_READ_ONLY
        } else {
            0
        };
    info.lo_file_name[..name.len()].copy_from_slice(name);

    let mut tried: Vec<u32> = Vec::new();
    let mut last = PathBuf::new();
    for attempt in 0..ATTACH_ATTEMPTS {
        let number = ioctl_val(control.as_fd(), LOOP_CTL_GET_FREE, 0).map_err(|source| {
            LoopError::NoFreeDevice {
                op: "LOOP_CTL_GET_FREE",
                errno: errno_name(&source),
                source,
            }
        })?;
        let number = u32::try_from(number).unwrap_or(u32::MAX);
        if tried.contains(&number) {
            // The same number again: whoever holds it has not finished
            // binding. Give them a moment instead of spinning.
            sleep(Duration::from_millis(1 << attempt.min(5)));
        }
        tried.push(number);
        let device = PathBuf::from(format!("/dev/loop{number}"));
        last.clone_from(&device);
        let dev = open_new_node(&device, number, spec.read_only)?;
        match bind(&dev, &backing, &info) {
            Ok(()) => return finish(dev, device, number, spec, (bdev, bino)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(source) => {
                return Err(LoopError::Ioctl {
                    device,
                    ioctl: "LOOP_CONFIGURE",
                    errno: errno_name(&source),
                    source,
                    hint: "check that the backing file is a regular file or block device \
                           on a filesystem that supports direct reads and writes, and that \
                           offset/size_limit lie within it",
                });
            }
        }
    }
    Err(LoopError::Contended {
        attempts: ATTACH_ATTEMPTS,
        device: last,
    })
}

/// The kernel's view of a device node: `None` when it is not bound (`ENXIO`)
/// or does not exist.
pub fn status(device: &Path) -> Result<Option<LoopIdentity>, LoopError> {
    let Some(fd) = open_existing(device)? else {
        return Ok(None);
    };
    match get_status(fd.as_fd()) {
        Ok(info) => Ok(Some(info.identity())),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(source) => Err(ioctl_err(device, "LOOP_GET_STATUS64", source)),
    }
}

/// The `(backing_dev, backing_ino)` a spec with this backing path would get,
/// to compare with a recorded identity (`st_rdev` for a block device).
pub fn backing_of(path: &Path) -> Result<(u64, u64), LoopError> {
    let meta = fs::metadata(path)
        .map_err(|e| io_err("stat", path, e, "check that the backing file exists"))?;
    Ok(identity_of_meta(&meta))
}

/// Unbinds `device` only if it is still the loop described by `expected`
/// (backing dev+ino, offset, size limit, tag).
///
/// Opens the device, `LOOP_GET_STATUS64` on that same fd (an opener pins
/// the binding, so the comparison stays true), then `LOOP_CLR_FD` on it.
/// Current kernels never refuse `LOOP_CLR_FD` on a busy device: they mark it
/// autoclear and unbind it at its last close. So after closing our fd the
/// device is looked at again: still bound to `expected` → `AutoclearSet`
/// (a mount or dm table holds it), otherwise → `Detached`. Older kernels'
/// `EBUSY` gets `LOOP_SET_STATUS64` with the autoclear flag → `AutoclearSet`.
pub fn detach_if(device: &Path, expected: &LoopIdentity) -> Result<DetachOutcome, LoopError> {
    let Some(fd) = open_existing(device)? else {
        return Ok(DetachOutcome::Gone);
    };
    let info = match get_status(fd.as_fd()) {
        Ok(info) => info,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(DetachOutcome::Gone),
        Err(source) => return Err(ioctl_err(device, "LOOP_GET_STATUS64", source)),
    };
    if !info.matches(expected) {
        return Ok(DetachOutcome::NotOurs(info.identity()));
    }
    match ioctl_val(fd.as_fd(), LOOP_CLR_FD, 0) {
        Ok(_) => {}
        // Unbound by someone else between our two ioctls.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(DetachOutcome::Gone),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let mut with_autoclear = info;
            with_autoclear.lo_flags |= LO_FLAGS_AUTOCLEAR;
            set_status(fd.as_fd(), &with_autoclear)
                .map_err(|source| ioctl_err(device, "LOOP_SET_STATUS64", source))?;
            return Ok(DetachOutcome::AutoclearSet);
        }
        Err(source) => return Err(ioctl_err(device, "LOOP_CLR_FD", source)),
    }
    drop(fd);
    match status_raw(device)? {
        Some(now) if now.matches(expected) => Ok(DetachOutcome::AutoclearSet),
        // Unbound, or unbound and already reused by someone else.
        _ => Ok(DetachOutcome::Detached),
    }
}

/// Every bound loop device whose tag equals `tag`, by scanning
/// `/sys/block/loop*` and asking each bound one `LOOP_GET_STATUS64`.
pub fn find_by_tag(tag: &str) -> Result<Vec<(PathBuf, LoopIdentity)>, LoopError> {
    scan(|name| name == tag.as_bytes())
}

/// Every bound loop device whose tag starts with `prefix`: recovery's sweep
/// for whatever one volume's run left behind.
pub fn find_by_tag_prefix(prefix: &str) -> Result<Vec<(PathBuf, LoopIdentity)>, LoopError> {
    scan(|name| name.starts_with(prefix.as_bytes()))
}

/// True when something other than an opener holds `device`: a stacked
/// device (sysfs `holders/` of it or of a partition of it is not empty), or
/// a mount in this mount namespace (`/proc/self/mountinfo` major:minor).
/// Mounts in other mount namespaces are not seen. False when the device
/// does not exist.
pub fn in_use(device: &Path) -> bool {
    let Ok(meta) = fs::metadata(device) else {
        return false;
    };
    if !meta.file_type().is_block_device() {
        return false;
    }
    let rdev = meta.rdev();
    let mut devs = vec![rdev];
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", major(rdev), minor(rdev)));
    if has_entries(&sys.join("holders")) {
        return true;
    }
    // Partitions (only with max_part / LO_FLAGS_PARTSCAN): subdirectories
    // that have a `partition` file.
    if let Ok(entries) = fs::read_dir(&sys) {
        for entry in entries.flatten() {
            let p = entry.path();
            if !p.join("partition").exists() {
                continue;
            }
            if has_entries(&p.join("holders")) {
                return true;
            }
            if let Some(dev) = read_dev_file(&p.join("dev")) {
                devs.push(dev);
            }
        }
    }
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted: Vec<String> = devs
        .iter()
        .map(|&d| format!("{}:{}", major(d), minor(d)))
        .collect();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(2))
        .any(|mm| wanted.iter().any(|w| w == mm))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tag_bytes(tag: &str) -> Result<&[u8], LoopError> {
    let b = tag.as_bytes();
    if b.is_empty() || b.len() >= LO_NAME_SIZE || b.contains(&0) {
        return Err(LoopError::BadTag {
            tag: tag.to_owned(),
            len: b.len(),
        });
    }
    Ok(b)
}

fn open_backing(spec: &LoopSpec<'_>) -> Result<File, LoopError> {
    OpenOptions::new()
        .read(true)
        .write(!spec.read_only)
        .custom_flags(libc::O_CLOEXEC)
        .open(spec.backing)
        .map_err(|e| {
            io_err(
                if spec.read_only {
                    "open backing file O_RDONLY"
                } else {
                    "open backing file O_RDWR"
                },
                spec.backing,
                e,
                "check that the backing file exists and is writable unless read_only is set",
            )
        })
}

/// Opens the node of a number `LOOP_CTL_GET_FREE` just returned, waiting
/// for devtmpfs, and checks it is that device. Read-write loops need a
/// writable loop fd at `LOOP_CONFIGURE`, else the kernel makes them
/// read-only.
fn open_new_node(device: &Path, number: u32, read_only: bool) -> Result<File, LoopError> {
    let start = Instant::now();
    let file = loop {
        match OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(device)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && start.elapsed() < NODE_WAIT => {
                sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoopError::NodeMissing {
                    device: device.to_owned(),
                    number,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            Err(e) => return Err(io_err("open", device, e, "run as root (CAP_SYS_ADMIN)")),
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| io_err("fstat", device, e, "retry"))?;
    let sys = PathBuf::from(format!("/sys/block/loop{number}/dev"));
    let expected = read_dev_file(&sys);
    // Without a readable sysfs, a loop-major block device is accepted.
    let matches = match expected {
        Some(dev) => meta.rdev() == dev,
        None => major(meta.rdev()) == LOOP_MAJOR,
    };
    if !meta.file_type().is_block_device() || !matches {
        return Err(LoopError::NotALoopDevice {
            path: device.to_owned(),
            found: format!(
                "device {}:{} where {} says {}",
                major(meta.rdev()),
                minor(meta.rdev()),
                sys.display(),
                expected.map_or("nothing".to_owned(), |d| format!(
                    "{}:{}",
                    major(d),
                    minor(d)
                ))
            ),
        });
    }
    Ok(file)
}

/// `LOOP_CONFIGURE`, or `LOOP_SET_FD` + `LOOP_SET_STATUS64` where the kernel
/// lacks it. `EINVAL` also means "bad argument" to a kernel that has
/// `LOOP_CONFIGURE`, so it only leads to the fallback on kernels older than
/// 5.8; `ENOTTY` always does.
fn bind(dev: &File, backing: &File, info: &LoopInfo64) -> io::Result<()> {
    let mut config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: *info,
        reserved: [0; 8],
    };
    match ioctl_ptr(dev.as_fd(), LOOP_CONFIGURE, &mut config) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => bind_legacy(dev, backing, info),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !kernel_has_loop_configure() => {
            bind_legacy(dev, backing, info)
        }
        Err(e) => Err(e),
    }
}

/// The pre-5.8 way: bind, then set range, flags and tag. A kill between the
/// two ioctls leaves an untagged loop without autoclear.
fn bind_legacy(dev: &File, backing: &File, info: &LoopInfo64) -> io::Result<()> {
    ioctl_val(
        dev.as_fd(),
        LOOP_SET_FD,
        backing.as_raw_fd() as libc::c_ulong,
    )?;
    if let Err(e) = set_status(dev.as_fd(), info) {
        // Leave nothing half-made behind: we are the only opener, so this
        // unbinds at once.
        let _ = ioctl_val(dev.as_fd(), LOOP_CLR_FD, 0);
        return Err(e);
    }
    Ok(())
}

/// Linux ≥ 5.8 (or a release string we cannot read: then assume so).
fn kernel_has_loop_configure() -> bool {
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return true;
    };
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(ma), Some(mi)) => (ma, mi) >= (5, 8),
        _ => true,
    }
}

/// Reads the identity back, checks it against the spec, and swaps the
/// configuring fd for an `O_RDONLY` holder of the same open device.
fn finish(
    dev: File,
    device: PathBuf,
    number: u32,
    spec: &LoopSpec<'_>,
    (bdev, bino): (u64, u64),
) -> Result<Attached, LoopError> {
    let undo = |dev: &File| {
        let _ = ioctl_val(dev.as_fd(), LOOP_CLR_FD, 0);
    };
    let info = match get_status(dev.as_fd()) {
        Ok(i) => i,
        Err(source) => {
            undo(&dev);
            return Err(ioctl_err(&device, "LOOP_GET_STATUS64", source));
        }
    };
    let found = info.identity();
    let expected = LoopIdentity {
        backing_dev: bdev,
        backing_ino: bino,
        offset: spec.offset,
        size_limit: spec.size_limit,
        tag: spec.tag.to_owned(),
        autoclear: true,
        read_only: spec.read_only,
    };
    if found != expected {
        undo(&dev);
        return Err(LoopError::ReadBack {
            device,
            expected: Box::new(expected),
            found: Box::new(found),
        });
    }
    // Reopen the same open device (not the path) read-only: a writable
    // holder would count as a writer, which kernels built without
    // CONFIG_BLK_DEV_WRITE_MOUNTED answer by refusing read-write mounts.
    let holder = if spec.read_only {
        OwnedFd::from(dev)
    } else {
        let via = PathBuf::from(format!("/proc/self/fd/{}", dev.as_raw_fd()));
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&via)
        {
            Ok(ro) => OwnedFd::from(ro),
            Err(e) => {
                undo(&dev);
                return Err(io_err(
                    "reopen read-only",
                    &via,
                    e,
                    "check that /proc is mounted",
                ));
            }
        }
    };
    Ok(Attached {
        device,
        number,
        identity: found,
        holder,
    })
}

/// Opens an existing node read-only and checks it is a loop device; `None`
/// when there is no such node.
fn open_existing(device: &Path) -> Result<Option<File>, LoopError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
    {
        Ok(f) => f,
        // ENXIO: a node whose device is gone (LOOP_CTL_REMOVE).
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENXIO) => {
            return Ok(None)
        }
        Err(e) => return Err(io_err("open", device, e, "run as root (CAP_SYS_ADMIN)")),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_err("fstat", device, e, "retry"))?;
    if !meta.file_type().is_block_device() || major(meta.rdev()) != LOOP_MAJOR {
        let found = if meta.file_type().is_block_device() {
            format!("block device {}:{}", major(meta.rdev()), minor(meta.rdev()))
        } else {
            "not a block device".to_owned()
        };
        return Err(LoopError::NotALoopDevice {
            path: device.to_owned(),
            found,
        });
    }
    Ok(Some(file))
}

fn status_raw(device: &Path) -> Result<Option<LoopInfo64>, LoopError> {
    let Some(fd) = open_existing(device)? else {
        return Ok(None);
    };
    match get_status(fd.as_fd()) {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(source) => Err(ioctl_err(device, "LOOP_GET_STATUS64", source)),
    }
}

fn scan(want: impl Fn(&[u8]) -> bool) -> Result<Vec<(PathBuf, LoopIdentity)>, LoopError> {
    let root = Path::new("/sys/block");
    let entries = fs::read_dir(root)
        .map_err(|e| io_err("read_dir", root, e, "check that /sys is mounted"))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name
            .as_bytes()
            .strip_prefix(b"loop")
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `loop/` exists only while bound: unbound devices are not opened.
        if !entry.path().join("loop").exists() {
            continue;
        }
        let device = PathBuf::from(format!("/dev/loop{n}"));
        // A device unbound or removed since the sysfs look is skipped.
        if let Some(info) = status_raw(&device)? {
            if want(info.name()) {
                found.push((n, device, info.identity()));
            }
        }
    }
    found.sort_by_key(|(n, _, _)| *n);
    Ok(found.into_iter().map(|(_, d, i)| (d, i)).collect())
}

fn identity_of_meta(meta: &fs::Metadata) -> (u64, u64) {
    if meta.file_type().is_block_device() {
        (meta.rdev(), meta.ino())
    } else {
        (meta.dev(), meta.ino())
    }
}

fn has_entries(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Parses a sysfs `dev` file ("7:3") into a `dev_t`.
fn read_dev_file(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let (ma, mi) = text.trim().split_once(':')?;
    Some(libc::makedev(ma.parse().ok()?, mi.parse().ok()?))
}

fn major(dev: u64) -> u32 {
    libc::major(dev)
}

fn minor(dev: u64) -> u32 {
    libc::minor(dev)
}

fn io_err(op: &'static str, path: &Path, source: io::Error, hint: &'static str) -> LoopError {
    LoopError::Io {
        op,
        path: path.to_owned(),
        errno: errno_name(&source),
        source,
        hint,
    }
}

fn ioctl_err(device: &Path, ioctl: &'static str, source: io::Error) -> LoopError {
    LoopError::Ioctl {
        device: device.to_owned(),
        ioctl,
        errno: errno_name(&source),
        source,
        hint: "check that it is a loop device and that the caller is root",
    }
}

/// The symbolic name of the errno in `e`, for messages people grep for.
fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ENXIO) => "ENXIO",
        Some(libc::EBADF) => "EBADF",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::ENODEV) => "ENODEV",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EROFS) => "EROFS",
        Some(libc::ENOTTY) => "ENOTTY",
        Some(libc::EFBIG) => "EFBIG",
        Some(libc::EOVERFLOW) => "EOVERFLOW",
        Some(libc::ELOOP) => "ELOOP",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::EINTR) => "EINTR",
        Some(_) => "errno",
        None => "error",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::process::Command;

    /// Compiles a C program against the installed linux/loop.h and compares
    /// sizes and offsets with the Rust structs.
    #[test]
    fn layout_matches_uapi_header() {
        let dir = std::env::temp_dir().join(format!("loopdev-layout-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("l.c");
        fs::write(
            &src,
            r#"#include <stdio.h>
#include <stddef.h>
#include <linux/loop.h>
int main(void){printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %d %d %d %d %d %d",
 sizeof(struct loop_info64), sizeof(struct loop_config),
 offsetof(struct loop_info64, lo_offset), offsetof(struct loop_info64, lo_sizelimit),
 offsetof(struct loop_info64, lo_number), offsetof(struct loop_info64, lo_flags),
 offsetof(struct loop_info64, lo_file_name), offsetof(struct loop_info64, lo_init),
 offsetof(struct loop_config, info), offsetof(struct loop_config, __reserved),
 LOOP_CONFIGURE, LOOP_GET_STATUS64, LOOP_SET_STATUS64, LOOP_CLR_FD, LOOP_CTL_GET_FREE,
 LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY << 8);}
"#,
        )
        .unwrap();
        let exe = dir.join("l");
        let cc = Command::new("cc").arg("-o").arg(&exe).arg(&src).output();
        let cc = cc.expect("cc is needed for this test (apt-get install gcc linux-libc-dev)");
        assert!(
            cc.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = Command::new(&exe).output().unwrap();
        let _ = fs::remove_dir_all(&dir);
        let c = String::from_utf8(out.stdout).unwrap();
        let rust = format!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            std::mem::size_of::<LoopInfo64>(),
            std::mem::size_of::<LoopConfig>(),
            std::mem::offset_of!(LoopInfo64, lo_offset),
            std::mem::offset_of!(LoopInfo64, lo_sizelimit),
            std::mem::offset_of!(LoopInfo64, lo_number),
            std::mem::offset_of!(LoopInfo64, lo_flags),
            std::mem::offset_of!(LoopInfo64, lo_file_name),
            std::mem::offset_of!(LoopInfo64, lo_init),
            std::mem::offset_of!(LoopConfig, info),
            std::mem::offset_of!(LoopConfig, reserved),
            LOOP_CONFIGURE,
            LOOP_GET_STATUS64,
            LOOP_SET_STATUS64,
            LOOP_CLR_FD,
            LOOP_CTL_GET_FREE,
            LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY << 8,
        );
        assert_eq!(c, rust);
    }

    #[test]
    fn tags_that_do_not_fit_are_refused() {
        assert!(tag_bytes("gm:v1").is_ok());
        assert!(tag_bytes(&"x".repeat(63)).is_ok());
        assert!(matches!(
            tag_bytes(&"x".repeat(64)),
            Err(LoopError::BadTag { len: 64, .. })
        ));
        assert!(tag_bytes("").is_err());
        assert!(tag_bytes("a\0b").is_err());
    }

    #[test]
    fn raw_tag_comparison_ignores_lossy_lookalikes() {
        let mut info = LoopInfo64::zeroed();
        info.lo_file_name[..3].copy_from_slice(b"a\xffb");
        let id = info.identity();
        assert_eq!(id.tag, "a\u{fffd}b");
        // The lossy string does not match the raw bytes it came from.
        assert!(!info.matches(&id));
        info.lo_file_name[..3].copy_from_slice(b"abc");
        let id = info.identity();
        assert!(info.matches(&id));
    }

    /// The pre-5.8 fallback, run on this kernel: the same tag, range and
    /// autoclear end up on the device, and closing it unbinds it.
    #[test]
    fn legacy_set_fd_and_status_bind_the_same_identity() {
        let dir = std::env::temp_dir().join(format!("loopdev-legacy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("l.img");
        File::create(&img).unwrap().set_len(1 << 20).unwrap();
        let tag = format!("gmtest:{}:legacy", std::process::id());
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        let mut info = LoopInfo64::zeroed();
        info.lo_offset = 4096;
        info.lo_sizelimit = 8192;
        info.lo_flags = LO_FLAGS_AUTOCLEAR;
        info.lo_file_name[..tag.len()].copy_from_slice(tag.as_bytes());
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")
            .unwrap();
        // Other tests bind devices concurrently: retry on EBUSY.
        let (device, dev) = (0..32)
            .find_map(|_| {
                let n = ioctl_val(control.as_fd(), LOOP_CTL_GET_FREE, 0).unwrap() as u32;
                let device = PathBuf::from(format!("/dev/loop{n}"));
                let dev = open_new_node(&device, n, false).unwrap();
                match bind_legacy(&dev, &backing, &info) {
                    Ok(()) => Some((device, dev)),
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => None,
                    Err(e) => panic!("{e}"),
                }
            })
            .expect("a free loop device within 32 tries");
        let got = get_status(dev.as_fd()).unwrap();
        let meta = backing.metadata().unwrap();
        assert_eq!(
            got.identity(),
            LoopIdentity {
                backing_dev: meta.dev(),
                backing_ino: meta.ino(),
                offset: 4096,
                size_limit: 8192,
                tag: tag.clone(),
                autoclear: true,
                read_only: false,
            }
        );
        drop(dev);
        assert!(!matches!(status(&device).unwrap(), Some(id) if id.tag == tag));
        let _ = fs::remove_dir_all(&dir);
    }
}
