//! `/proc/self/mountinfo`, parsed once for the whole workspace: the
//! connector finds its own mounts and the filesystems already mounted on the
//! host (UUID collisions), the executor and the iscsi crate find which
//! devices are mounted before removing or logging out. Std only, so the
//! small executor binary can use it.
//!
//! Entries carry the device number (`major:minor`) as well as the source,
//! because a device is often mounted by another name than the one asked
//! about (a by-id link, a dm name).

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Root of the mount within its filesystem.
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (device path for block filesystems).
    pub source: String,
    /// Per-mount options (field 6, e.g. `rw,nosuid,nodev,relatime`): what
    /// this mount point enforces, as opposed to the superblock options after
    /// the separator. Callers check `nosuid`/`nodev` here.
    pub mount_options: String,
    /// The optional fields (`shared:N`, `master:N`, `propagate_from:N`,
    /// `unbindable`): whether an unmount here reaches this mount's copies
    /// in other namespaces.
    pub propagation: Vec<String>,
}

/// Undoes the octal escapes mountinfo uses for space, tab, newline and
/// backslash (`\040` is a space); anything else is kept as it is.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let f: Vec<&str> = pre.split(' ').collect();
    let p: Vec<&str> = post.split(' ').collect();
    let (major, minor) = f.get(2)?.split_once(':')?;
    Some(MountEntry {
        id: f.first()?.parse().ok()?,
        parent: f.get(1)?.parse().ok()?,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(unescape(f.get(3)?)),
        mount_point: PathBuf::from(unescape(f.get(4)?)),
        fstype: (*p.first()?).to_string(),
        source: unescape(p.get(1)?),
        mount_options: (*f.get(5)?).to_string(),
        propagation: f.iter().skip(6).map(|o| (*o).to_string()).collect(),
    })
}

/// The current mount table of this process's namespace.
pub fn current() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

impl MountEntry {
    /// `major:minor`, as sysfs `dev` files spell it.
    pub fn dev(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }

    /// The peer group this mount is shared in (`shared:N`), if any.
    pub fn shared_group(&self) -> Option<u32> {
        self.propagation
            .iter()
            .find_map(|o| o.strip_prefix("shared:")?.parse().ok())
    }

    /// The peer group this mount receives propagation from (`master:N`).
    pub fn master_group(&self) -> Option<u32> {
        self.propagation
            .iter()
            .find_map(|o| o.strip_prefix("master:")?.parse().ok())
    }
}

/// The mount table of the process namespace whose `/proc` is at `proc_root`
/// (tests point it at a captured tree).
pub fn read_from(proc_root: &Path) -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string(
        proc_root.join("self/mountinfo"),
    )?))
}

/// Mounts at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(entries: &[MountEntry], dir: &Path) -> Vec<MountEntry> {
    let mut v: Vec<MountEntry> = entries
        .iter()
        .filter(|e| e.mount_point.starts_with(dir))
        .cloned()
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.mount_point.components().count()));
    v
}

/// A mount of one of our devices in another process's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignMount {
    /// A process in that namespace (the lowest pid).
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Where that namespace has the device mounted.
    pub mount_point: PathBuf,
    /// Whether the mount is a peer or slave of a peer group one of our own
    /// mounts of the device is shared in: our unmount reaches it (a
    /// systemd service's private namespace made after our mount).
    pub follows_ours: bool,
}

impl std::fmt::Display for ForeignMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}): mounted at {} in another mount namespace",
            self.pid,
            self.comm,
            self.mount_point.display()
        )
    }
}

/// Mounts of the devices `devs` (`(major, minor)`) in mount namespaces
/// other than this process's — a container's bind of a published tree, an
/// `unshare`d shell, a service's private namespace. Why: a filesystem
/// still mounted elsewhere keeps its device open after we unmount ours (a
/// teardown would stop half way), and it tells whether anything outside
/// this namespace still uses a tree.
pub fn foreign_mounts(devs: &[(u32, u32)]) -> Vec<ForeignMount> {
    foreign_mounts_in(Path::new("/proc"), devs)
}

fn foreign_mounts_in(proc_root: &Path, devs: &[(u32, u32)]) -> Vec<ForeignMount> {
    let mut out = Vec::new();
    if devs.is_empty() {
        return out;
    }
    let ours = std::fs::read_link(proc_root.join("self/ns/mnt")).ok();
    let own = read_from(proc_root).unwrap_or_default();
    let is_dev = |e: &MountEntry| devs.contains(&(e.major, e.minor));
    let groups: Vec<u32> = own
        .iter()
        .filter(|e| is_dev(e))
        .filter_map(MountEntry::shared_group)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(o) = &ours {
        seen.insert(o.clone());
    }
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return out;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|p| p.file_name().to_string_lossy().parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let Ok(ns) = std::fs::read_link(dir.join("ns/mnt")) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(dir.join("mountinfo")) else {
            continue;
        };
        let comm = std::fs::read_to_string(dir.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        for e in parse(&text).iter().filter(|e| is_dev(e)) {
            let follows_ours = [e.shared_group(), e.master_group()]
                .into_iter()
                .flatten()
                .any(|g| groups.contains(&g));
            out.push(ForeignMount {
                pid,
                comm: comm.clone(),
                mount_point: e.mount_point.clone(),
                follows_ours,
            });
        }
    }
    out
}

/// Processes whose cwd, root, executable or open files are under `dir`, as
/// `pid N (comm): how` — what a busy error names so a person can act.
pub fn holders(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let base = p.path();
        let comm = std::fs::read_to_string(base.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut uses: Vec<String> = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if let Ok(t) = std::fs::read_link(base.join(link)) {
                if t.starts_with(dir) {
                    uses.push(format!("{link} {}", t.display()));
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(t) = std::fs::read_link(fd.path()) {
                    if t.starts_with(dir) {
                        uses.push(format!("open {}", t.display()));
                        break;
                    }
                }
            }
        }
        if !uses.is_empty() {
            out.push(format!("pid {pid} ({comm}): {}", uses.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_real_lines() {
        let t = "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                 99 36 7:3 / /var/lib/gold\\040mount/v1 rw - xfs /dev/loop3 rw,nouuid\n\
                 garbage\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].major, 98);
        assert_eq!(m[1].mount_point, PathBuf::from("/var/lib/gold mount/v1"));
        assert_eq!(m[1].source, "/dev/loop3");
        let under = mounts_under(&m, Path::new("/var/lib/gold mount"));
        assert_eq!(under.len(), 1);
        assert_eq!(m[1].dev(), "7:3");
        assert_eq!(m[0].mount_options, "rw,noatime");
        assert_eq!(m[1].mount_options, "rw");
        assert_eq!(m[0].shared_group(), None);
        assert_eq!(m[0].master_group(), Some(1));
    }

    #[test]
    fn mounts_in_other_namespaces_say_whether_our_unmount_reaches_them() {
        let root = std::env::temp_dir().join(format!("mountinfo-ns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let put = |pid: &str, ns: &str, text: &str| {
            let d = root.join(pid);
            std::fs::create_dir_all(d.join("ns")).unwrap();
            std::os::unix::fs::symlink(ns, d.join("ns/mnt")).unwrap();
            std::fs::write(d.join("mountinfo"), text).unwrap();
            std::fs::write(d.join("comm"), format!("p{pid}\n")).unwrap();
        };
        let ours = "40 1 253:3 / /var/lib/goldmount/v rw shared:7 - xfs /dev/dm-3 rw\n";
        put("self", "mnt:[1]", ours);
        put("10", "mnt:[1]", ours);
        put(
            "20",
            "mnt:[2]",
            "90 80 253:3 / /data rw - xfs /dev/dm-3 rw\n",
        );
        put(
            "21",
            "mnt:[2]",
            "90 80 253:3 / /data rw - xfs /dev/dm-3 rw\n",
        );
        put(
            "30",
            "mnt:[3]",
            "91 81 253:3 / /var/lib/goldmount/v rw master:7 - xfs /dev/dm-3 rw\n",
        );
        put(
            "40",
            "mnt:[4]",
            "92 82 8:1 / /data rw - ext4 /dev/sda1 rw\n",
        );
        let found = foreign_mounts_in(&root, &[(253, 3)]);
        let shown: Vec<(String, bool)> = found
            .iter()
            .map(|m| (m.to_string(), m.follows_ours))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "pid 20 (p20): mounted at /data in another mount namespace".to_string(),
                    false
                ),
                (
                    "pid 30 (p30): mounted at /var/lib/goldmount/v in another mount namespace"
                        .to_string(),
                    true
                )
            ]
        );
        assert!(foreign_mounts_in(&root, &[]).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn mount_options_of_this_process() {
        let m = current().unwrap();
        let root = m.iter().find(|e| e.mount_point == Path::new("/")).unwrap();
        let opts: Vec<&str> = root.mount_options.split(',').collect();
        assert!(opts.contains(&"rw") || opts.contains(&"ro"), "{opts:?}");
    }

    #[test]
    fn unescapes_only_octal_triples() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/tab\011x\134y"), "/tab\tx\\y");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
        assert_eq!(unescape(r"/short\04"), r"/short\04");
        assert_eq!(unescape(r"/not\089"), r"/not\089");
    }

    #[test]
    fn optional_fields_and_missing_separator() {
        let t = "1 0 8:1 / / rw shared:1 master:2 propagate_from:3 - ext4 /dev/sda1 rw\n\
                 2 1 8:2 / /x rw ext4 /dev/sda2 rw\n";
        let m = parse(t);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].source, "/dev/sda1");
    }
}
