//! The LVM stage: each complete volume group found on the clone's PVs is
//! imported clone-safely (renamed when its name or UUIDs collide, activated
//! on exactly its devices), and its logical volumes become filesystems to
//! mount. A VG with a missing PV, unsupported LVs or corrupt metadata is
//! reported and never half-activated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::journal::Journal;
use super::types::MountOptions;
use crate::discover::{self, Candidate, Member};
use crate::manifest::Skipped;
use crate::state::{Action, StateStore};

/// New filesystems (LV candidate, its dm node), skipped items, notes.
pub type LvmOutcome = (Vec<(Candidate, PathBuf)>, Vec<Skipped>, Vec<String>);

/// True when the kernel has device-mapper (LVM activation needs it).
fn device_mapper_available() -> bool {
    Path::new("/dev/mapper/control").exists()
}

/// VG names other volumes' clones hold (so two clones never get the same one).
fn reserved_vg_names(store: &StateStore, volume: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for rec in store.list()? {
        if rec.name == volume {
            continue;
        }
        for s in rec.steps {
            if let Action::ImportVg { vg, .. } = s.action {
                if !vg.is_empty() {
                    names.push(vg);
                }
            }
        }
    }
    Ok(names)
}

/// Imports the VGs on `pvs` (journaled) and probes their LVs.
pub fn import_vgs(
    store: &StateStore,
    volume: &str,
    opts: &MountOptions,
    j: &mut Journal<'_>,
    pvs: &[(&Member, PathBuf)],
) -> Result<LvmOutcome> {
    let mut out: Vec<(Candidate, PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let skip_all = |skipped: &mut Vec<Skipped>, reason: String| {
        for (m, _) in pvs {
            skipped.push(Skipped {
                source: m.describe(),
                what: "LVM2_member".into(),
                reason: reason.clone(),
            });
        }
    };
    if opts.read_only {
        skip_all(
            &mut skipped,
            "read-only mounts do not import volume groups (vgimportclone rewrites the clone's LVM metadata)".into(),
        );
        return Ok((out, skipped, notes));
    }
    if !device_mapper_available() {
        skip_all(
            &mut skipped,
            "device-mapper is not available in this kernel: LVM volumes cannot be activated".into(),
        );
        return Ok((out, skipped, notes));
    }
    tracing::debug!(
        pvs = pvs.len(),
        "LVM stage: importing the clone's volume groups"
    );
    let ours = store.clone_devices().unwrap_or_default();
    match lvm::check_autoactivation_guard(&ours) {
        Ok(g) if g.installed => {}
        Ok(g) => notes.push(format!(
            "the LVM autoactivation guard is not installed ({}): the host may autoactivate clones when their LUNs appear; install the guard (LVM's devices file listing the host's own PVs)",
            g.problems.join("; ")
        )),
        Err(e) => notes.push(format!("cannot check the LVM autoactivation guard: {e}")),
    }
    let devs: Vec<PathBuf> = pvs.iter().map(|(_, n)| n.clone()).collect();
    let plan = match lvm::plan_devices(&devs) {
        Ok(p) => p,
        Err(e) => {
            skip_all(
                &mut skipped,
                format!("LVM metadata cannot be used, nothing was activated: {e}"),
            );
            return Ok((out, skipped, notes));
        }
    };
    for pv in &plan.unassigned {
        skipped.push(Skipped {
            source: pv.device.display().to_string(),
            what: "LVM2_member".into(),
            reason: format!("PV {} has no volume group metadata", pv.pv_uuid),
        });
    }
    let reserved = reserved_vg_names(store, volume)?;
    for vg in &plan.vgs {
        let original = vg.metadata.name.clone();
        if let Err(e) = vg.require_complete() {
            // Say so when the host's own LVM already activated (part of) it:
            // goldmount leaves that alone, an operator has to know.
            let by_host = lvm::dm::active_on(&vg.device_paths());
            let host_note = if by_host.is_empty() {
                String::new()
            } else {
                format!(
                    "; the host's LVM has already activated {} on these devices (autoactivation: install the LVM autoactivation guard; goldmount undoes it when the whole VG is mounted)",
                    by_host.join(", ")
                )
            };
            skipped.push(Skipped {
                source: format!("volume group {original}"),
                what: "LVM2_member".into(),
                reason: format!("not activated: {e}{host_note}"),
            });
            continue;
        }
        let devices = vg.device_paths();
        let import_opts = lvm::ImportOptions {
            volume: volume.to_string(),
            reserved_names: reserved.clone(),
            ..Default::default()
        };
        let action = Action::ImportVg {
            vg: String::new(),
            original: original.clone(),
            devices: devices.clone(),
        };
        let imported = j.step(action, |_| {
            let r = lvm::Lvm::default()
                .import_clone_with(&devices, &import_opts)
                .with_context(|| format!("importing volume group {original} of the clone"))?;
            Ok((
                Action::ImportVg {
                    vg: r.name.clone(),
                    original: original.clone(),
                    devices: devices.clone(),
                },
                r,
            ))
        })?;
        tracing::info!(
            vg = %imported.name,
            original = %original,
            lvs = imported.lvs.len(),
            renamed = imported.renamed,
            "imported volume group"
        );
        if !imported.undone_activation.is_empty() {
            notes.push(format!(
                "undid an accidental activation of the clone by the host's LVM: {}",
                imported.undone_activation.join(", ")
            ));
        }
        if imported.renamed {
            notes.push(format!(
                "volume group {original} imported as {} (vgimportclone)",
                imported.name
            ));
        }
        for lv in &imported.lvs {
            let lvref = (original.clone(), lv.name.clone());
            // Whatever lvm2 activated is probed and mounted (linear,
            // striped, thin, raid, mirror, cache…); pools hold no
            // filesystem of their own, and an LV lvm2 left inactive is
            // reported with its words.
            let why_skipped = match &lv.holds_no_data {
                Some(why) => Some(why.clone()),
                None if !lv.active => Some(imported.why_inactive(lv)),
                None => None,
            };
            if let Some(reason) = why_skipped {
                skipped.push(Skipped {
                    source: format!("logical volume {original}/{}", lv.name),
                    what: "lv".into(),
                    reason,
                });
                continue;
            }
            let probed = fsdetect::FileSource::open(&lv.dm_path).and_then(|src| {
                let size = fsdetect::BlockSource::size(&src);
                fsdetect::probe_region(&src, 0, size).map(|r| (r.content, size))
            });
            match probed {
                Ok((content, size)) => match discover::classify_volume(&content, size, lvref) {
                    // The gold's VG UUID (vgimportclone changed the
                    // clone's) and the LV UUID: what a `by-id/dm-uuid-LVM-`
                    // fstab line names.
                    Ok(c) => out.push((
                        c.with_lvm_uuids(&imported.original_uuid, &lv.uuid),
                        lv.dm_path.clone(),
                    )),
                    Err(sk) => skipped.push(sk),
                },
                Err(e) => skipped.push(Skipped {
                    source: format!("logical volume {original}/{}", lv.name),
                    what: "lv".into(),
                    reason: format!("cannot probe {}: {e}", lv.dm_path.display()),
                }),
            }
        }
    }
    Ok((out, skipped, notes))
}
