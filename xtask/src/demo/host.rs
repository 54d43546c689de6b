//! What the demo can leave on this host — mounts and loop devices under its
//! directory — found from the kernel's own tables, and swept when a run
//! failed or was interrupted half-way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Mount points at or below `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|t| PathBuf::from(unescape(t)))
        .filter(|t| t.starts_with(dir))
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    out.dedup();
    out
}

/// mountinfo's octal escapes (`\040` for a space, …) undone.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(n) = octal {
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Loop devices backed by a file under `dir`, then those stacked on them
/// (the connector maps partitions of a loop LUN with offset loop devices
/// when the kernel makes no partition nodes), as `/dev/loopN -> backing`.
pub fn loops_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                let b = b.trim_end().trim_end_matches(" (deleted)").to_string();
                all.push((PathBuf::from(format!("/dev/{name}")), PathBuf::from(b)));
            }
        }
    }
    let mut found: Vec<(PathBuf, PathBuf)> = all
        .iter()
        .filter(|(_, b)| b.starts_with(dir))
        .cloned()
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].0.clone();
        for (d, b) in &all {
            if *b == parent && !found.iter().any(|(f, _)| f == d) {
                found.push((d.clone(), b.clone()));
            }
        }
        i += 1;
    }
    found
}

/// Everything under `dir` a run left: its mounts, then its loop devices.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = mounts_under(dir)
        .into_iter()
        .map(|m| format!("mount {}", m.display()))
        .collect();
    out.extend(
        loops_under(dir)
            .into_iter()
            .map(|(d, b)| format!("loop device {} -> {}", d.display(), b.display())),
    );
    out
}

/// Lazily unmounts everything under `dir` (deepest first), then detaches
/// the loop devices under it (stacked ones first); returns what it had to
/// take away.
pub fn sweep(dir: &Path) -> Vec<String> {
    let mut took = Vec::new();
    for _ in 0..4 {
        let targets = mounts_under(dir);
        if targets.is_empty() {
            break;
        }
        for t in targets {
            let ok = Command::new("umount")
                .arg("-l")
                .arg(&t)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                took.push(format!("mount {}", t.display()));
            }
        }
    }
    let mut loops = loops_under(dir);
    loops.reverse();
    for (d, b) in loops {
        let ok = Command::new("losetup")
            .arg("-d")
            .arg(&d)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            took.push(format!("loop device {} -> {}", d.display(), b.display()));
        }
    }
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b/c\011d"), "/a b/c\td");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
