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

/// Parses mountinfo text (the workspace's `mountinfo` parser) into the
/// table by device number.
pub fn parse(text: &str) -> MountTable {
    let mut t = MountTable::new();
    for e in mountinfo::parse(text) {
        t.entry(e.dev())
            .or_default()
            .push(e.mount_point.to_string_lossy().into_owned());
    }
    t
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
