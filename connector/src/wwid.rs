//! Finding the local device for an identity the appliance announced: a SCSI
//! WWID (`naa.6001405…`) or, for the appliance's loop backend, the clone's
//! backing file. Polls sysfs until the device appears or the timeout passes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Normalises WWID spellings: `naa.6001405ab…`, `0x6001405ab…`, `6001405ab…`,
/// and `wwn-0x…` all compare equal.
pub fn normalize(w: &str) -> String {
    let w = w.trim().to_ascii_lowercase();
    let w = w.strip_prefix("wwn-").unwrap_or(&w);
    let w = w
        .strip_prefix("naa.")
        .or_else(|| w.strip_prefix("0x"))
        .unwrap_or(w);
    w.to_string()
}

/// One scan of /sys/block for a device whose `device/wwid` matches, or whose
/// loop backing file is `wwid` (an absolute path).
pub fn find_once(wwid: &str) -> Option<PathBuf> {
    let want = normalize(wwid);
    let as_path = Path::new(wwid.trim());
    for entry in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(id) = std::fs::read_to_string(p.join("device/wwid")) {
            if normalize(&id) == want {
                return Some(PathBuf::from("/dev").join(&name));
            }
        }
        if as_path.is_absolute() {
            if let Ok(bf) = std::fs::read_to_string(p.join("loop/backing_file")) {
                if Path::new(bf.trim()) == as_path {
                    return Some(PathBuf::from("/dev").join(&name));
                }
            }
        }
    }
    None
}

/// Waits up to `timeout` for the device with this identity.
pub fn wait_for(wwid: &str, timeout: Duration) -> Result<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(d) = find_once(wwid) {
            return Ok(d);
        }
        if Instant::now() >= deadline {
            bail!(
                "no device with WWID {wwid} appeared within {timeout:?} (checked /sys/block/*/device/wwid and loop backing files); \
                 is the LUN presented to this host and the session logged in?"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_compare_equal() {
        assert_eq!(normalize("naa.6001405ABC"), "6001405abc");
        assert_eq!(normalize("0x6001405abc"), "6001405abc");
        assert_eq!(normalize("wwn-0x6001405abc"), "6001405abc");
    }
}
