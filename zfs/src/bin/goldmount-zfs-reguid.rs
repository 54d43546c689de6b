//! `goldmount-zfs-reguid --guid GUID --device DEV…`: gives a clone's pool a
//! new pool GUID *before* the kernel sees it, so the clone can be imported
//! while its gold (which has the old GUID) is imported on the same host.
//!
//! OpenZFS's kernel module never opens two pools with one GUID
//! (openzfs/zfs#11404), and `zpool reguid` needs the pool imported — so a
//! clone next to its imported gold needs the GUID changed somewhere else.
//! That somewhere is libzpool: the same SPA code as the kernel module, run in
//! this process with its own, empty pool namespace. This program:
//! 1. loads OpenZFS's userland libraries (`libzpool.so.5`, OpenZFS 2.1,
//!    Debian's `libzpool5linux`) at run time, so goldmount builds and runs
//!    without them where nobody needs ZFS;
//! 2. confines itself to the devices given: in a private mount namespace
//!    it makes a tmpfs holding only those devices (`/d0`, `/d1`…: device
//!    nodes with the same numbers, or bind mounts of image files) and
//!    chroots into it. libzpool opens a vdev it did not find among the
//!    searched devices by the path stored in the label — a clone's labels
//!    name the *gold's* devices — so without this a clone with a device
//!    missing would import, and reguid, part of its gold. In the chroot
//!    such a path does not exist and the import fails instead;
//! 3. points libzpool's cache file at a path that does not exist (the
//!    host's `/etc/zfs/zpool.cache` is never read or written) and imports
//!    the pool with `cachefile=none`;
//! 4. checks the pool found has GUID `GUID`, changes it (`spa_change_guid`,
//!    what `zpool reguid` runs in the kernel), exports it and prints
//!    `{"pool": NAME, "old_guid": N, "new_guid": M}`.
//!
//! It writes only to the devices given (the clone's: the labels, an
//! uberblock and the pool's history, like any import and export). It runs as
//! its own process because libzpool keeps global state and aborts on a
//! failed assertion; the engine runs it through `toolrun` with a timeout.
//!
//! Nothing is left on the host: the tmpfs lives only in the helper's mount
//! namespace, which ends with it.
//!
//! Exit status: 0 done; 2 usage; 3 libzpool missing or of another version;
//! 4 no pool with that GUID on the devices; 5 import, reguid or export
//! failed; 6 the confinement could not be set up.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::process::ExitCode;

use libloading::{Library, Symbol};

/// What libzpool calls `nvlist_t`: only ever handled by pointer.
#[repr(C)]
struct NvList {
    _opaque: [u8; 0],
}

/// `spa_t`: only ever handled by pointer.
#[repr(C)]
struct Spa {
    _opaque: [u8; 0],
}

/// `importargs_t` of OpenZFS 2.1 (include/libzutil.h); `boolean_t` is a C
/// enum, an `int`.
#[repr(C)]
struct ImportArgs {
    path: *mut *mut c_char,
    paths: c_int,
    poolname: *const c_char,
    guid: u64,
    cachefile: *const c_char,
    can_be_active: c_int,
    scan: c_int,
    policy: *mut NvList,
}

/// `SPA_MODE_READ | SPA_MODE_WRITE` (include/sys/spa.h).
const SPA_MODE_READ_WRITE: c_int = 1 | 2;
/// `ZFS_IMPORT_NORMAL` (include/sys/fs/zfs.h).
const ZFS_IMPORT_NORMAL: u64 = 0;

/// One failure, with the exit status it gets.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// The request from the command line.
struct Args {
    guid: u64,
    devices: Vec<PathBuf>,
}

const USAGE: &str = "usage: goldmount-zfs-reguid --guid POOL_GUID --device DEV [--device DEV…]";

fn parse_args() -> Result<Args, Failure> {
    let mut guid = None;
    let mut devices = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--guid" => {
                let v = it.next().ok_or_else(|| fail(2, USAGE))?;
                let g = v.parse::<u64>().map_err(|_| {
                    fail(2, format!("--guid {v:?}: expected the pool GUID in decimal (blkid's UUID of a zfs_member)"))
                })?;
                guid = Some(g);
            }
            "--device" => devices.push(PathBuf::from(it.next().ok_or_else(|| fail(2, USAGE))?)),
            "-h" | "--help" => return Err(fail(2, USAGE)),
            other => return Err(fail(2, format!("unknown argument {other:?}; {USAGE}"))),
        }
    }
    let guid = guid.ok_or_else(|| fail(2, format!("--guid is required; {USAGE}")))?;
    if devices.is_empty() {
        return Err(fail(
            2,
            format!("at least one --device is required; {USAGE}"),
        ));
    }
    Ok(Args { guid, devices })
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("goldmount-zfs-reguid: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The OpenZFS userland libraries, loaded once.
struct Libs {
    zpool: Library,
    nvpair: Library,
    zutil: Library,
}

fn load(name: &str) -> Result<Library, Failure> {
    // SAFETY: loading a shared library runs its initialisers; these are
    // OpenZFS's own userland libraries, which the zpool and zdb programs
    // load the same way.
    unsafe { Library::new(name) }.map_err(|e| {
        fail(
            3,
            format!("cannot load {name}: {e}; install OpenZFS 2.1's userland libraries (Debian: libzpool5linux, libzfs4linux, libnvpair3linux from contrib)"),
        )
    })
}

impl Libs {
    fn open() -> Result<Libs, Failure> {
        let nvpair = load("libnvpair.so.3")?;
        let zutil = load("libzfs_core.so.3")?;
        let zpool = load("libzpool.so.5")?;
        Ok(Libs {
            zpool,
            nvpair,
            zutil,
        })
    }
}

/// Looks a symbol up, or says which library lacks it.
fn sym<'l, T>(lib: &'l Library, name: &str) -> Result<Symbol<'l, T>, Failure> {
    let c = CString::new(name).map_err(|_| fail(3, format!("bad symbol name {name:?}")))?;
    // SAFETY: each caller names `T` as the C declaration of OpenZFS 2.1
    // (checked against include/ of zfs-2.1.11); the soname pins the ABI.
    unsafe { lib.get::<T>(c.as_bytes_with_nul()) }.map_err(|e| {
        fail(
            3,
            format!("{name} missing from OpenZFS's libraries ({e}); OpenZFS 2.1 (libzpool.so.5) is required"),
        )
    })
}

/// Where the private tmpfs is mounted, in the helper's own mount namespace
/// only (so covering the host's directory there changes nothing outside).
const CONFINE_AT: &str = "/mnt";

/// libzpool's cache file: a path that exists neither on the host nor in
/// the chroot, so nothing is read from or written to a cache file.
const NO_CACHE_FILE: &str = "/nonexistent-goldmount-zfs-reguid/zpool.cache";

/// Step 1 of the confinement, while the process has one thread: a private
/// mount namespace, with a tmpfs at [`CONFINE_AT`] holding `d0`, `d1`…,
/// one per device (opened before the tmpfs covers anything). Returns the
/// paths libzpool is to search, as seen after [`enter_confinement`].
fn build_confinement(devices: &[PathBuf]) -> Result<Vec<String>, Failure> {
    use rustix::fs::{FileType, Mode, OFlags};
    use rustix::mount::{MountFlags, MountPropagationFlags};
    let bad = |what: &str, e: &dyn std::fmt::Display| fail(6, format!("{what}: {e}"));
    // SAFETY: no other thread exists yet (libzpool starts its threads in
    // kernel_init, later); NEWNS does not touch file descriptor tables.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| bad("unshare(CLONE_NEWNS)", &e))?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| bad("making the mount namespace private", &e))?;
    // Opened in the new namespace (a bind mount's source must be in it),
    // before the tmpfs covers anything.
    let mut held = Vec::new();
    for d in devices {
        let fd = rustix::fs::open(d, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| bad(&format!("opening {}", d.display()), &e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| bad(&format!("stat {}", d.display()), &e))?;
        held.push((fd, st));
    }
    rustix::mount::mount(
        "goldmount-zfs-reguid",
        CONFINE_AT,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=0700,size=1m",
    )
    .map_err(|e| bad(&format!("mounting a tmpfs at {CONFINE_AT}"), &e))?;
    let root = rustix::fs::open(
        CONFINE_AT,
        OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| bad(CONFINE_AT, &e))?;
    let mut paths = Vec::new();
    for (i, (fd, st)) in held.iter().enumerate() {
        let name = format!("d{i}");
        match FileType::from_raw_mode(st.st_mode) {
            FileType::BlockDevice => rustix::fs::mknodat(
                &root,
                name.as_str(),
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                st.st_rdev,
            )
            .map_err(|e| bad(&format!("mknod {name}"), &e))?,
            FileType::RegularFile => {
                drop(
                    rustix::fs::openat(
                        &root,
                        name.as_str(),
                        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| bad(&format!("creating {name}"), &e))?,
                );
                rustix::mount::mount_bind(
                    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)),
                    format!("{CONFINE_AT}/{name}"),
                )
                .map_err(|e| bad(&format!("binding device {i} at {name}"), &e))?;
            }
            _ => {
                return Err(fail(
                    2,
                    format!(
                        "{}: not a block device or an image file",
                        devices[i].display()
                    ),
                ))
            }
        }
        paths.push(format!("/{name}"));
    }
    Ok(paths)
}

/// Step 2, after the libraries are loaded and libzpool initialised: from
/// here on the process sees only its devices.
fn enter_confinement() -> Result<(), Failure> {
    rustix::process::chroot(CONFINE_AT)
        .map_err(|e| fail(6, format!("chroot {CONFINE_AT}: {e}")))?;
    rustix::process::chdir("/").map_err(|e| fail(6, format!("chdir / in the chroot: {e}")))
}

fn cstring(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| fail(2, format!("{s:?} contains a NUL byte")))
}

/// An errno as text.
fn errno_text(e: c_int) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn run(args: &Args) -> Result<String, Failure> {
    use std::os::unix::fs::FileTypeExt;
    for d in &args.devices {
        let t = std::fs::metadata(d)
            .map_err(|e| fail(2, format!("{}: {e}", d.display())))?
            .file_type();
        if !(t.is_block_device() || t.is_file()) {
            return Err(fail(
                2,
                format!("{}: not a block device or an image file", d.display()),
            ));
        }
    }
    let search = build_confinement(&args.devices)?;
    // Never unloaded: libzpool's threads may still be winding down after
    // kernel_fini, and unmapping their code under them crashed the helper
    // at exit now and then (exit by SIGSEGV after its work was done).
    let libs: &'static Libs = Box::leak(Box::new(Libs::open()?));
    let cache = cstring(NO_CACHE_FILE)?;

    let kernel_init: Symbol<unsafe extern "C" fn(c_int)> = sym(&libs.zpool, "kernel_init")?;
    let kernel_fini: Symbol<unsafe extern "C" fn()> = sym(&libs.zpool, "kernel_fini")?;
    let config_path: Symbol<*mut *const c_char> = sym(&libs.zpool, "spa_config_path")?;
    let config_ops: Symbol<*const c_void> = sym(&libs.zpool, "libzpool_config_ops")?;
    type FindConfig = unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *mut *mut NvList,
        *mut ImportArgs,
        *const c_void,
    ) -> c_int;
    let find_config: Symbol<FindConfig> = sym(&libs.zutil, "zpool_find_config")?;
    type LookupU64 = unsafe extern "C" fn(*mut NvList, *const c_char, *mut u64) -> c_int;
    let lookup_u64: Symbol<LookupU64> = sym(&libs.nvpair, "nvlist_lookup_uint64")?;
    type LookupStr = unsafe extern "C" fn(*mut NvList, *const c_char, *mut *mut c_char) -> c_int;
    let lookup_str: Symbol<LookupStr> = sym(&libs.nvpair, "nvlist_lookup_string")?;
    let nv_alloc: Symbol<unsafe extern "C" fn() -> *mut NvList> =
        sym(&libs.nvpair, "fnvlist_alloc")?;
    type AddStr = unsafe extern "C" fn(*mut NvList, *const c_char, *const c_char);
    let nv_add_str: Symbol<AddStr> = sym(&libs.nvpair, "fnvlist_add_string")?;
    let nv_free: Symbol<unsafe extern "C" fn(*mut NvList)> = sym(&libs.nvpair, "nvlist_free")?;
    type Import = unsafe extern "C" fn(*const c_char, *mut NvList, *mut NvList, u64) -> c_int;
    let spa_import: Symbol<Import> = sym(&libs.zpool, "spa_import")?;
    type Open = unsafe extern "C" fn(*const c_char, *mut *mut Spa, *const c_void) -> c_int;
    let spa_open: Symbol<Open> = sym(&libs.zpool, "spa_open")?;
    let spa_close: Symbol<unsafe extern "C" fn(*mut Spa, *const c_void)> =
        sym(&libs.zpool, "spa_close")?;
    let spa_change_guid: Symbol<unsafe extern "C" fn(*mut Spa) -> c_int> =
        sym(&libs.zpool, "spa_change_guid")?;
    let spa_guid: Symbol<unsafe extern "C" fn(*mut Spa) -> u64> = sym(&libs.zpool, "spa_guid")?;
    type Export = unsafe extern "C" fn(*const c_char, *mut *mut NvList, c_int, c_int) -> c_int;
    let spa_export: Symbol<Export> = sym(&libs.zpool, "spa_export")?;

    let dev_c: Vec<CString> = search
        .iter()
        .map(|d| cstring(d))
        .collect::<Result<_, _>>()?;
    let mut dev_ptrs: Vec<*mut c_char> = dev_c.iter().map(|c| c.as_ptr().cast_mut()).collect();
    let target = cstring(&args.guid.to_string())?;
    let tag = c"goldmount-zfs-reguid";
    let k_pool_guid = c"pool_guid";
    let k_name = c"name";

    // SAFETY: the calls below follow zhack's import (cmd/zhack in OpenZFS
    // 2.1): kernel_init once, find the config on the given devices, import,
    // open, act, close, export, kernel_fini. Every pointer handed over lives
    // until kernel_fini (the CStrings and vectors are owned here); the
    // spa_config_path store happens before kernel_init reads it. Symbol
    // types are the C declarations of OpenZFS 2.1.
    unsafe {
        **config_path = cache.as_ptr();
        kernel_init(SPA_MODE_READ_WRITE);
        let result = (|| {
            enter_confinement()?;
            let mut ia = ImportArgs {
                path: dev_ptrs.as_mut_ptr(),
                paths: c_int::try_from(dev_ptrs.len()).map_err(|_| fail(2, "too many devices"))?,
                poolname: std::ptr::null(),
                guid: args.guid,
                cachefile: std::ptr::null(),
                // A clone's labels say "active": it was copied from a pool
                // that was imported. Its devices are this clone's alone.
                can_be_active: 1,
                scan: 0,
                policy: std::ptr::null_mut(),
            };
            let mut config: *mut NvList = std::ptr::null_mut();
            let rc = find_config(
                std::ptr::null_mut(),
                target.as_ptr(),
                &mut config,
                &mut ia,
                *config_ops,
            );
            if rc != 0 || config.is_null() {
                return Err(fail(
                    4,
                    format!(
                        "no importable pool with GUID {} on {} ({})",
                        args.guid,
                        devices_text(&args.devices),
                        errno_text(rc)
                    ),
                ));
            }
            let mut found = 0u64;
            if lookup_u64(config, k_pool_guid.as_ptr(), &mut found) != 0 || found != args.guid {
                nv_free(config);
                return Err(fail(
                    4,
                    format!(
                        "the pool found on {} has GUID {found}, not {}",
                        devices_text(&args.devices),
                        args.guid
                    ),
                ));
            }
            let mut name_p: *mut c_char = std::ptr::null_mut();
            if lookup_str(config, k_name.as_ptr(), &mut name_p) != 0 || name_p.is_null() {
                nv_free(config);
                return Err(fail(
                    4,
                    format!("the pool with GUID {} has no name in its label", args.guid),
                ));
            }
            // The pool keeps its own name on disk: this namespace is ours
            // alone, and the kernel import gives it the volume's name.
            let name = CStr::from_ptr(name_p).to_owned();
            let props = nv_alloc();
            nv_add_str(props, c"cachefile".as_ptr(), c"none".as_ptr());
            let rc = spa_import(name.as_ptr(), config, props, ZFS_IMPORT_NORMAL);
            nv_free(props);
            nv_free(config);
            let name_s = name.to_string_lossy().into_owned();
            if rc != 0 {
                return Err(fail(
                    5,
                    format!(
                        "libzpool could not import pool {name_s:?} (GUID {}) from {}: {}",
                        args.guid,
                        devices_text(&args.devices),
                        errno_text(rc)
                    ),
                ));
            }
            let mut spa: *mut Spa = std::ptr::null_mut();
            let rc = spa_open(name.as_ptr(), &mut spa, tag.as_ptr().cast());
            let changed = if rc != 0 || spa.is_null() {
                Err(fail(
                    5,
                    format!(
                        "libzpool could not open pool {name_s:?} after its import: {}",
                        errno_text(rc)
                    ),
                ))
            } else {
                let rc = spa_change_guid(spa);
                let new = spa_guid(spa);
                spa_close(spa, tag.as_ptr().cast());
                if rc != 0 {
                    Err(fail(
                        5,
                        format!("changing the GUID of pool {name_s:?} failed: {} (every device of the pool must be given and healthy; a pool with a checkpoint cannot be reguided)", errno_text(rc)),
                    ))
                } else if new == args.guid {
                    Err(fail(
                        5,
                        format!("pool {name_s:?} kept GUID {new} after spa_change_guid"),
                    ))
                } else {
                    Ok(new)
                }
            };
            let rc = spa_export(name.as_ptr(), std::ptr::null_mut(), 0, 0);
            let new = changed?;
            if rc != 0 {
                return Err(fail(
                    5,
                    format!("pool {name_s:?} got GUID {new} but its export failed: {}; the devices may say the pool is active", errno_text(rc)),
                ));
            }
            Ok(
                serde_json::json!({"pool": name_s, "old_guid": args.guid, "new_guid": new})
                    .to_string(),
            )
        })();
        kernel_fini();
        result
    }
}

fn devices_text(d: &[PathBuf]) -> String {
    d.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
