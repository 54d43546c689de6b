//! The node plugin's records against the live mounts.
//!
//! The engine's records say which CSI consumers (the staging bind
//! [`STAGE_ID`](crate::node::STAGE_ID), the target binds `csi-publish-…`) a volume has; the kernel
//! says whether their bind mounts still exist. They part ways when
//! something else unmounts a CSI path while the plugin is down — kubelet
//! cleaning up an orphaned pod unmounts target paths itself, and may never
//! call NodeUnstageVolume for a volume whose staging path it also removed.
//!
//! At start the plugin drops every CSI publication whose bind is gone, and
//! takes down a volume that is left with no live CSI consumer at all
//! (nothing can reach its tree any more). A volume with a live bind stays
//! exactly as it is: a pod may be using it. Volumes with any non-CSI
//! consumer (Docker, the control API, a person) are never touched.

use std::path::Path;

use connector::engine::{Engine, Publication, VolumeName, VolumeStatus};
use mountinfo::MountEntry;

/// The prefix of every engine consumer id the CSI driver makes.
pub const CSI_CONSUMER_PREFIX: &str = "csi-";

/// What reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// `volume at target` of each publication dropped because its bind was gone.
    pub dropped: Vec<String>,
    /// Volumes taken down because no CSI consumer of theirs was live.
    pub torn_down: Vec<String>,
    /// Volumes left as they are, and why (a failure; retried at next start).
    pub left: Vec<(String, String)>,
}

/// True when `p`'s top bind is mounted at its target now.
pub fn is_live(p: &Publication, mounts: &[MountEntry]) -> bool {
    let Some(top) = p.mount_ids.first() else {
        return false;
    };
    mounts
        .iter()
        .any(|m| m.id == *top && Path::new(&m.mount_point) == p.target)
}

fn csi_only(st: &VolumeStatus) -> bool {
    !st.publications.is_empty()
        && st
            .publications
            .iter()
            .all(|p| p.id.starts_with(CSI_CONSUMER_PREFIX))
}

/// Reconciles every CSI volume on this node; see the module doc.
pub fn reconcile(engine: &Engine) -> Reconciled {
    let mut out = Reconciled::default();
    let volumes = match engine.list() {
        Ok(v) => v,
        Err(e) => {
            out.left.push(("*".into(), e.message));
            return out;
        }
    };
    let mounts = match mountinfo::current() {
        Ok(m) => m,
        Err(e) => {
            out.left
                .push(("*".into(), format!("reading /proc/self/mountinfo: {e}")));
            return out;
        }
    };
    for st in volumes.into_iter().filter(csi_only) {
        let Ok(volume) = VolumeName::parse(&st.volume) else {
            continue;
        };
        let mut live = 0;
        let mut failed = None;
        for p in &st.publications {
            if is_live(p, &mounts) {
                live += 1;
                continue;
            }
            match engine.unpublish(&volume, &p.id, false) {
                Ok(_) => {
                    tracing::warn!(volume = %volume, target = %p.target.display(), "CSI publication whose bind was gone dropped");
                    out.dropped
                        .push(format!("{volume} at {}", p.target.display()));
                }
                Err(e) => failed = Some(e.message),
            }
        }
        if let Some(why) = failed {
            out.left.push((volume.to_string(), why));
            continue;
        }
        if live > 0 {
            continue;
        }
        match engine.unmount(&volume, false) {
            Ok(_) => {
                tracing::warn!(volume = %volume, consumers = ?st.publications.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), "CSI volume with no live consumer taken down");
                out.torn_down.push(volume.to_string());
            }
            Err(e) => out.left.push((volume.to_string(), e.message)),
        }
    }
    out
}
