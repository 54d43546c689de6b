//! Is a staged volume's tree still what the engine's record says? A
//! repeated NodeStageVolume must not answer OK on the strength of a record
//! alone (the CSI spec's idempotency is about the state, not the call), and
//! NodeGetVolumeStats reports the same findings as its volume condition.
//!
//! Three things are checked against the kernel:
//! - every filesystem of the tree is still mounted where the engine put it;
//! - a read-write tree has no filesystem that is read-only now (ext4's
//!   `errors=remount-ro`, XFS shutting down after an I/O error) — unless
//!   the gold's fstab mounted it read-only;
//! - each device still shows the data it was staged from: the LUN's WWID is
//!   the presented one, a loop device's backing file is the clone's (a
//!   device name reused by another LUN after the first went away is caught).

use connector::engine::claim::{claim_for, normalise_wwid, DataId};
use connector::engine::{DeviceSource, VolumeStatus};
use mountinfo::MountEntry;

/// The identity the data of `source` must show.
fn expected_id(source: &DeviceSource) -> Option<DataId> {
    match source {
        DeviceSource::Iscsi { presentation, .. } => Some(DataId::Lun {
            wwid: normalise_wwid(&presentation.wwn),
        }),
        DeviceSource::Fc { presentation, .. } => Some(DataId::Lun {
            wwid: normalise_wwid(&presentation.wwn),
        }),
        DeviceSource::Wwid { wwid, .. } => Some(DataId::Lun {
            wwid: normalise_wwid(wwid),
        }),
        DeviceSource::LoopBacking { file, .. } => claim_for(file, true).ok().map(|c| c.id),
        DeviceSource::Device { path } => claim_for(path, true).ok().map(|c| c.id),
    }
}

fn carried_read_only(options: &str) -> bool {
    options.split(',').any(|o| o == "ro")
}

/// What is wrong with `st`'s tree now; empty when it is whole.
pub fn tree_problems(st: &VolumeStatus, mounts: &[MountEntry]) -> Vec<String> {
    let mut problems = vec![];
    if let Some(manifest) = &st.manifest {
        for m in &manifest.mounts {
            let here = mounts.iter().any(|e| e.mount_point == m.mount_path);
            if !here {
                problems.push(format!(
                    "{} ({}) is no longer mounted at {}",
                    m.original_mountpoint.as_deref().unwrap_or("a filesystem"),
                    m.source.display(),
                    m.mount_path.display()
                ));
                continue;
            }
            if st.read_only || carried_read_only(&m.options) {
                continue;
            }
            if let Ok(v) = rustix::fs::statvfs(&m.mount_path) {
                if v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
                    problems.push(format!(
                        "{} at {} is read-only now, though staged read-write: the kernel remounted it after an error (see dmesg)",
                        m.original_mountpoint.as_deref().unwrap_or("a filesystem"),
                        m.mount_path.display()
                    ));
                }
            }
        }
    }
    if st.sources.len() == st.devices.len() {
        for (source, device) in st.sources.iter().zip(&st.devices) {
            let Some(want) = expected_id(source) else {
                continue;
            };
            match claim_for(device, true) {
                Ok(c) if c.id == want => {}
                Ok(c) => problems.push(format!(
                    "{} now shows other data ({:?}) than the volume was staged from ({want:?})",
                    device.display(),
                    c.id
                )),
                Err(e) => problems.push(format!("{}: {}", device.display(), e.message)),
            }
        }
    }
    problems
}
