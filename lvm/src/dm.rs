//! Device-mapper inventory from sysfs (`/sys/block/dm-N/{dm,slaves,holders}`),
//! who holds a device (mounts, holder devices, open count), and the undoing of
//! an accidental activation of a clone: dm devices built only on clone devices
//! are removed with `dmsetup remove`, after checking nothing uses them; a dm
//! device that also uses a non-clone device is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{LvmError, Result};
use crate::tool::{strs, Lvm};

/// One device-mapper device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    /// Kernel name (`dm-3`).
    pub kname: String,
    /// dm name (`vg_gold-root`).
    pub name: String,
    /// dm uuid (`LVM-<vg uuid><lv uuid>` for LVM).
    pub uuid: String,
    /// `major:minor`.
    pub dev: String,
    /// `major:minor` of the devices it is built on.
    pub slaves: Vec<String>,
    /// Kernel names of the devices built on it.
    pub holders: Vec<String>,
}

impl DmDevice {
    /// The VG UUID (32 characters, no dashes) of an LVM dm device.
    pub fn lvm_vg_uuid(&self) -> Option<&str> {
        self.uuid.strip_prefix("LVM-").and_then(|u| u.get(..32))
    }

    /// The VG name encoded in an LVM dm name (`vg--x-lv` → `vg-x`).
    pub fn lvm_vg_name(&self) -> Option<String> {
        self.lvm_vg_uuid()?;
        split_dm_name(&self.name).map(|(vg, _)| vg)
    }
}

/// Splits an LVM dm name at its single dash (doubled dashes are literal).
pub fn split_dm_name(name: &str) -> Option<(String, String)> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let vg = name[..i].replace("--", "-");
            let lv = name[i + 1..].replace("--", "-");
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some((vg, lv));
        }
        i += 1;
    }
    None
}

fn read_trim(p: &Path) -> Result<String> {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| LvmError::io(p, e))
}

fn dir_names(p: &Path) -> Vec<String> {
    fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Lists the dm devices under `sys_block` (normally `/sys/block`).
pub fn list_dm(sys_block: &Path) -> Result<Vec<DmDevice>> {
    let mut out = Vec::new();
    for kname in dir_names(sys_block) {
        if !kname.starts_with("dm-") {
            continue;
        }
        let base = sys_block.join(&kname);
        // A device removed between the directory listing and these reads
        // (another volume's teardown running at the same time) is gone, not
        // an error: skip it. One being created or torn down right now reads
        // as EINVAL/ENXIO/ENODEV (8 concurrent one-call mounts in the lab:
        // `/sys/block/dm-0/dm/name: Invalid argument`): not settled, skip it
        // too — an import that later meets it retries (see import.rs).
        let gone = |e: &LvmError| {
            matches!(e, LvmError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound
                    || matches!(source.raw_os_error(), Some(6 | 19 | 22)))
        };
        let name = match read_trim(&base.join("dm/name")) {
            Ok(n) => n,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let dev = match read_trim(&base.join("dev")) {
            Ok(d) => d,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let slaves = dir_names(&base.join("slaves"))
            .into_iter()
            .filter_map(|s| read_trim(&base.join("slaves").join(s).join("dev")).ok())
            .collect();
        out.push(DmDevice {
            name,
            uuid: read_trim(&base.join("dm/uuid")).unwrap_or_default(),
            dev,
            slaves,
            holders: dir_names(&base.join("holders")),
            kname,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `major:minor` of a block device node.
pub fn dev_of(path: &Path) -> Result<String> {
    let m = fs::metadata(path).map_err(|e| LvmError::io(path, e))?;
    if !m.file_type().is_block_device() {
        return Err(LvmError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a block device"),
        ));
    }
    let rdev = m.rdev();
    // glibc's gnu_dev_major/minor encoding.
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    Ok(format!("{major}:{minor}"))
}

/// Mount points of the device `major:minor` (from /proc/self/mountinfo).
pub fn mounts_of(dev: &str) -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&dev)).then(|| f.get(4).map(|s| s.to_string()))?
        })
        .collect()
}

/// The first of `devs` that cannot be removed/deactivated now, with why: a
/// mount, a holder device outside `leaving`, or an open count beyond the
/// opens its holders in `leaving` account for (a VG's own stack: thin
/// pool → thin LVs, rimage → raid LV).
/// Open counts of all of `devs` come from one `dmsetup info` run per look
/// (not one per device: each lvm2/dmsetup process costs ~1 s under the lab's
/// emulated CPU).
pub fn first_busy(
    lvm: &Lvm,
    devs: &[DmDevice],
    leaving: &BTreeSet<String>,
) -> Result<Option<(String, String)>> {
    for d in devs {
        let mounts = mounts_of(&d.dev);
        if !mounts.is_empty() {
            return Ok(Some((
                d.name.clone(),
                format!("mount(s) {}", mounts.join(", ")),
            )));
        }
        let others: Vec<&String> = d.holders.iter().filter(|h| !leaving.contains(*h)).collect();
        if !others.is_empty() {
            let list: Vec<String> = others.iter().map(|s| s.to_string()).collect();
            return Ok(Some((
                d.name.clone(),
                format!("holder device(s) {}", list.join(", ")),
            )));
        }
    }
    if devs.is_empty() {
        return Ok(None);
    }
    // A device that just appeared (udev autoactivation of a clone) or was
    // just closed after writing is opened for a moment by udev's probes
    // (blkid, lvm's udev rules): an open count is looked at again until
    // OPEN_GRACE has passed before it counts as a user.
    let until = Instant::now() + OPEN_GRACE;
    loop {
        let out = lvm.other(
            "dmsetup",
            "dmsetup",
            &strs(&["info", "--columns", "--noheadings", "-o", "open,name"]),
        )?;
        let counts = parse_open_counts(&out.stdout);
        let busy = devs
            .iter()
            .find_map(|d| opens_by_others(d, &counts, leaving).map(|n| (d, n)));
        let Some((d, open)) = busy else {
            return Ok(None);
        };
        if Instant::now() >= until {
            return Ok(Some((
                d.name.clone(),
                format!(
                    "{open} open file handle(s) for more than {} s (a process has it open)",
                    OPEN_GRACE.as_secs()
                ),
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Opens of `d` beyond the one each of its holder devices in `leaving`
/// holds (a thin LV on its pool's `-tpool`, a raid LV on its rimage/rmeta:
/// a VG's own stack, which leaves with it), or `None` when nothing else has
/// it open.
fn opens_by_others(
    d: &DmDevice,
    counts: &BTreeMap<String, u64>,
    leaving: &BTreeSet<String>,
) -> Option<u64> {
    let own = d.holders.iter().filter(|h| leaving.contains(*h)).count() as u64;
    counts.get(&d.name).filter(|&&n| n > own).map(|n| n - own)
}

/// dm name → open count from `dmsetup info -c --noheadings -o open,name`
/// (`0:vg-lv` per line; the count first, so a name with a colon still
/// parses). Lines that do not parse (`No devices found`) are skipped.
pub fn parse_open_counts(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let (n, name) = l.trim().split_once(':')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// How long an open count is waited out before a dm device counts as in use.
const OPEN_GRACE: Duration = Duration::from_secs(10);

/// The dm devices built only on `clone_devs` (`major:minor`), directly or on
/// other such dm devices. A dm device that mixes clone and other devices is
/// an error: it is neither removed nor ignored.
pub fn clone_dm_devices(all: &[DmDevice], clone_devs: &BTreeSet<String>) -> Result<Vec<DmDevice>> {
    let mut ours: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut grew = false;
        for d in all {
            if ours.contains(&d.dev) || d.slaves.is_empty() {
                continue;
            }
            let on_ours = |s: &String| clone_devs.contains(s) || ours.contains(s);
            let n = d.slaves.iter().filter(|s| on_ours(s)).count();
            if n == d.slaves.len() {
                ours.insert(d.dev.clone());
                grew = true;
            } else if n > 0 && d.slaves.iter().any(|s| clone_devs.contains(s)) {
                return Err(LvmError::MixedDm {
                    name: d.name.clone(),
                    slaves: d.slaves.join(", "),
                });
            }
        }
        if !grew {
            break;
        }
    }
    Ok(all
        .iter()
        .filter(|d| ours.contains(&d.dev))
        .cloned()
        .collect())
}

/// Removes `devs` (all must be unused except by each other), top-most first.
pub fn remove_dm(lvm: &Lvm, devs: &[DmDevice]) -> Result<Vec<String>> {
    let leaving: BTreeSet<String> = devs.iter().map(|d| d.kname.clone()).collect();
    if let Some((name, holder)) = first_busy(lvm, devs, &leaving)? {
        return Err(LvmError::Busy {
            device: format!("/dev/mapper/{name}"),
            holder,
        });
    }
    let mut left: Vec<&DmDevice> = devs.iter().collect();
    let mut removed = Vec::new();
    while !left.is_empty() {
        let gone: BTreeSet<String> = leaving
            .iter()
            .filter(|k| !left.iter().any(|d| &d.kname == *k))
            .cloned()
            .collect();
        // Remove those whose holders (within the set) are already gone.
        let (now, later): (Vec<&DmDevice>, Vec<&DmDevice>) = left.into_iter().partition(|d| {
            d.holders
                .iter()
                .all(|h| gone.contains(h) || !leaving.contains(h))
        });
        if now.is_empty() {
            return Err(LvmError::Busy {
                device: later
                    .iter()
                    .map(|d| d.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                holder: "each other (holder cycle)".into(),
            });
        }
        for d in now {
            // No lasting user was found above, but udev's worker may still be
            // probing the freshly activated device: `--retry` lets
            // libdevmapper retry a busy remove for a few seconds (the lab
            // bench saw EBUSY here on 3 of 9 release mounts without it).
            lvm.other("dmsetup", "dmsetup", &strs(&["remove", "--retry", &d.name]))?;
            tracing::info!(dm = %d.name, "removed accidental activation of a clone");
            removed.push(d.name.clone());
        }
        left = later;
    }
    Ok(removed)
}

/// The names of dm devices built directly on any of `devices` (whatever
/// else they span). Used to tell an operator that the host already has
/// something active on a clone goldmount refuses to import; empty when
/// nothing is or the devices cannot be read.
pub fn active_on(devices: &[PathBuf]) -> Vec<String> {
    let devs: BTreeSet<String> = devices.iter().filter_map(|d| dev_of(d).ok()).collect();
    list_dm(Path::new("/sys/block"))
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.slaves.iter().any(|s| devs.contains(s)))
        .map(|d| d.name)
        .collect()
}

/// Detects and undoes an accidental activation of the clone on `devices`
/// (e.g. udev autoactivation under the gold VG's name). Returns the dm names
/// removed; errors if any of them is in use, naming the holder.
pub fn undo_accidental_activation(lvm: &Lvm, devices: &[PathBuf]) -> Result<Vec<String>> {
    let clone_devs = devices
        .iter()
        .map(|d| dev_of(d))
        .collect::<Result<BTreeSet<_>>>()?;
    let all = list_dm(Path::new("/sys/block"))?;
    let ours = clone_dm_devices(&all, &clone_devs)?;
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    tracing::warn!(
        devices = ?ours.iter().map(|d| &d.name).collect::<Vec<_>>(),
        "clone devices were activated before import; removing those dm devices"
    );
    remove_dm(lvm, &ours)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn dm(k: &str, dev: &str, slaves: &[&str], holders: &[&str]) -> DmDevice {
        DmDevice {
            kname: k.into(),
            name: format!("n{k}"),
            uuid: String::new(),
            dev: dev.into(),
            slaves: slaves.iter().map(|s| s.to_string()).collect(),
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_dm_device_removed_while_listing_is_skipped() {
        let sys = tempfile::tempdir().unwrap();
        let d0 = sys.path().join("dm-0");
        fs::create_dir_all(d0.join("dm")).unwrap();
        fs::write(d0.join("dm/name"), "vg-lv\n").unwrap();
        fs::write(d0.join("dev"), "254:0\n").unwrap();
        // dm-1's directory was listed but its attributes are gone.
        fs::create_dir_all(sys.path().join("dm-1")).unwrap();
        let all = list_dm(sys.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].dev.as_str()),
            ("vg-lv", "254:0")
        );
    }

    #[test]
    fn a_vgs_own_stack_does_not_count_as_a_user() {
        // Thin pool: tpool (dm-2) held by the pool's visible device (dm-3)
        // and two thin LVs (dm-4, dm-5), each holding one open of it.
        let mut tpool = dm(
            "dm-2",
            "253:2",
            &["253:0", "253:1"],
            &["dm-3", "dm-4", "dm-5"],
        );
        tpool.name = "pve-data-tpool".into();
        let counts: BTreeMap<String, u64> = [("pve-data-tpool".to_string(), 3)].into();
        let all: BTreeSet<String> = ["dm-2", "dm-3", "dm-4", "dm-5"].map(String::from).into();
        assert_eq!(opens_by_others(&tpool, &counts, &all), None);
        // One more open (a process with the pool open) is a user.
        let four: BTreeMap<String, u64> = [("pve-data-tpool".to_string(), 4)].into();
        assert_eq!(opens_by_others(&tpool, &four, &all), Some(1));
        // Holders that are not leaving do not excuse their opens.
        let some: BTreeSet<String> = ["dm-2", "dm-3"].map(String::from).into();
        assert_eq!(opens_by_others(&tpool, &counts, &some), Some(2));
        // A device nothing holds: any open is a user.
        let mut lv = dm("dm-6", "253:6", &["7:0"], &[]);
        lv.name = "pve-root".into();
        let one: BTreeMap<String, u64> = [("pve-root".to_string(), 1)].into();
        assert_eq!(opens_by_others(&lv, &one, &all), Some(1));
        assert_eq!(opens_by_others(&lv, &BTreeMap::new(), &all), None);
    }

    #[test]
    fn open_counts_parse_with_colons_in_names() {
        let c = parse_open_counts("0:vg_gold-home\n2:vg_gold-root\n1:odd:name\nNo devices found\n");
        assert_eq!(c.get("vg_gold-home"), Some(&0));
        assert_eq!(c.get("vg_gold-root"), Some(&2));
        assert_eq!(c.get("odd:name"), Some(&1));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn dm_names_split_like_lvm() {
        assert_eq!(
            split_dm_name("vg_gold-root"),
            Some(("vg_gold".into(), "root".into()))
        );
        assert_eq!(
            split_dm_name("a--b-c--d"),
            Some(("a-b".into(), "c-d".into()))
        );
        assert_eq!(split_dm_name("nodash"), None);
    }

    #[test]
    fn only_clone_built_dm_devices_are_selected_mixed_is_refused() {
        let clone: BTreeSet<String> = ["8:16".to_string(), "8:32".to_string()].into();
        let all = vec![
            dm("dm-0", "254:0", &["8:0"], &[]),           // host
            dm("dm-1", "254:1", &["8:16"], &["dm-2"]),    // clone
            dm("dm-2", "254:2", &["254:1", "8:32"], &[]), // on clone + clone dm
        ];
        let ours = clone_dm_devices(&all, &clone).unwrap();
        assert_eq!(
            ours.iter().map(|d| d.kname.as_str()).collect::<Vec<_>>(),
            ["dm-1", "dm-2"]
        );
        let mixed = vec![dm("dm-3", "254:3", &["8:0", "8:16"], &[])];
        assert!(matches!(
            clone_dm_devices(&mixed, &clone),
            Err(LvmError::MixedDm { .. })
        ));
    }
}
