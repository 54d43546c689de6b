//! Planning from on-disk metadata alone: which VGs the given clone devices
//! carry, which devices are whose PVs, and which PVs are missing — decided
//! before any lvm2 command runs, so a partial VG is reported, never activated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{LvmError, Result};
use crate::metadata::{read_pv, PvInfo, VgMetadata};

/// One device of a VG in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPv {
    /// The device path given by the caller.
    pub device: PathBuf,
    /// Its PV UUID.
    pub pv_uuid: String,
}

/// A volume group found on the given devices.
#[derive(Debug, Clone, Serialize)]
pub struct VgPlan {
    /// Newest metadata across the VG's PVs.
    pub metadata: VgMetadata,
    /// The given devices that are PVs of this VG.
    pub devices: Vec<PlannedPv>,
    /// PV UUIDs the metadata lists that no given device carries.
    pub missing: Vec<String>,
}

impl VgPlan {
    /// Device paths of this VG, in the order given.
    pub fn device_paths(&self) -> Vec<PathBuf> {
        self.devices.iter().map(|d| d.device.clone()).collect()
    }

    /// Errors with the missing PV UUIDs when the VG is incomplete.
    pub fn require_complete(&self) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        Err(LvmError::MissingPvs {
            vg: self.metadata.name.clone(),
            vg_uuid: self.metadata.id.clone(),
            missing: self.missing.clone(),
        })
    }
}

/// The whole plan for a set of devices.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// VGs, ordered by name.
    pub vgs: Vec<VgPlan>,
    /// PVs whose VG could not be identified (no metadata on them and no other
    /// given device's metadata lists them): orphans or PVs of an absent VG.
    pub unassigned: Vec<PlannedPv>,
}

/// Reads the PVs of `devices` (opened read-only) and groups them into VGs.
pub fn plan_devices(devices: &[PathBuf]) -> Result<Plan> {
    let mut pvs = Vec::new();
    for d in devices {
        let src = fsdetect::FileSource::open(d).map_err(|source| LvmError::Read {
            what: format!("opening {}", d.display()),
            source,
        })?;
        pvs.push((d.clone(), read_pv(&src)?));
    }
    plan_pvs(&pvs)
}

/// Groups already-read PVs into VGs (pure; see [`plan_devices`]).
pub fn plan_pvs(pvs: &[(PathBuf, PvInfo)]) -> Result<Plan> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (dev, pv) in pvs {
        if let Some(first) = seen.insert(pv.uuid(), dev) {
            return Err(LvmError::DuplicatePv {
                pv_uuid: pv.uuid().to_string(),
                first: first.to_path_buf(),
                second: dev.clone(),
            });
        }
    }
    // Newest metadata per VG UUID.
    let mut newest: BTreeMap<&str, &VgMetadata> = BTreeMap::new();
    for (_, pv) in pvs {
        if let Some(m) = &pv.metadata {
            let e = newest.entry(m.id.as_str()).or_insert(m);
            if m.seqno > e.seqno {
                *e = m;
            }
        }
    }
    let mut plan = Plan::default();
    let mut assigned = vec![false; pvs.len()];
    for m in newest.values() {
        let mut devices = Vec::new();
        let mut missing = Vec::new();
        for p in &m.pvs {
            match pvs.iter().position(|(_, pv)| pv.uuid() == p.id) {
                Some(i) => {
                    assigned[i] = true;
                    devices.push(PlannedPv {
                        device: pvs[i].0.clone(),
                        pv_uuid: p.id.clone(),
                    });
                }
                None => missing.push(p.id.clone()),
            }
        }
        plan.vgs.push(VgPlan {
            metadata: (*m).clone(),
            devices,
            missing,
        });
    }
    for (i, (dev, pv)) in pvs.iter().enumerate() {
        if !assigned[i] {
            plan.unassigned.push(PlannedPv {
                device: dev.clone(),
                pv_uuid: pv.uuid().to_string(),
            });
        }
    }
    plan.vgs
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(plan)
}
