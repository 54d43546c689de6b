//! What `zpool list`, `zpool get` and `zfs list` say about pools and
//! datasets, parsed from their scripted (`-H -p`) output.

use std::path::PathBuf;

use crate::error::{Result, ZfsError};
use crate::run::{self, DEFAULT_TIMEOUT};

/// Pools imported on this host now, as (name, GUID).
pub fn imported_pools() -> Result<Vec<(String, u64)>> {
    let out = run::run(
        "zpool",
        &["list", "-H", "-p", "-o", "name,guid"],
        DEFAULT_TIMEOUT,
        || "listing imported ZFS pools (apt: zfsutils-linux)".into(),
    )?;
    parse_name_guid(&out.stdout)
}

/// Parses `zpool list -H -p -o name,guid`.
pub(crate) fn parse_name_guid(text: &str) -> Result<Vec<(String, u64)>> {
    const EXPECTED: &str = "NAME<TAB>GUID (decimal)";
    let bad = |l: &str| ZfsError::Parse {
        tool: "zpool list",
        line: l.to_string(),
        expected: EXPECTED,
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, guid) = l.split_once('\t').ok_or_else(|| bad(l))?;
            let guid = guid.trim().parse().map_err(|_| bad(l))?;
            Ok((name.to_string(), guid))
        })
        .collect()
}

/// The GUID of the imported pool `name`.
pub(crate) fn pool_guid(name: &str) -> Result<u64> {
    let out = run::run(
        "zpool",
        &["list", "-H", "-p", "-o", "name,guid", name],
        DEFAULT_TIMEOUT,
        || format!("reading the GUID of pool {name}"),
    )?;
    parse_name_guid(&out.stdout)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, g)| g)
        .ok_or_else(|| ZfsError::NotListed {
            name: name.to_string(),
        })
}

/// The altroot of the imported pool `name`, `None` if it has none.
pub(crate) fn pool_altroot(name: &str) -> Result<Option<PathBuf>> {
    let out = run::run(
        "zpool",
        &["get", "-H", "-o", "value", "altroot", name],
        DEFAULT_TIMEOUT,
        || format!("reading the altroot of pool {name}"),
    )?;
    let v = out.stdout.trim();
    Ok((!v.is_empty() && v != "-").then(|| PathBuf::from(v)))
}

/// One row of `zfs list -H -p -o name,mountpoint,canmount,keystatus,mounted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FsRow {
    pub name: String,
    pub mountpoint: String,
    pub canmount: String,
    pub keystatus: String,
    pub mounted: bool,
}

/// The filesystem datasets of `pool`, recursively.
pub(crate) fn list_filesystems(pool: &str) -> Result<Vec<FsRow>> {
    let out = run::run(
        "zfs",
        &[
            "list",
            "-H",
            "-p",
            "-r",
            "-t",
            "filesystem",
            "-o",
            "name,mountpoint,canmount,keystatus,mounted",
            pool,
        ],
        DEFAULT_TIMEOUT,
        || format!("listing the datasets of pool {pool}"),
    )?;
    parse_fs_rows(&out.stdout)
}

/// Parses the output of [`list_filesystems`]'s `zfs list`.
pub(crate) fn parse_fs_rows(text: &str) -> Result<Vec<FsRow>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, mountpoint, canmount, keystatus, mounted] = f[..] else {
                return Err(ZfsError::Parse {
                    tool: "zfs list",
                    line: l.to_string(),
                    expected:
                        "5 tab-separated fields: name, mountpoint, canmount, keystatus, mounted",
                });
            };
            Ok(FsRow {
                name: name.to_string(),
                mountpoint: mountpoint.to_string(),
                canmount: canmount.to_string(),
                keystatus: keystatus.to_string(),
                mounted: mounted == "yes",
            })
        })
        .collect()
}

/// The leaf devices of the imported pool `name`, as full paths (`zpool
/// status -P`).
pub(crate) fn pool_devices(name: &str) -> Result<Vec<PathBuf>> {
    let out = run::run("zpool", &["status", "-P", name], DEFAULT_TIMEOUT, || {
        format!("listing the devices of pool {name}")
    })?;
    Ok(parse_status_devices(&out.stdout))
}

/// The device paths in the `config:` section of `zpool status -P`: the
/// first field of each line that is an absolute path.
pub(crate) fn parse_status_devices(text: &str) -> Vec<PathBuf> {
    let mut in_config = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("config:") {
            in_config = true;
            continue;
        }
        if t.starts_with("errors:") {
            in_config = false;
        }
        if let Some(first) = t.split_whitespace().next().filter(|_| in_config) {
            if first.starts_with('/') {
                out.push(PathBuf::from(first));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_zpool_list() {
        let v = parse_name_guid("gold\t1234567890123456789\nclone-v1\t42\n").unwrap();
        assert_eq!(
            v,
            vec![
                ("gold".to_string(), 1_234_567_890_123_456_789),
                ("clone-v1".to_string(), 42)
            ]
        );
        assert!(parse_name_guid("gold 12\n").is_err());
        let e = parse_name_guid("gold\tnotanumber\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"gold\\tnotanumber\"") && e.contains("NAME<TAB>GUID"),
            "{e}"
        );
        assert!(parse_name_guid("").unwrap().is_empty());
    }

    #[test]
    fn parses_zfs_list() {
        let rows =
            parse_fs_rows("c\t/vol/c\ton\t-\tno\nc/data\t/vol/c/data\ton\t-\tyes\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[1].mounted && !rows[0].mounted);
        assert_eq!(rows[1].mountpoint, "/vol/c/data");
        let e = parse_fs_rows("only\ttwo\n").unwrap_err().to_string();
        assert!(
            e.contains("zfs list") && e.contains("5 tab-separated"),
            "{e}"
        );
    }

    #[test]
    fn parses_zpool_status_devices() {
        let text = "  pool: gp-v1-0a1b2c3d4e\n id: 1\n state: ONLINE\nconfig:\n\n\tNAME              STATE     READ WRITE CKSUM\n\tgp-v1-0a1b2c3d4e  ONLINE       0     0     0\n\t  mirror-0        ONLINE       0     0     0\n\t    /dev/loop3p1  ONLINE       0     0     0\n\t    /dev/loop4p1  ONLINE       0     0     0\n\tlogs\n\t  /dev/loop5      ONLINE       0     0     0\n\nerrors: No known data errors\n";
        assert_eq!(
            parse_status_devices(text),
            vec![
                PathBuf::from("/dev/loop3p1"),
                PathBuf::from("/dev/loop4p1"),
                PathBuf::from("/dev/loop5")
            ]
        );
        assert!(parse_status_devices("/dev/sda outside config\n").is_empty());
    }
}
