//! Is a block device in use? Mounted (mountinfo, by device number and by
//! source path), held (a dm/multipath/md holder in sysfs), swap, or open by a
//! process (`/proc/*/fd`). Logout consults this so it never pulls a disk out
//! from under somebody.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Who uses a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Mounted at this mount point.
    Mounted(String),
    /// A stacked device (dm-N, md) holds it.
    HeldBy(String),
    /// Active swap area.
    Swap,
    /// A process has it open.
    OpenBy {
        /// Process id.
        pid: u32,
        /// Its command name.
        comm: String,
    },
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Mounted(m) => write!(f, "mounted on {m}"),
            Holder::HeldBy(h) => write!(f, "held by {h}"),
            Holder::Swap => write!(f, "in use as swap"),
            Holder::OpenBy { pid, comm } => write!(f, "open by pid {pid} ({comm})"),
        }
    }
}

impl Holder {
    /// udev's workers open a disk for a moment to probe it after it appears
    /// or changes; such an open passes on its own, unlike anybody else's.
    pub fn is_transient(&self) -> bool {
        matches!(self, Holder::OpenBy { comm, .. } if is_udev_worker(comm))
    }
}

/// A udev worker's command name: `(udev-worker)` on systemd ≥ 253, the
/// forked `systemd-udevd` before.
fn is_udev_worker(comm: &str) -> bool {
    comm == "(udev-worker)" || comm == "systemd-udevd"
}

/// Where to look: `/sys` and `/proc` (roots are parameters for tests).
#[derive(Debug, Clone)]
pub struct UsageProbe {
    sys: PathBuf,
    proc_: PathBuf,
}

impl Default for UsageProbe {
    fn default() -> Self {
        UsageProbe {
            sys: PathBuf::from("/sys"),
            proc_: PathBuf::from("/proc"),
        }
    }
}

/// The kernel's `dev_t` encoding of major:minor (glibc `makedev`).
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

fn parse_majmin(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl UsageProbe {
    /// A probe reading `sys` and `proc_` instead of `/sys` and `/proc`.
    pub fn with_roots(sys: impl Into<PathBuf>, proc_: impl Into<PathBuf>) -> Self {
        UsageProbe {
            sys: sys.into(),
            proc_: proc_.into(),
        }
    }

    /// The sysfs dir of a whole disk or a partition name.
    fn dev_dir(&self, name: &str) -> PathBuf {
        let whole = self.sys.join("block").join(name);
        if whole.exists() {
            return whole;
        }
        self.sys.join("class/block").join(name)
    }

    /// The first holder found for `name` (a disk or partition), if any.
    pub fn holder(&self, name: &str) -> Option<Holder> {
        let dir = self.dev_dir(name);
        if let Ok(rd) = fs::read_dir(dir.join("holders")) {
            let mut hs: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            hs.sort();
            if let Some(h) = hs.into_iter().next() {
                return Some(Holder::HeldBy(h));
            }
        }
        let majmin = fs::read_to_string(dir.join("dev"))
            .ok()
            .and_then(|s| parse_majmin(&s));
        let devnode = format!("/dev/{name}");
        if let Some(m) = self.mountpoint(majmin, &devnode) {
            return Some(Holder::Mounted(m));
        }
        if self.is_swap(&devnode) {
            return Some(Holder::Swap);
        }
        majmin.and_then(|(a, b)| self.opener(makedev(a, b)))
    }

    fn mountpoint(&self, majmin: Option<(u64, u64)>, devnode: &str) -> Option<String> {
        let mounts = mountinfo::read_from(&self.proc_).ok()?;
        mounts
            .iter()
            .find(|e| {
                let by_num = majmin == Some((u64::from(e.major), u64::from(e.minor)));
                let by_src = e.source == devnode
                    || fs::canonicalize(&e.source).is_ok_and(|p| p == Path::new(devnode));
                by_num || by_src
            })
            .map(|e| e.mount_point.to_string_lossy().into_owned())
    }

    fn is_swap(&self, devnode: &str) -> bool {
        fs::read_to_string(self.proc_.join("swaps"))
            .map(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace().next().is_some_and(|p| {
                        p == devnode || fs::canonicalize(p).is_ok_and(|c| c == Path::new(devnode))
                    })
                })
            })
            .unwrap_or(false)
    }

    /// A process with a file descriptor on block device `rdev`: a lasting
    /// opener before a udev worker's passing probe, so the error names who
    /// really holds the disk.
    fn opener(&self, rdev: u64) -> Option<Holder> {
        let me = std::process::id();
        let mut transient = None;
        for p in fs::read_dir(&self.proc_).ok()?.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(md) = fs::metadata(fd.path()) else {
                    continue;
                };
                if md.file_type().is_block_device() && md.rdev() == rdev {
                    let comm = fs::read_to_string(p.path().join("comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    let h = Holder::OpenBy { pid, comm };
                    if !h.is_transient() {
                        return Some(h);
                    }
                    transient.get_or_insert(h);
                }
            }
        }
        transient
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn dev_t_encoding_matches_std() {
        // /dev/null is 1:3 on every Linux.
        let md = fs::metadata("/dev/null").unwrap();
        assert_eq!(md.rdev(), makedev(1, 3));
        assert_eq!(makedev(8, 16), 0x810);
        assert_eq!(makedev(259, 256), 0x11_0300);
    }

    #[test]
    fn loop_device_mounted_and_open_is_seen() {
        // A real loop device with ext4, mounted: needs root, losetup, mkfs.ext4.
        let dir = std::env::temp_dir().join(format!("iscsi-inuse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
        let run = |p: &str, a: &[&str]| {
            let o = std::process::Command::new(p)
                .args(a)
                .output()
                .unwrap_or_else(|e| panic!("{p}: {e} (apt: util-linux / e2fsprogs)"));
            assert!(
                o.status.success(),
                "{p} {a:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let dev = run("losetup", &["-f", "--show", img.to_str().unwrap()]);
        let name = dev.trim_start_matches("/dev/").to_string();
        let probe = UsageProbe::default();
        let free = probe.holder(&name);
        run("mkfs.ext4", &["-q", &dev]);
        let mnt = dir.join("m");
        fs::create_dir_all(&mnt).unwrap();
        run("mount", &[&dev, mnt.to_str().unwrap()]);
        let mounted = probe.holder(&name);
        run("umount", &[mnt.to_str().unwrap()]);
        let child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(fs::File::open(&dev).unwrap())
            .spawn()
            .unwrap();
        let mut child = child;
        let open = probe.holder(&name);
        let _ = child.kill();
        let _ = child.wait();
        run("losetup", &["-d", &dev]);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(free, None);
        assert_eq!(
            mounted,
            Some(Holder::Mounted(mnt.to_string_lossy().into_owned()))
        );
        match open {
            Some(Holder::OpenBy { comm, .. }) => assert_eq!(comm, "sleep"),
            other => panic!("expected OpenBy sleep, got {other:?}"),
        }
    }
}
