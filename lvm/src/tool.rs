//! lvm2 driven through its commands and JSON reports. Every command that
//! concerns a clone names the clone's devices with `--devices` (which
//! overrides the devices file and hides every other device from that command),
//! so lvm2 never scans or touches the rest of the host. Only the read-only
//! host listings ([`Lvm::host_pvs`]) use the host's normal device view.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{LvmError, Result};
use crate::run::{self, Output};

/// How lvm2 is run.
#[derive(Debug, Clone)]
pub struct Lvm {
    /// The `lvm` binary.
    pub program: String,
    /// Timeout of one command.
    pub timeout: Duration,
    /// `LVM_SYSTEM_DIR` (where lvm.conf and devices/ live); `None` = /etc/lvm.
    pub system_dir: Option<PathBuf>,
    /// `false` on kernels without device-mapper: commands get
    /// `--driverloaded n`, so metadata can be read and rewritten (import) but
    /// nothing can be activated.
    pub driver_loaded: bool,
}

impl Default for Lvm {
    fn default() -> Self {
        Lvm {
            program: "lvm".into(),
            timeout: Duration::from_secs(120),
            system_dir: None,
            driver_loaded: true,
        }
    }
}

/// A PV row of `pvs` (host view).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PvRow {
    /// Device path.
    pub pv_name: String,
    /// PV UUID.
    pub pv_uuid: String,
    /// VG name (empty for orphans).
    #[serde(default)]
    pub vg_name: String,
    /// VG UUID (empty for orphans).
    #[serde(default)]
    pub vg_uuid: String,
    /// `duplicate` when lvm2 saw this PV UUID on another device too and is
    /// not using this one.
    #[serde(default)]
    pub pv_duplicate: String,
}

/// An LV row of `lvs`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LvRow {
    /// LV name.
    pub lv_name: String,
    /// LV UUID.
    pub lv_uuid: String,
    /// `/dev/<vg>/<lv>` (empty for hidden LVs).
    #[serde(default)]
    pub lv_path: String,
    /// `/dev/mapper/<vg>-<lv>`.
    #[serde(default)]
    pub lv_dm_path: String,
    /// `active` or empty.
    #[serde(default)]
    pub lv_active: String,
    /// `open` or empty.
    #[serde(default)]
    pub lv_device_open: String,
    /// First segment's type.
    #[serde(default)]
    pub segtype: String,
    /// Attribute string (`-wi-a-----`).
    #[serde(default)]
    pub lv_attr: String,
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<ReportSection<T>>,
}

#[derive(Deserialize)]
struct ReportSection<T> {
    #[serde(alias = "pv", alias = "lv", alias = "vg")]
    rows: Option<Vec<T>>,
}

/// Parses lvm2's `--reportformat json` output (`{"report":[{"pv":[...]}]}`).
pub fn parse_report<T: for<'de> Deserialize<'de>>(command: &str, json: &str) -> Result<Vec<T>> {
    let r: Report<T> = serde_json::from_str(json).map_err(|source| LvmError::Report {
        command: command.to_string(),
        source,
    })?;
    Ok(r.report
        .into_iter()
        .flat_map(|s| s.rows.unwrap_or_default())
        .collect())
}

/// `--devices a,b` for a set of clone devices.
pub fn devices_arg(devices: &[PathBuf]) -> String {
    devices
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

impl Lvm {
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("LVM_SUPPRESS_FD_WARNINGS".to_string(), "1".to_string())];
        if let Some(d) = &self.system_dir {
            env.push(("LVM_SYSTEM_DIR".into(), d.to_string_lossy().into_owned()));
        }
        env
    }

    /// Runs `lvm <sub> args…` (adding `--driverloaded n` when configured).
    pub fn command(&self, sub: &str, args: &[String]) -> Result<Output> {
        let mut full = vec![sub.to_string()];
        if !self.driver_loaded && !matches!(sub, "lvmconfig" | "lvmdevices" | "version") {
            full.push("--driverloaded".into());
            full.push("n".into());
        }
        full.extend_from_slice(args);
        run::run(&self.program, "lvm2", &full, &self.env(), self.timeout)
    }

    /// Runs another program (dmsetup…) with this runner's timeout.
    pub fn other(&self, program: &str, package: &'static str, args: &[String]) -> Result<Output> {
        run::run(program, package, args, &self.env(), self.timeout)
    }

    fn report<T: for<'de> Deserialize<'de>>(&self, sub: &str, args: &[String]) -> Result<Vec<T>> {
        let mut full = vec!["--reportformat".to_string(), "json".to_string()];
        full.extend_from_slice(args);
        let out = self.command(sub, &full)?;
        parse_report(&run::display(sub, &full), &out.stdout)
    }

    /// Every PV device the host's own LVM view shows (honours its devices
    /// file or filters), duplicates included (`-a`). Read-only; used to
    /// detect name/UUID collisions.
    pub fn host_pvs(&self) -> Result<Vec<PvRow>> {
        self.all_pvs(&[])
    }

    /// `pvs -a` with extra leading arguments, keeping only rows that are PVs.
    pub fn all_pvs(&self, extra: &[&str]) -> Result<Vec<PvRow>> {
        let mut args = strs(extra);
        args.extend(strs(&[
            "-a",
            "-o",
            "pv_name,pv_uuid,vg_name,vg_uuid,duplicate",
        ]));
        let rows: Vec<PvRow> = self.report("pvs", &args)?;
        Ok(rows.into_iter().filter(|r| !r.pv_uuid.is_empty()).collect())
    }

    /// The PVs on exactly `devices`.
    pub fn clone_pvs(&self, devices: &[PathBuf]) -> Result<Vec<PvRow>> {
        self.report(
            "pvs",
            &strs(&[
                "--devices",
                &devices_arg(devices),
                "-o",
                "pv_name,pv_uuid,vg_name,vg_uuid",
            ]),
        )
    }

    /// `vgimportclone --basevgname <name>` on exactly `devices`: new VG name,
    /// new VG and PV UUIDs written to the clone's PVs (never to others).
    pub fn vgimportclone(&self, devices: &[PathBuf], base_name: &str) -> Result<Output> {
        let mut args = strs(&[
            "--devices",
            &devices_arg(devices),
            "--basevgname",
            base_name,
        ]);
        args.extend(devices.iter().map(|d| d.to_string_lossy().into_owned()));
        self.command("vgimportclone", &args)
    }

    /// `vgchange --activate y|n` of one VG on exactly `devices`.
    pub fn vgchange_activate(&self, devices: &[PathBuf], vg: &str, on: bool) -> Result<Output> {
        self.command(
            "vgchange",
            &strs(&[
                "--devices",
                &devices_arg(devices),
                "--activate",
                if on { "y" } else { "n" },
                vg,
            ]),
        )
    }

    /// The lvm system directory in effect.
    pub fn system_dir(&self) -> &Path {
        self.system_dir.as_deref().unwrap_or(Path::new("/etc/lvm"))
    }
}

/// Owned argument vector from string slices.
pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_lvm2_json_reports() {
        let j = r#"  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop2", "pv_uuid":"jOFeRa-lgZI-o11q-Vyu0-CFXq-PYwc-EYVwcJ", "vg_name":"vg_t", "vg_uuid":"prtgaL-Wd7I-1hAD-W4v3-12O1-AYMY-ghgBJe"}
              ]
          }
      ]
  }"#;
        let rows: Vec<PvRow> = parse_report("pvs", j).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].vg_name, "vg_t");
        let empty: Vec<LvRow> = parse_report("lvs", r#"{"report":[{"lv":[]}]}"#).unwrap();
        assert!(empty.is_empty());
        assert!(parse_report::<LvRow>("lvs", "not json").is_err());
    }
}
