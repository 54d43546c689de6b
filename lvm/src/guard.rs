//! The autoactivation guard: LVM's devices file (lvm2 ≥ 2.03.12).
//!
//! With `devices/use_devicesfile = 1`, lvm2 — including the udev-triggered
//! `pvscan --cache` autoactivation — only looks at devices listed in
//! `<system dir>/devices/system.devices`. Installing the guard lists the
//! host's own PVs there (`lvmdevices --adddev`, excluding clone devices) and
//! sets `use_devicesfile = 1` in lvm.conf with a marked line; a clone LUN that
//! appears later is not listed, so it is never scanned nor autoactivated, and
//! goldmount reaches it only with explicit `--devices`. Removing the guard
//! restores lvm.conf exactly and sets the devices file aside if goldmount
//! created it. See lvm/README.md for the exact change.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dm;
use crate::error::{LvmError, Result};
use crate::metadata::read_pv;
use crate::tool::{strs, Lvm};

/// Marker on every line goldmount adds to lvm.conf.
pub const MARK: &str = "# goldmount-guard";
/// Prefix of an admin's `use_devicesfile` line goldmount disabled.
pub const DISABLED: &str = "# goldmount-guard-disabled: ";
/// What the guard recorded at install time (next to lvm.conf).
const STATE_FILE: &str = "goldmount-guard.json";
/// The lvm2 setting that turns the devices file on.
const USE_DEVICESFILE: &str = "devices/use_devicesfile";
/// The lvm2 setting naming the devices file.
const DEVICESFILE: &str = "devices/devicesfile";

/// What the guard check found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GuardStatus {
    /// True when clones cannot be autoactivated: the devices file is in use,
    /// exists, and lists every PV of the host's active LVs.
    pub installed: bool,
    /// `devices/use_devicesfile` as lvm2 resolves it.
    pub use_devicesfile: bool,
    /// The devices file path.
    pub devices_file: PathBuf,
    /// Whether that file exists (if not, lvm2 uses every device!).
    pub devices_file_exists: bool,
    /// PVIDs listed in the devices file.
    pub listed_pvids: Vec<String>,
    /// Whether lvm.conf carries goldmount's marked line.
    pub set_by_goldmount: bool,
    /// Everything that keeps the guard from being effective or safe.
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    created_devices_file: bool,
    #[serde(default)]
    created_lvm_conf: bool,
    added: Vec<String>,
}

/// Adds the guard setting to an lvm.conf text: `use_devicesfile = 1` marked
/// as goldmount's, right inside the first top-level `devices {` (or a new
/// marked section), and any active `use_devicesfile` line commented out with a
/// marker so [`unpatch_lvm_conf`] can restore it.
pub fn patch_lvm_conf(conf: &str) -> String {
    let mut out = Vec::new();
    let mut inserted = false;
    for line in conf.lines() {
        let t = line.trim_start();
        if t.starts_with("use_devicesfile") && t.contains('=') {
            out.push(format!("{DISABLED}{line}"));
            continue;
        }
        out.push(line.to_string());
        if !inserted && line.starts_with("devices") && t.trim_end().ends_with('{') {
            out.push(format!("\tuse_devicesfile = 1 {MARK}: only listed devices are scanned or autoactivated; remove with `goldmount lvm-guard remove`"));
            inserted = true;
        }
    }
    if !inserted {
        out.push(format!("devices {{ {MARK}"));
        out.push(format!("\tuse_devicesfile = 1 {MARK}"));
        out.push(format!("}} {MARK}"));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Undoes [`patch_lvm_conf`]: drops marked lines, restores disabled ones.
pub fn unpatch_lvm_conf(conf: &str) -> String {
    let mut out = Vec::new();
    for line in conf.lines() {
        if let Some(orig) = line.strip_prefix(DISABLED) {
            out.push(orig.to_string());
        } else if !line.contains(MARK) {
            out.push(line.to_string());
        }
    }
    let mut s = out.join("\n");
    if conf.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// PVIDs (undashed PV UUIDs) listed in a devices file.
pub fn parse_devices_file(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|f| f.strip_prefix("PVID="))
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

fn read_opt(p: &Path) -> Result<Option<String>> {
    match fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LvmError::io(p, e)),
    }
}

fn write_atomic(p: &Path, text: &str) -> Result<()> {
    let tmp = p.with_extension("goldmount-tmp");
    fs::write(&tmp, text).map_err(|e| LvmError::io(&tmp, e))?;
    fs::rename(&tmp, p).map_err(|e| LvmError::io(p, e))
}

/// PV UUIDs (undashed) under the host's active LVM dm devices.
fn active_host_pvids(excluded: &BTreeSet<String>) -> Vec<(String, String)> {
    let Ok(all) = dm::list_dm(Path::new("/sys/block")) else {
        return Vec::new();
    };
    let slaves: BTreeSet<String> = all
        .iter()
        .filter(|d| d.uuid.starts_with("LVM-"))
        .flat_map(|d| d.slaves.iter().cloned())
        .collect();
    let dm_devs: BTreeSet<&str> = all.iter().map(|d| d.dev.as_str()).collect();
    slaves
        .into_iter()
        .filter(|s| !dm_devs.contains(s.as_str()))
        .filter_map(|s| {
            let path = PathBuf::from(format!("/dev/block/{s}"));
            if dm::dev_of(&path).is_ok_and(|d| excluded.contains(&d)) {
                return None;
            }
            let src = fsdetect::FileSource::open(&path).ok()?;
            let pv = read_pv(&src).ok()?;
            Some((
                path.display().to_string(),
                pv.label.pv_uuid.replace('-', ""),
            ))
        })
        .collect()
}

impl Lvm {
    fn devices_file_path(&self) -> Result<PathBuf> {
        let name = self
            .settings(&[DEVICESFILE])?
            .remove(DEVICESFILE)
            .flatten()
            .unwrap_or_else(|| "system.devices".into());
        Ok(self.system_dir().join("devices").join(name))
    }

    /// Checks whether clones are kept away from LVM autoactivation.
    /// `clone_devices` are goldmount's own devices (clones it imported): an
    /// active LV on them is a clone in use, not a host PV missing from the
    /// devices file, so they do not count against the guard.
    pub fn check_autoactivation_guard(&self, clone_devices: &[PathBuf]) -> Result<GuardStatus> {
        let excluded = device_numbers(clone_devices);
        let mut settings = self.settings(&[USE_DEVICESFILE, DEVICESFILE])?;
        let use_df = settings.remove(USE_DEVICESFILE).flatten().as_deref() == Some("1");
        let path = self.system_dir().join("devices").join(
            settings
                .remove(DEVICESFILE)
                .flatten()
                .unwrap_or_else(|| "system.devices".into()),
        );
        let text = read_opt(&path)?;
        let conf = read_opt(&self.system_dir().join("lvm.conf"))?.unwrap_or_default();
        let listed = text.as_deref().map(parse_devices_file).unwrap_or_default();
        let mut problems = Vec::new();
        if !use_df {
            problems.push("devices/use_devicesfile is not 1: every device is scanned and autoactivated, clones included".to_string());
        }
        if text.is_none() {
            problems.push(format!(
                "{} does not exist: lvm2 then uses every device",
                path.display()
            ));
        }
        if use_df {
            for (dev, pvid) in active_host_pvids(&excluded) {
                if !listed.contains(&pvid) {
                    problems.push(format!(
                        "{dev} (PV {pvid}) backs an active LV but is not in the devices file"
                    ));
                }
            }
        }
        Ok(GuardStatus {
            installed: problems.is_empty(),
            use_devicesfile: use_df,
            devices_file: path,
            devices_file_exists: text.is_some(),
            listed_pvids: listed,
            set_by_goldmount: conf.contains(MARK),
            problems,
        })
    }

    /// Installs the guard. `clone_devices` are devices that must NOT be
    /// listed (clones already attached). Refuses when a PV UUID is on two
    /// devices (a clone next to its gold copy that was not named). Verifies
    /// afterwards that the host still sees every PV it saw before, and rolls
    /// back otherwise. Idempotent.
    pub fn install_autoactivation_guard(&self, clone_devices: &[PathBuf]) -> Result<GuardStatus> {
        let before = self.check_autoactivation_guard(clone_devices)?;
        if before.installed {
            return Ok(before);
        }
        let excluded = clone_devices
            .iter()
            .map(|d| dm::dev_of(d))
            .collect::<Result<BTreeSet<_>>>()?;
        // Every PV the host sees without a devices file, minus the clones.
        let rows = self.all_pvs(&["--devicesfile", ""])?;
        let host: Vec<_> = rows
            .into_iter()
            .filter(|r| !dm::dev_of(Path::new(&r.pv_name)).is_ok_and(|d| excluded.contains(&d)))
            .collect();
        let mut seen = BTreeSet::new();
        for r in &host {
            if !seen.insert(r.pv_uuid.clone()) {
                return Err(LvmError::Guard(format!(
                    "PV {} is on more than one device (a clone next to its gold?); pass the clone devices to exclude",
                    r.pv_uuid
                )));
            }
        }
        let path = self.devices_file_path()?;
        let mut state = State {
            created_devices_file: !path.exists(),
            created_lvm_conf: false,
            added: Vec::new(),
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| LvmError::io(dir, e))?;
        }
        if state.created_devices_file {
            write_atomic(
                &path,
                "# LVM uses devices listed in this file.\n# Created by goldmount (autoactivation guard).\nVERSION=1.1.1\n",
            )?;
        }
        let listed = parse_devices_file(&read_opt(&path)?.unwrap_or_default());
        for r in &host {
            if listed.contains(&r.pv_uuid.replace('-', "")) {
                continue;
            }
            self.command(
                "lvmdevices",
                &strs(&[
                    "--config",
                    "devices/use_devicesfile=1",
                    "--adddev",
                    &r.pv_name,
                ]),
            )?;
            state.added.push(r.pv_name.clone());
        }
        let conf_path = self.system_dir().join("lvm.conf");
        let conf_opt = read_opt(&conf_path)?;
        state.created_lvm_conf = conf_opt.is_none();
        let conf = conf_opt.unwrap_or_default();
        if !conf.contains(MARK) {
            write_atomic(&conf_path, &patch_lvm_conf(&conf))?;
        }
        let state_path = self.system_dir().join(STATE_FILE);
        let json = serde_json::to_string_pretty(&state).unwrap_or_default();
        write_atomic(&state_path, &json)?;

        // Verify: guard effective and every host PV still visible.
        let status = self.check_autoactivation_guard(clone_devices)?;
        let visible: Vec<crate::tool::PvRow> = self.host_pvs()?;
        let lost: Vec<&str> = host
            .iter()
            .filter(|r| !visible.iter().any(|v| v.pv_uuid == r.pv_uuid))
            .map(|r| r.pv_name.as_str())
            .collect();
        if !status.installed || !lost.is_empty() {
            let why = format!(
                "after install: problems {:?}, host PVs no longer visible {:?}; rolled back",
                status.problems, lost
            );
            self.remove_autoactivation_guard()?;
            return Err(LvmError::Guard(why));
        }
        tracing::info!(devices_file = %status.devices_file.display(), pvs = host.len(), "LVM autoactivation guard installed");
        Ok(status)
    }

    /// Removes the guard: restores lvm.conf and sets aside the devices file if
    /// goldmount created it (renamed `*.goldmount-removed`, never deleted).
    /// Never touches any VG's activation.
    pub fn remove_autoactivation_guard(&self) -> Result<GuardStatus> {
        let conf_path = self.system_dir().join("lvm.conf");
        let state_path = self.system_dir().join(STATE_FILE);
        let state: State = match read_opt(&state_path)? {
            Some(s) => serde_json::from_str(&s).unwrap_or_default(),
            None => State::default(),
        };
        if let Some(conf) = read_opt(&conf_path)? {
            if conf.contains(MARK) || conf.contains(DISABLED) {
                let restored = unpatch_lvm_conf(&conf);
                if state.created_lvm_conf && restored.trim().is_empty() {
                    fs::remove_file(&conf_path).map_err(|e| LvmError::io(&conf_path, e))?;
                } else {
                    write_atomic(&conf_path, &restored)?;
                }
            }
        }
        if state.created_devices_file {
            let path = self.devices_file_path()?;
            if path.exists() {
                let aside = path.with_extension("devices.goldmount-removed");
                fs::rename(&path, &aside).map_err(|e| LvmError::io(&path, e))?;
            }
        }
        if state_path.exists() {
            fs::remove_file(&state_path).map_err(|e| LvmError::io(&state_path, e))?;
        }
        self.check_autoactivation_guard(&[])
    }
}

/// [`Lvm::check_autoactivation_guard`] with the default lvm2 setup.
pub fn check_autoactivation_guard(clone_devices: &[PathBuf]) -> Result<GuardStatus> {
    Lvm::default().check_autoactivation_guard(clone_devices)
}

/// The device numbers of `devices`; a device that is gone has none and
/// cannot match anything, so it is left out.
fn device_numbers(devices: &[PathBuf]) -> BTreeSet<String> {
    devices.iter().filter_map(|d| dm::dev_of(d).ok()).collect()
}

/// [`Lvm::install_autoactivation_guard`] with the default lvm2 setup.
pub fn install_autoactivation_guard(clone_devices: &[PathBuf]) -> Result<GuardStatus> {
    Lvm::default().install_autoactivation_guard(clone_devices)
}

/// [`Lvm::remove_autoactivation_guard`] with the default lvm2 setup.
pub fn remove_autoactivation_guard() -> Result<GuardStatus> {
    Lvm::default().remove_autoactivation_guard()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lvm_conf_patch_round_trips() {
        let conf = "config {\n}\ndevices {\n\t# use_devicesfile = 0\n\tuse_devicesfile = 0\n\tscan = [ \"/dev\" ]\n}\n";
        let p = patch_lvm_conf(conf);
        assert!(p.contains("devices {\n\tuse_devicesfile = 1 # goldmount-guard"));
        assert!(p.contains("# goldmount-guard-disabled: \tuse_devicesfile = 0"));
        assert!(p.contains("\t# use_devicesfile = 0\n"));
        assert_eq!(unpatch_lvm_conf(&p), conf);
        let bare = "global {\n}\n";
        let p = patch_lvm_conf(bare);
        assert!(p.ends_with("devices { # goldmount-guard\n\tuse_devicesfile = 1 # goldmount-guard\n} # goldmount-guard\n"));
        assert_eq!(unpatch_lvm_conf(&p), bare);
    }

    #[test]
    fn devices_file_pvids() {
        let t = "# LVM uses devices listed in this file.\nVERSION=1.1.1\nIDTYPE=loop_file IDNAME=/a.img DEVNAME=/dev/loop2 PVID=jOFeRalgZIo11qVyu0CFXqPYwcEYVwcJ\nIDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda PVID=.\n";
        assert_eq!(
            parse_devices_file(t),
            vec!["jOFeRalgZIo11qVyu0CFXqPYwcEYVwcJ"]
        );
    }
}
