//! Clone-safe import of a VG from a clone's PVs, and its teardown.
//!
//! Order: read the clone's metadata ourselves (plan; missing PVs → error,
//! nothing touched) → undo any accidental activation of the clone → decide
//! whether the VG name or a PV/VG UUID collides with what the host sees (host
//! PVs/VGs, active dm devices, names the caller reserves) → if so,
//! `vgimportclone --basevgname <unique>` on exactly the clone's PVs → activate
//! exactly that VG with `--devices` → report the LVs and their device nodes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dm;
use crate::error::{LvmError, Result};
use crate::plan::{plan_devices, VgPlan};
use crate::tool::Lvm;

/// When to rename the clone's VG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rename {
    /// Only when its name or a UUID collides with something the host sees.
    #[default]
    OnCollision,
    /// Always (new UUIDs even when nothing collides now).
    Always,
}

/// Options of [`Lvm::import_clone_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Volume name; the default new VG name is `<vg>_<volume>`.
    pub volume: String,
    /// Explicit new VG name (overrides `<vg>_<volume>`).
    pub new_name: Option<String>,
    /// When to rename.
    pub rename: Rename,
    /// VG names other clones hold or are about to take (from the caller's
    /// state), treated as taken.
    pub reserved_names: Vec<String>,
    /// Activate after import (false: only rename, e.g. to inspect first).
    pub skip_activation: bool,
}

/// An LV of an imported VG.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImportedLv {
    /// LV name.
    pub name: String,
    /// LV UUID.
    pub uuid: String,
    /// `/dev/mapper/<vg>-<lv>` (dashes doubled).
    pub dm_path: PathBuf,
    /// `/dev/<vg>/<lv>`.
    pub path: PathBuf,
    /// Whether it is active now.
    pub active: bool,
    /// Its first segment's type (`striped`, `thin`, `raid1`, `cache`…).
    pub segtype: String,
    /// Why it holds no filesystem of its own (a thin or cache pool), if so.
    pub holds_no_data: Option<String>,
}

/// The result of importing a clone's VG.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedVg {
    /// The VG name in the gold copy (to resolve fstab lines such as
    /// `/dev/mapper/vg_gold-root` or `/dev/vg_gold/root`).
    pub original_name: String,
    /// The VG UUID before import.
    pub original_uuid: String,
    /// The name the VG has now.
    pub name: String,
    /// Its UUID now.
    pub uuid: String,
    /// Whether vgimportclone ran.
    pub renamed: bool,
    /// Why it was (or was not) renamed.
    pub collision: Option<String>,
    /// The clone's PV devices.
    pub devices: Vec<PathBuf>,
    /// Visible LVs.
    pub lvs: Vec<ImportedLv>,
    /// dm devices of an accidental activation that were removed first.
    pub undone_activation: Vec<String>,
    /// What lvm2 said when it could not activate every LV (a thin pool
    /// whose metadata check failed or whose `thin_check` is missing, a
    /// RAID LV without its target): the other LVs are active.
    pub activation_error: Option<String>,
}

impl ImportedVg {
    /// Why `lv` is not active, in lvm2's words where it said something.
    pub fn why_inactive(&self, lv: &ImportedLv) -> String {
        let Some(err) = &self.activation_error else {
            return format!(
                "lvm2 did not activate {} (segment type {})",
                lv.name, lv.segtype
            );
        };
        let mut why = format!(
            "lvm2 did not activate {} (segment type {}): {}",
            lv.name,
            lv.segtype,
            err.trim()
        );
        if err.contains("thin_check") && (err.contains("execvp") || err.contains("No such file")) {
            why.push_str(
                "; install thin-provisioning-tools on this host (lvm2 checks a thin pool with thin_check before activating it)",
            );
        } else if err.contains("Manual repair required") || err.contains("Check of pool") {
            why.push_str(
                "; the clone's thin pool metadata needs repair: goldmount never repairs a clone, fix the gold copy (lvconvert --repair) and take a new clone",
            );
        }
        why
    }
}

/// Checks a VG name the way lvm2 does (validate_name).
pub fn validate_vg_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < 128
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LvmError::BadName(name.to_string()))
    }
}

/// How often a vgimportclone is retried after undoing an activation of the
/// clone that the host's udev made during the import.
const LATE_ACTIVATION_RETRIES: u32 = 3;

/// `/dev/mapper/<vg>-<lv>` with lvm's dash doubling.
pub fn dm_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from(format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    ))
}

/// What the host sees, for collision and free-name checks.
#[derive(Debug, Default)]
struct HostView {
    vg_names: BTreeSet<String>,
    /// Dashed or undashed, compared without dashes.
    vg_uuids: BTreeSet<String>,
    pv_uuids: BTreeSet<String>,
    /// Host PV rows that are the clone's own devices (host LVM sees the clone:
    /// the guard is off); then duplicates may hide the gold copy, so rename.
    sees_clone: Vec<String>,
}

fn undash(s: &str) -> String {
    s.replace('-', "")
}

impl Lvm {
    fn host_view(&self, clone_devs: &BTreeSet<String>) -> Result<HostView> {
        let mut v = HostView::default();
        for row in self.host_pvs()? {
            if dm::dev_of(Path::new(&row.pv_name)).is_ok_and(|d| clone_devs.contains(&d)) {
                v.sees_clone.push(row.pv_name.clone());
                continue;
            }
            v.pv_uuids.insert(undash(&row.pv_uuid));
            if !row.vg_name.is_empty() {
                v.vg_names.insert(row.vg_name);
                v.vg_uuids.insert(undash(&row.vg_uuid));
            }
        }
        let all = dm::list_dm(Path::new("/sys/block"))?;
        // dm devices on the clone itself (a previous run's activation) are
        // not "the host's".
        let own: BTreeSet<String> = dm::clone_dm_devices(&all, clone_devs)?
            .into_iter()
            .map(|d| d.dev)
            .collect();
        for d in all.iter().filter(|d| !own.contains(&d.dev)) {
            if let (Some(u), Some(n)) = (d.lvm_vg_uuid(), d.lvm_vg_name()) {
                v.vg_uuids.insert(u.to_string());
                v.vg_names.insert(n);
            }
        }
        Ok(v)
    }

    /// Imports the one VG on `pvs` (see [`ImportOptions`]).
    pub fn import_clone_with(&self, pvs: &[PathBuf], opts: &ImportOptions) -> Result<ImportedVg> {
        let plan = one_vg(pvs)?;
        plan.require_complete()?;
        let original = plan.metadata.clone();
        // `<vg>_<volume>`; a VG already carrying that suffix was imported by
        // an earlier run for this volume (idempotent re-import).
        let suffix = format!("_{}", opts.volume);
        let target = match &opts.new_name {
            Some(n) => n.clone(),
            None if !opts.volume.is_empty() && original.name.ends_with(&suffix) => {
                original.name.clone()
            }
            None => format!("{}{suffix}", original.name),
        };
        validate_vg_name(&target)?;
        let already = original.name == target;

        // An earlier run's activation of this very import is ours; anything
        // else active on the clone is an accidental activation.
        let mut undone = if already {
            Vec::new()
        } else {
            dm::undo_accidental_activation(self, pvs)?
        };
        let clone_devs = pvs
            .iter()
            .map(|d| dm::dev_of(d))
            .collect::<Result<BTreeSet<_>>>()?;
        let host = self.host_view(&clone_devs)?;

        let collision = if already {
            None
        } else if !host.sees_clone.is_empty() {
            Some(format!(
                "the host's LVM sees the clone device(s) {} (autoactivation guard off?)",
                host.sees_clone.join(", ")
            ))
        } else if host.vg_names.contains(&original.name) {
            Some(format!("VG name {} is in use", original.name))
        } else if host.vg_uuids.contains(&undash(&original.id)) {
            Some(format!("VG UUID {} is in use", original.id))
        } else if let Some(p) = original
            .pvs
            .iter()
            .find(|p| host.pv_uuids.contains(&undash(&p.id)))
        {
            Some(format!("PV UUID {} is in use", p.id))
        } else if opts.reserved_names.contains(&original.name) {
            Some(format!(
                "VG name {} is reserved by another clone",
                original.name
            ))
        } else {
            None
        };
        let rename = !already && (collision.is_some() || opts.rename == Rename::Always);

        let name = if rename {
            let by = if host.vg_names.contains(&target) {
                Some("a VG the host sees or an active dm device".to_string())
            } else if opts.reserved_names.contains(&target) {
                Some("reserved by another clone".to_string())
            } else if Path::new("/dev").join(&target).exists() {
                Some(format!("/dev/{target} exists"))
            } else {
                None
            };
            if let Some(by) = by {
                return Err(LvmError::NameTaken { name: target, by });
            }
            tracing::info!(vg = %original.name, new = %target, why = ?collision, "vgimportclone");
            // udev's autoactivation of the clone may land after the check
            // above ("Device … has active LVs"), even while vgchange is still
            // creating its LVs: undo what it made and try again, a few times;
            // a failure with nothing activated stands.
            let mut tries = 0;
            while let Err(e) = self.vgimportclone(pvs, &target) {
                tries += 1;
                if tries > LATE_ACTIVATION_RETRIES {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
                let late = dm::undo_accidental_activation(self, pvs)?;
                if late.is_empty() {
                    return Err(e);
                }
                tracing::warn!(devices = ?late, "the clone was activated by the host while it was being imported; undone, retrying vgimportclone");
                undone.extend(late);
            }
            target
        } else {
            original.name.clone()
        };
        // Re-read from disk: what vgimportclone really wrote.
        let after = one_vg(pvs)?;
        if after.metadata.name != name {
            return Err(LvmError::Invalid(format!(
                "after import the clone's VG is named {}, expected {name}",
                after.metadata.name
            )));
        }
        // lvm2 activates what it can and fails for the rest (exit 5): the
        // LVs it left inactive are reported with its words, the others are
        // mounted.
        let activation_error = if opts.skip_activation {
            None
        } else {
            match self.vgchange_activate(pvs, &name, true) {
                Ok(_) => None,
                Err(LvmError::Command { stderr, .. }) => {
                    tracing::warn!(vg = %name, %stderr, "vgchange -ay did not activate every LV of the clone");
                    Some(stderr)
                }
                Err(e) => return Err(e),
            }
        };
        let lvs = self.imported_lvs(pvs, &after)?;
        Ok(ImportedVg {
            original_name: original.name,
            original_uuid: original.id,
            name,
            uuid: after.metadata.id.clone(),
            renamed: rename,
            collision,
            devices: pvs.to_vec(),
            lvs,
            undone_activation: undone,
            activation_error,
        })
    }

    /// The VG's visible LVs, each marked active when the kernel has its dm
    /// device built on the clone's own devices. Read from sysfs (the dm uuid
    /// is `LVM-<vg uuid><lv uuid>`, dashes removed) instead of an `lvs` run:
    /// one lvm2 process less per import, and the kernel is the authority on
    /// what is active.
    fn imported_lvs(&self, pvs: &[PathBuf], plan: &VgPlan) -> Result<Vec<ImportedLv>> {
        let vg = &plan.metadata.name;
        let clone_devs = pvs
            .iter()
            .map(|d| dm::dev_of(d))
            .collect::<Result<BTreeSet<_>>>()?;
        let all = dm::list_dm(Path::new("/sys/block"))?;
        let active: BTreeSet<String> = dm::clone_dm_devices(&all, &clone_devs)?
            .into_iter()
            .map(|d| d.uuid)
            .collect();
        let vg_uuid = undash(&plan.metadata.id);
        Ok(plan
            .metadata
            .visible_lvs()
            .map(|l| ImportedLv {
                name: l.name.clone(),
                uuid: l.id.clone(),
                dm_path: dm_path(vg, &l.name),
                path: PathBuf::from(format!("/dev/{vg}/{}", l.name)),
                active: active.contains(&format!("LVM-{vg_uuid}{}", undash(&l.id))),
                segtype: l.segtype.clone(),
                holds_no_data: l.holds_no_data().map(str::to_string),
            })
            .collect())
    }

    /// Imports the one VG on `pvs` under `<vg>_<volume>` when it collides.
    pub fn import_clone(&self, pvs: &[PathBuf], volume: &str) -> Result<ImportedVg> {
        self.import_clone_with(
            pvs,
            &ImportOptions {
                volume: volume.to_string(),
                ..ImportOptions::default()
            },
        )
    }

    /// Deactivates `vg` on exactly `pvs` for teardown. Refuses, naming the
    /// holder (mount point, holder device or open count), while an LV is in use.
    pub fn deactivate(&self, vg: &str, pvs: &[PathBuf]) -> Result<()> {
        let plan = one_vg(pvs)?;
        if plan.metadata.name != vg {
            return Err(LvmError::Invalid(format!(
                "the devices hold VG {}, not {vg}",
                plan.metadata.name
            )));
        }
        let prefix = format!("LVM-{}", undash(&plan.metadata.id));
        let ours: Vec<dm::DmDevice> = dm::list_dm(Path::new("/sys/block"))?
            .into_iter()
            .filter(|d| d.uuid.starts_with(&prefix))
            .collect();
        let leaving: BTreeSet<String> = ours.iter().map(|d| d.kname.clone()).collect();
        if let Some((name, holder)) = dm::first_busy(self, &ours, &leaving)? {
            return Err(LvmError::Busy {
                device: format!("/dev/mapper/{name}"),
                holder,
            });
        }
        self.vgchange_activate(pvs, vg, false)?;
        Ok(())
    }
}

/// Plans `pvs` and requires exactly one VG covering every device.
fn one_vg(pvs: &[PathBuf]) -> Result<VgPlan> {
    let mut plan = plan_devices(pvs)?;
    if plan.vgs.len() != 1 || !plan.unassigned.is_empty() {
        let mut parts: Vec<String> = plan
            .vgs
            .iter()
            .map(|v| format!("VG {} on {:?}", v.metadata.name, v.device_paths()))
            .collect();
        if plan.vgs.is_empty() && plan.unassigned.is_empty() {
            parts.push("no PVs".into());
        }
        parts.extend(plan.unassigned.iter().map(|p| {
            format!(
                "PV {} on {} without VG metadata",
                p.pv_uuid,
                p.device.display()
            )
        }));
        if plan.vgs.is_empty() {
            return Err(LvmError::NoMetadata(parts.join("; ")));
        }
        return Err(LvmError::NotOneVg {
            found: plan.vgs.len(),
            detail: parts.join("; "),
        });
    }
    plan.vgs
        .pop()
        .ok_or_else(|| LvmError::NoMetadata("no VG".into()))
}

/// [`Lvm::import_clone`] with the default lvm2 setup.
pub fn import_clone(pvs: &[PathBuf], volume: &str) -> Result<ImportedVg> {
    Lvm::default().import_clone(pvs, volume)
}

/// [`Lvm::deactivate`] with the default lvm2 setup.
pub fn deactivate(vg: &str, pvs: &[PathBuf]) -> Result<()> {
    Lvm::default().deactivate(vg, pvs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lvm_rules() {
        assert!(validate_vg_name("vg_gold_pg1").is_ok());
        assert!(validate_vg_name("a.b+c-d").is_ok());
        for bad in ["", ".", "..", "-x", "a b", "a/b", &"x".repeat(128)] {
            assert!(validate_vg_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            dm_path("vg-a", "r-b"),
            PathBuf::from("/dev/mapper/vg--a-r--b")
        );
    }
}
