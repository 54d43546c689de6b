//! Which block devices are mounted where, from /proc/self/mountinfo (keyed by
//! major:minor, so it works whatever name the device was mounted by).

use std::collections::BTreeMap;

use crate::sysfs::Root;

/// major:minor → mountpoints, in mount order.
pub type MountTable = BTreeMap<String, Vec<String>>;

/// Reads /proc/self/mountinfo under `root`; empty when unreadable.
pub fn read(root: &Root) -> MountTable {
    parse(&root.attr("/proc/self/mountinfo").unwrap_or_default())
}

/// Parses mountinfo text.
pub fn parse(text: &str) -> MountTable {
    let mut t = MountTable::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        t.entry(f[2].to_string()).or_default().push(unescape(f[4]));
    }
    t
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parse_and_unescape() {
        let t = "36 25 7:1 / /mnt/my\\040disk rw,relatime shared:1 - ext4 /dev/loop0p1 rw\n37 25 7:1 /sub /srv/b rw - ext4 /dev/loop0p1 rw\n";
        let m = parse(t);
        assert_eq!(m["7:1"], vec!["/mnt/my disk", "/srv/b"]);
    }
}
