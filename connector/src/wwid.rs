//! Finding the local device for an identity the appliance announced. A SCSI
//! WWID (`naa.6001405…`) goes through the executor's `wait-for-device`
//! (uevents where udevd runs, the identity verified from the device's VPD
//! pages, a stale device on a reused LUN number repaired once, the multipath
//! map when multipathd owns the WWID). The appliance's loop backend announces
//! the clone's backing file instead: that is looked up in /sys/block.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use executor::sysfs::Root;
use executor::wait::{MultipathPolicy, WaitSpec};

/// Bound on `udevadm settle` (its own `-t 30`, plus slack).
const UDEV_SETTLE: Duration = Duration::from_secs(35);

/// Waits up to `timeout` for the device with this identity: an absolute
/// path is a loop backend's backing file, anything else a SCSI WWID, taken
/// through a multipath map as `multipath` says (see [`MultipathPolicy`]).
pub fn wait_for(wwid: &str, timeout: Duration, multipath: MultipathPolicy) -> Result<PathBuf> {
    let as_path = Path::new(wwid.trim());
    if as_path.is_absolute() {
        return wait_for_loop(as_path, timeout);
    }
    wait_verified(&WaitSpec {
        wwid: wwid.trim().to_string(),
        serial: None,
        location: None,
        timeout,
        multipath,
    })
}

/// Waits for the device `spec` describes (a LUN just scanned at a known
/// place, with its serial when announced), verified from its VPD pages.
pub fn wait_verified(spec: &WaitSpec) -> Result<PathBuf> {
    let wwid = spec.wwid.as_str();
    let found = executor::wait::wait(&Root::host(), spec).with_context(|| {
        format!("waiting for the device with WWID {wwid} (is the LUN presented to this host and the session logged in?)")
    })?;
    tracing::info!(
        wwid,
        node = %found.node,
        paths = found.paths.len(),
        repaired = ?found.repaired,
        event_driven = found.event_driven,
        elapsed_ms = found.elapsed_ms,
        claimed = ?found.claimed,
        "device verified"
    );
    if found.multipath.is_some() && Path::new("/run/udev/control").exists() {
        // kpartx makes the map's partition maps from udev's handling of the
        // map's own event; let udev finish it before the partitions are
        // looked up (else they would be mapped with offset loops instead).
        if let Err(e) = crate::tools::run("udevadm", &["settle", "-t", "30"], UDEV_SETTLE) {
            tracing::warn!(error = %e, "udevadm settle after the multipath map");
        }
    }
    Ok(PathBuf::from(found.node))
}

fn wait_for_loop(file: &Path, timeout: Duration) -> Result<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        // The appliance's loop backend attaches the whole file: offset 0,
        // no size limit.
        if let Some(d) = crate::partmap::find_loop(file, 0, 0) {
            return Ok(d);
        }
        if Instant::now() >= deadline {
            bail!(
                "no loop device backed by {} appeared within {:.1} s; is the clone presented (loop backend) on this machine?",
                file.display(),
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
