//! Device nodes for partitions: the kernel's own (`/dev/sdb1`) when it parsed
//! the table, otherwise an offset loop device over the partition's byte range
//! (this dev machine's kernel has no partition parsing, and some LUNs show up
//! before a re-read). Which one was used goes into the manifest.

use std::path::{Path, PathBuf};

/// The kernel's node for partition `number` of `disk`, if it exists and
/// starts where the table says (a stale node from an older table is not used).
pub fn kernel_partition_node(disk: &Path, number: u32, start_bytes: u64) -> Option<PathBuf> {
    let canon = std::fs::canonicalize(disk).ok()?;
    let name = canon.file_name()?.to_str()?.to_string();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    for entry in std::fs::read_dir(&sys).ok()?.flatten() {
        let p = entry.path();
        let Ok(num) = std::fs::read_to_string(p.join("partition")) else {
            continue;
        };
        if num.trim().parse::<u32>().ok() != Some(number) {
            continue;
        }
        let start: u64 = std::fs::read_to_string(p.join("start"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if start.checked_mul(512) == Some(start_bytes) {
            return Some(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    None
}

/// Finds an attached loop device reading `backing` at `offset`/`size`
/// (used after a crash between `losetup` and recording its result).
pub fn find_loop(backing: &Path, offset: u64, size: u64) -> Option<PathBuf> {
    let want = std::fs::canonicalize(backing).unwrap_or_else(|_| backing.to_path_buf());
    for entry in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let lp = entry.path().join("loop");
        let Ok(bf) = std::fs::read_to_string(lp.join("backing_file")) else {
            continue;
        };
        let read_u64 = |f: &str| -> u64 {
            std::fs::read_to_string(lp.join(f))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        if Path::new(bf.trim()) == want
            && read_u64("offset") == offset
            && read_u64("sizelimit") == size
        {
            return Some(PathBuf::from("/dev").join(name));
        }
    }
    None
}
