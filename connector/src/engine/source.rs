//! Attach: from where the data comes from to a local device node — a node
//! given directly, a SCSI LUN waited for by WWID (the executor's verified
//! wait), or the appliance loop backend's clone file.

use std::path::PathBuf;

use super::error::{EngineError, ErrorKind};
use super::types::{DeviceSource, Multipath};
use executor::wait::MultipathPolicy;

impl From<Multipath> for MultipathPolicy {
    fn from(m: Multipath) -> Self {
        match m {
            Multipath::Auto => MultipathPolicy::Auto,
            Multipath::Require => MultipathPolicy::Require,
            Multipath::Never => MultipathPolicy::Never,
        }
    }
}

/// The device node (or image file) for `s`, canonical (`/dev/dm-N` for a
/// multipath map: the kernel name is what the record compares; the manifest
/// shows `/dev/mapper/<name>`).
pub fn resolve(s: &DeviceSource) -> Result<PathBuf, EngineError> {
    canonical(&find(s)?)
}

/// The canonical node of a device just found (what records compare).
pub fn canonical(found: &std::path::Path) -> Result<PathBuf, EngineError> {
    std::fs::canonicalize(found).map_err(|e| {
        EngineError::new(
            ErrorKind::NotFound,
            format!("device {} vanished: {e}", found.display()),
        )
    })
}

fn find(s: &DeviceSource) -> Result<PathBuf, EngineError> {
    match s {
        DeviceSource::Device { path } => std::fs::canonicalize(path).map_err(|e| {
            EngineError::new(
                ErrorKind::NotFound,
                format!("device {} not found: {e}", path.display()),
            )
            .with_hint("check the path; for a LUN presented by the appliance, wait for it by WWID")
        }),
        DeviceSource::Wwid {
            wwid,
            timeout,
            multipath,
        } => {
            if wwid.trim().is_empty() || wwid.contains('/') {
                return Err(EngineError::invalid(format!(
                    "invalid WWID {wwid:?}: expected naa.…, eui.… or t10.…"
                )));
            }
            crate::wwid::wait_for(wwid, *timeout, (*multipath).into()).map_err(|e| {
                EngineError::new(ErrorKind::Unavailable, format!("{e:#}")).with_hint(
                    "check that the LUN is presented to this host and the session is logged in",
                )
            })
        }
        DeviceSource::Iscsi { .. } | DeviceSource::Fc { .. } => Err(EngineError::internal(
            "a presentation is attached by the engine's journaled attach, not looked up",
        )),
        DeviceSource::LoopBacking { file, timeout } => {
            if !file.is_absolute() {
                return Err(EngineError::invalid(format!(
                    "loop backing file {} must be an absolute path",
                    file.display()
                )));
            }
            crate::wwid::wait_for(&file.to_string_lossy(), *timeout, MultipathPolicy::Never)
                .map_err(|e| {
                    EngineError::new(ErrorKind::Unavailable, format!("{e:#}"))
                        .with_hint("check that the appliance presented the clone (loop backend)")
                })
        }
    }
}
