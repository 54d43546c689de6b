//! lvm2 settings in effect (`devices/use_devicesfile`, …), read with as few
//! `lvmconfig` runs as possible and remembered while lvm.conf is unchanged.
//!
//! Each mount checks the autoactivation guard, which needs two settings.
//! Asking `lvmconfig KEY` per key, falling back to `--type default KEY` when
//! the key is not configured, cost four lvm2 processes per mount (~1 s each
//! under the lab's emulated CPU). Here one `lvmconfig --type current` gives
//! every configured value, one `--type default` run gives the built-in
//! defaults of the keys left over, and the answer is kept until lvm.conf or
//! lvmlocal.conf changes (size, mtime or inode), so a daemon pays it once.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::Result;
use crate::tool::{strs, Lvm};

/// Configuration files whose change invalidates remembered settings.
const CONFIG_FILES: &[&str] = &["lvm.conf", "lvmlocal.conf"];

/// (size, mtime ns, inode) of each configuration file, `None` when absent.
type Stamp = Vec<Option<(u64, i128, u64)>>;

/// Remembered answers, per (lvm program, system dir).
type Cache = HashMap<(String, PathBuf), (Stamp, BTreeMap<String, Option<String>>)>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn stamp(dir: &Path) -> Stamp {
    CONFIG_FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f)).ok().map(|m| {
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                (m.len(), mtime, m.ino())
            })
        })
        .collect()
}

/// `section/key` → value of every setting in `lvmconfig --type current`
/// output (a tree of `name {` … `}` blocks with `key=value` lines; strings
/// quoted). Nested sections join with `/`.
pub fn parse_config_tree(out: &str) -> BTreeMap<String, String> {
    let mut path: Vec<&str> = Vec::new();
    let mut values = BTreeMap::new();
    for line in out.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "}" {
            path.pop();
        } else if let Some(section) = line.strip_suffix('{') {
            path.push(section.trim());
        } else if let Some((k, v)) = line.split_once('=') {
            let mut key = path.join("/");
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(k.trim());
            values.insert(key, v.trim().trim_matches('"').to_string());
        }
    }
    values
}

/// Leaf name → value of `lvmconfig --type default KEY…` output, where each
/// value is printed as a comment (`# use_devicesfile=0`).
pub fn parse_default_values(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

impl Lvm {
    /// The effective values of `keys` (`section/name`): configured, else
    /// lvm2's built-in default, `None` when lvm2 knows neither. Remembered
    /// while the configuration files are unchanged.
    pub fn settings(&self, keys: &[&str]) -> Result<BTreeMap<String, Option<String>>> {
        let id = (self.program.clone(), self.system_dir().to_path_buf());
        let now = stamp(self.system_dir());
        if let Ok(c) = cache().lock() {
            if let Some((at, known)) = c.get(&id) {
                if *at == now && keys.iter().all(|k| known.contains_key(*k)) {
                    return Ok(keys
                        .iter()
                        .map(|k| (k.to_string(), known.get(*k).cloned().flatten()))
                        .collect());
                }
            }
        }
        let current = parse_config_tree(
            &self
                .command("lvmconfig", &strs(&["--type", "current"]))?
                .stdout,
        );
        let mut found: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut missing = Vec::new();
        for k in keys {
            match current.get(*k) {
                Some(v) => {
                    found.insert(k.to_string(), Some(v.clone()));
                }
                None => missing.push(*k),
            }
        }
        if !missing.is_empty() {
            let mut args = strs(&["--type", "default"]);
            args.extend(strs(&missing));
            let defaults = parse_default_values(&self.command("lvmconfig", &args)?.stdout);
            for k in missing {
                let leaf = k.rsplit('/').next().unwrap_or(k);
                found.insert(k.to_string(), defaults.get(leaf).cloned());
            }
        }
        if let Ok(mut c) = cache().lock() {
            let entry = c
                .entry(id)
                .or_insert_with(|| (now.clone(), BTreeMap::new()));
            if entry.0 != now {
                *entry = (now, BTreeMap::new());
            }
            entry
                .1
                .extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn configured_tree_keys_join_sections() {
        let t = parse_config_tree(
            "config {\n}\ndevices {\n\tuse_devicesfile=1\n\tdevicesfile=\"x.devices\"\n}\n\
             activation {\n\tnested {\n\t\tk=2\n\t}\n\tudev_sync=1\n}\n",
        );
        assert_eq!(t.get("devices/use_devicesfile").unwrap(), "1");
        assert_eq!(t.get("devices/devicesfile").unwrap(), "x.devices");
        assert_eq!(t.get("activation/nested/k").unwrap(), "2");
        assert_eq!(t.get("activation/udev_sync").unwrap(), "1");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn defaults_are_read_from_comments() {
        let d = parse_default_values("# use_devicesfile=0\n# devicesfile=\"system.devices\"\n");
        assert_eq!(d.get("use_devicesfile").unwrap(), "0");
        assert_eq!(d.get("devicesfile").unwrap(), "system.devices");
    }

    fn lvm_in(dir: &Path) -> Lvm {
        Lvm {
            system_dir: Some(dir.to_path_buf()),
            ..Lvm::default()
        }
    }

    /// Against the real lvm2 (skipped where it is not installed): configured
    /// values win, the rest are lvm2's defaults, and a change of lvm.conf is
    /// seen at once although answers are remembered.
    #[test]
    fn real_lvmconfig_values_follow_the_file() {
        if Lvm::default().command("version", &[]).is_err()
            && !Path::new("/sbin/lvm").exists()
            && !Path::new("/usr/sbin/lvm").exists()
        {
            eprintln!("lvm2 not installed; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = ["devices/use_devicesfile", "devices/devicesfile"];
        std::fs::write(dir.path().join("lvm.conf"), "devices {\n}\n").unwrap();
        let lvm = lvm_in(dir.path());
        let first = lvm.settings(&keys).unwrap();
        assert!(first["devices/use_devicesfile"].is_some(), "{first:?}");
        assert_eq!(
            first["devices/devicesfile"].as_deref(),
            Some("system.devices")
        );
        std::fs::write(
            dir.path().join("lvm.conf"),
            "devices {\n use_devicesfile = 1\n devicesfile = \"other.devices\"\n}\n",
        )
        .unwrap();
        let second = lvm.settings(&keys).unwrap();
        assert_eq!(second["devices/use_devicesfile"].as_deref(), Some("1"));
        assert_eq!(
            second["devices/devicesfile"].as_deref(),
            Some("other.devices")
        );
        assert_eq!(lvm.settings(&keys).unwrap(), second, "remembered");
    }
}
