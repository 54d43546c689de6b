//! Device nodes for partitions: the kernel's own (`/dev/sdb1`) when it parsed
//! the table; on a multipath map, the partition map kpartx made for it
//! (`/dev/mapper/<wwid>-part2`: the kernel makes no partition nodes on dm);
//! otherwise an offset loop device over the partition's byte range (this dev
//! machine's kernel has no partition parsing, and some LUNs show up before a
//! re-read). Which one was used goes into the manifest.

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

/// The name a person knows a device-mapper device by: `/dev/mapper/<name>`
/// for `/dev/dm-N` (a multipath map is `/dev/mapper/<wwid>` or its alias),
/// when that node exists and is the same device; anything else unchanged.
/// The kernel name stays the identity goldmount compares; this is for the
/// manifest a person or the appliance reads — `dm-N` changes across boots.
pub fn display_path(dev: &Path) -> PathBuf {
    let Some(name) = dev.file_name().and_then(|n| n.to_str()) else {
        return dev.to_path_buf();
    };
    if !name.starts_with("dm-") {
        return dev.to_path_buf();
    }
    let dm_name = std::fs::read_to_string(PathBuf::from("/sys/block").join(name).join("dm/name"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if dm_name.is_empty() || dm_name.contains('/') {
        return dev.to_path_buf();
    }
    let mapper = PathBuf::from("/dev/mapper").join(&dm_name);
    match (std::fs::canonicalize(&mapper), std::fs::canonicalize(dev)) {
        (Ok(a), Ok(b)) if a == b => mapper,
        _ => dev.to_path_buf(),
    }
}

/// kpartx's partition map for partition `number` of dm device `disk` (a
/// multipath map), if it maps exactly `size_bytes` of `disk` from
/// `start_bytes`: its dm uuid is `part<N>-<uuid of disk>`, and its table (one
/// `linear` target, read with `dmsetup table`) points at `disk` at that
/// offset. Anything else — no kpartx, an older table, no dmsetup — is `None`
/// and the caller maps the partition itself.
pub fn kpartx_partition_node(
    disk: &Path,
    number: u32,
    start_bytes: u64,
    size_bytes: u64,
) -> Option<PathBuf> {
    let canon = std::fs::canonicalize(disk).ok()?;
    let name = canon.file_name()?.to_str()?.to_string();
    let sys = PathBuf::from("/sys/block").join(&name);
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let uuid = read(sys.join("dm/uuid")).filter(|u| !u.is_empty())?;
    let devno = read(sys.join("dev"))?;
    let want_uuid = format!("part{number}-{uuid}");
    for h in std::fs::read_dir(sys.join("holders")).ok()?.flatten() {
        let hs = PathBuf::from("/sys/block").join(h.file_name());
        if read(hs.join("dm/uuid")).as_deref() != Some(want_uuid.as_str()) {
            continue;
        }
        let sectors: u64 = read(hs.join("size"))?.parse().ok()?;
        if sectors.checked_mul(512) != Some(size_bytes) {
            return None;
        }
        let dm_name = read(hs.join("dm/name"))?;
        let table = toolrun::run(
            "dmsetup",
            &["table", &dm_name],
            crate::tools::DEFAULT_TIMEOUT,
        )
        .ok()?
        .stdout;
        return linear_target_maps(&table, &devno, start_bytes)
            .then(|| PathBuf::from("/dev/mapper").join(dm_name));
    }
    None
}

/// True when a dm table is one `linear` target onto `devno` starting at
/// byte `start_bytes` (`0 <len> linear <maj:min> <start sector>`).
fn linear_target_maps(table: &str, devno: &str, start_bytes: u64) -> bool {
    let lines: Vec<&str> = table.lines().filter(|l| !l.trim().is_empty()).collect();
    let [line] = lines.as_slice() else {
        return false;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    matches!(f.as_slice(), ["0", _, "linear", dev, start]
        if *dev == devno
            && start.parse::<u64>().ok().and_then(|s| s.checked_mul(512)) == Some(start_bytes))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpartx_linear_tables() {
        assert!(linear_target_maps(
            "0 204800 linear 254:0 2048\n",
            "254:0",
            2048 * 512
        ));
        assert!(!linear_target_maps(
            "0 204800 linear 254:0 4096\n",
            "254:0",
            2048 * 512
        ));
        assert!(!linear_target_maps(
            "0 204800 linear 254:1 2048\n",
            "254:0",
            2048 * 512
        ));
        assert!(!linear_target_maps(
            "0 10 linear 254:0 2048\n10 10 linear 254:0 9000\n",
            "254:0",
            2048 * 512
        ));
        assert!(!linear_target_maps(
            "0 204800 striped 2 128 254:0 2048 254:1 2048\n",
            "254:0",
            2048 * 512
        ));
        assert!(!linear_target_maps("", "254:0", 0));
    }
}
