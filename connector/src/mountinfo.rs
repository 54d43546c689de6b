//! `/proc/self/mountinfo`: what is mounted where, to find our own mounts, the
//! filesystems already mounted on the host (UUID collisions), and holders.

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
}

/// Undoes the octal escapes mountinfo uses for space, tab, newline and backslash.
fn unescape(s: &str) -> String {
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
    })
}

/// The current mount table of this process's namespace.
pub fn current() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
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
    }
}
