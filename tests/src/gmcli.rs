//! The `goldmount` CLI and the host's view of what it left, for lab
//! scenarios: each goldmount process of a scenario runs against private
//! paths, every volume a scenario mounts is force-unmounted when it ends
//! (so a failing scenario leaves nothing for the next one), and the checks
//! read mountinfo, `dmsetup` and sysfs directly.
//!
//! Lab only: these helpers panic with the failing command and its stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{run, try_run};

/// How long one goldmount command may take under the lab's emulated CPU.
pub const GM_TIMEOUT: Duration = Duration::from_secs(400);

/// The goldmount binary xtask built.
pub fn gm_bin() -> String {
    std::env::var("GOLDMOUNT_BIN").expect("GOLDMOUNT_BIN (set by cargo xtask lab)")
}

/// Points every goldmount process of this scenario at private paths under
/// `scratch`; returns the volumes root.
pub fn gm_env(scratch: &Path) -> PathBuf {
    let root = scratch.join("volumes");
    fs::create_dir_all(scratch.join("state")).unwrap();
    std::env::set_var("GOLDMOUNT_VOLUMES_ROOT", &root);
    std::env::set_var("GOLDMOUNT_STATE", scratch.join("state/state.redb"));
    std::env::set_var("GOLDMOUNT_RUN_DIR", scratch.join("run"));
    std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
    root
}

/// `goldmount args…`: its stdout, or the failure with its stderr.
pub fn gm(args: &[&str]) -> Result<String, String> {
    try_run(&gm_bin(), args, GM_TIMEOUT)
}

/// `goldmount mount --volume V --json --timeout 60 extra…` → the manifest.
pub fn gm_mount_with(volume: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["mount", "--volume", volume, "--json", "--timeout", "60"];
    args.extend_from_slice(extra);
    let out = gm(&args).unwrap_or_else(|e| panic!("{e}"));
    let m: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("manifest of {volume} is not JSON ({e}): {out}"));
    eprintln!("manifest {volume}: {m}");
    m
}

/// `goldmount list --json`.
pub fn gm_list() -> serde_json::Value {
    serde_json::from_str(&gm(&["list", "--json"]).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

/// Every volume a scenario may have mounted: force-unmounted on drop.
pub struct Volumes(std::sync::Mutex<Vec<String>>);

impl Volumes {
    /// None yet.
    pub fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }
    /// `v` is unmounted (forced) when the scenario ends.
    pub fn add(&self, v: &str) {
        self.0.lock().unwrap().push(v.to_string());
    }
}

impl Default for Volumes {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in self.0.lock().unwrap().iter().rev() {
            if let Err(e) = gm(&["unmount", "--volume", v, "--force"]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Mount points under `root` (from /proc/self/mountinfo).
pub fn mounts_under(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&r))
        .collect()
}

/// Names from `dmsetup ls`.
pub fn dm_names() -> Vec<String> {
    let out = run("dmsetup", &["ls"]);
    out.lines()
        .filter(|l| !l.contains("No devices found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// dm devices (sysfs names) whose slaves include one of `disk`'s partitions
/// or the disk itself.
pub fn dm_on_disk(disk: &Path) -> Vec<String> {
    let name = disk.file_name().unwrap().to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in fs::read_dir("/sys/block").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("dm-") {
            continue;
        }
        if let Ok(sl) = fs::read_dir(e.path().join("slaves")) {
            if sl
                .flatten()
                .any(|s| s.file_name().to_string_lossy().starts_with(&name))
            {
                v.push(n);
            }
        }
    }
    v
}

/// `lvm args…` (the host's lvm2).
pub fn lvm(args: &[&str]) -> String {
    run("lvm", args)
}

/// Loop devices backed by `img`.
pub fn loops_of(img: &Path) -> Vec<String> {
    run(
        "losetup",
        &["-n", "-O", "NAME", "-j", img.to_str().unwrap()],
    )
    .lines()
    .map(|l| l.trim().to_string())
    .filter(|l| !l.is_empty())
    .collect()
}

/// A copy of the gold image beside it, as the appliance's clone would be
/// (made while the gold is inactive).
pub fn clone_of(gold: &Path, name: &str) -> PathBuf {
    let c = gold.with_file_name(format!("{name}.img"));
    run(
        "cp",
        &[
            "--sparse=always",
            gold.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
    );
    c
}
