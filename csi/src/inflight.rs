//! One operation per volume at a time inside this driver: the CSI spec
//! wants a second call on a volume whose first is still running to be
//! answered ABORTED at once, and the node service's idempotency checks
//! (look, then act) must not interleave with another call on that volume.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tonic::Status;

/// The volumes with a call in progress.
#[derive(Debug, Default, Clone)]
pub struct Inflight {
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Held while a call works on a volume; dropping it frees the volume.
#[derive(Debug)]
pub struct InflightGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    volume: String,
}

impl Inflight {
    /// Marks `volume` busy, or ABORTED when another call holds it.
    pub fn begin(&self, volume: &str) -> Result<InflightGuard, Status> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(volume.to_string()) {
            return Err(Status::aborted(format!(
                "an operation on volume {volume} is already in progress: retry when it finishes"
            )));
        }
        Ok(InflightGuard {
            busy: self.busy.clone(),
            volume: volume.to_string(),
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.volume);
    }
}
