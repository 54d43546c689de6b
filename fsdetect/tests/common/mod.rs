//! Shared test support: fixture images made at test time by the real tools,
//! and the differential comparison against `blkid -p -o udev`.
//!
//! Each group of formats lives in its own `fx_*.rs` file; [`all_fixtures`]
//! concatenates them for the whole-set differential test and the benchmark.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fx_fs;
pub mod fx_other;
pub mod fx_pt;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A generated image and how to probe it.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Short unique name (also the file name stem).
    pub name: String,
    /// The image file.
    pub path: PathBuf,
    /// Logical sector size to use (4096 for 4K-sector disk images).
    pub sector_size: u32,
    /// For 4K images blkid must read through a loop device with that sector
    /// size; tests set this up with [`LoopDevice`].
    pub needs_loop: bool,
}

/// A process-wide scratch directory under the cargo target dir, wiped at
/// start. The directories of earlier test processes that are gone are
/// removed too (a static cannot clean up after itself at exit).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        remove_dead_scratch_dirs(&parent);
        let base = parent.join(format!("fsdetect-fixtures-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        base
    })
}

/// Removes `fsdetect-fixtures-<pid>` directories whose process is gone.
fn remove_dead_scratch_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("fsdetect-fixtures-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Which Debian package ships a tool, for the error message when it is missing.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "mkfs.ext2" | "mkfs.ext3" | "mkfs.ext4" | "mke2fs" | "tune2fs" | "debugfs" => "e2fsprogs",
        "mkfs.xfs" | "xfs_admin" => "xfsprogs",
        "mkfs.btrfs" | "btrfstune" => "btrfs-progs",
        "mkfs.vfat" | "mkfs.fat" => "dosfstools",
        "mkntfs" => "ntfs-3g",
        "mkswap" | "blkid" | "sfdisk" | "losetup" | "wipefs" => "util-linux / fdisk",
        "cryptsetup" => "cryptsetup-bin",
        "mdadm" => "mdadm",
        "pvcreate" | "vgcreate" => "lvm2",
        "xorriso" => "xorriso",
        "mksquashfs" => "squashfs-tools",
        "sgdisk" => "gdisk",
        "zpool" | "zfs" => "zfs-fuse",
        _ => "?",
    }
}

/// Runs a tool with an argument vector; panics with its stderr (or with the
/// package to install) on failure. Tests must fail loudly, never skip.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {tool} ({e}): apt-get install {}",
            package_of(tool)
        )
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates (or truncates) a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

/// Path for a new fixture file in the scratch dir.
pub fn fixture_path(name: &str) -> PathBuf {
    scratch().join(format!("{name}.img"))
}

/// A loop device over an image, detached on drop (for 4K-sector images,
/// which blkid only reads right through a device with that sector size).
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub dev: PathBuf,
}

impl LoopDevice {
    /// Attaches `image` read-only with the given logical sector size.
    pub fn attach(image: &Path, sector_size: u32) -> Self {
        let dev = run(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                "--sector-size",
                &sector_size.to_string(),
                image.to_str().unwrap(),
            ],
        );
        Self {
            dev: PathBuf::from(dev.trim()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// `blkid -p -o udev [-O offset -S size] path`: stdout and exit code.
pub fn blkid_udev(path: &Path, region: Option<(u64, u64)>) -> (String, i32) {
    let mut cmd = Command::new("blkid");
    cmd.args(["-p", "-o", "udev"]);
    if let Some((off, size)) = region {
        cmd.args(["-O", &off.to_string(), "-S", &size.to_string()]);
    }
    let out = cmd
        .arg(path)
        .output()
        .expect("blkid (apt-get install util-linux)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// The same through fsdetect: formatted text and blkid-style exit code.
pub fn fsdetect_udev(path: &Path, sector_size: u32, region: Option<(u64, u64)>) -> (String, i32) {
    let src = fsdetect::FileSource::open(path).unwrap();
    let src = if src.is_block_device() {
        src
    } else {
        src.with_sector_size(sector_size)
    };
    let report = match region {
        Some((off, size)) => fsdetect::probe_region(&src, off, size).unwrap(),
        None => fsdetect::probe_disk(&src).unwrap(),
    };
    fsdetect::udev::format_udev(&report)
}

/// Asserts that fsdetect and blkid print identical udev output and exit codes
/// for a fixture (through a loop device when it needs one).
pub fn assert_same_as_blkid(fx: &Fixture) {
    let _loop;
    let path = if fx.needs_loop {
        _loop = LoopDevice::attach(&fx.path, fx.sector_size);
        _loop.dev.clone()
    } else {
        fx.path.clone()
    };
    let (want, want_rc) = blkid_udev(&path, None);
    let (got, got_rc) = fsdetect_udev(&path, fx.sector_size, None);
    assert_eq!(
        got, want,
        "fixture {}: fsdetect (left) and blkid -p -o udev (right) differ",
        fx.name
    );
    assert_eq!(got_rc, want_rc, "fixture {}: exit status differs", fx.name);
}

/// Every fixture of every group, generated once per test process.
pub fn all_fixtures() -> Vec<Fixture> {
    let mut v = fx_fs::fixtures();
    v.extend(fx_other::fixtures());
    v.extend(fx_pt::fixtures());
    v
}
