//! The `loop` backend: attaches clone images to loop devices on this machine,
//! for hosts without iSCSI (the development machine's own kernel, the demo).
//! The backing file stands in for the WWN: the connector waits for the loop
//! device whose `/sys/block/loopN/loop/backing_file` is the clone.

use super::{PresentRequest, Presenter};
use crate::cmd;
use crate::error::Error;
use crate::model::{Clone, Host, Presented};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOSETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Presents clones as local loop devices via `losetup` (util-linux).
#[derive(Debug, Clone)]
pub struct LoopPresenter {
    sysfs_block: PathBuf,
}

impl Default for LoopPresenter {
    fn default() -> Self {
        LoopPresenter {
            sysfs_block: PathBuf::from("/sys/block"),
        }
    }
}

impl LoopPresenter {
    /// A presenter using the real `/sys/block`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backing file of loop device `dev` (`/dev/loopN`), if attached.
    pub fn backing_file(&self, dev: &str) -> Option<PathBuf> {
        let name = Path::new(dev).file_name()?;
        let p = self
            .sysfs_block
            .join(name)
            .join("loop")
            .join("backing_file");
        let s = std::fs::read_to_string(p).ok()?;
        Some(PathBuf::from(s.trim_end_matches('\n')))
    }

    /// The loop devices currently backed by `file`.
    pub fn devices_for(&self, file: &Path) -> Vec<String> {
        let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let Ok(entries) = std::fs::read_dir(&self.sysfs_block) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("loop"))
            .map(|n| format!("/dev/{n}"))
            .filter(|d| self.backing_file(d).as_deref() == Some(want.as_path()))
            .collect();
        out.sort();
        out
    }
}

impl Presenter for LoopPresenter {
    fn transport(&self) -> &'static str {
        "loop"
    }

    fn prepare(&self, _hosts: &[Host]) -> Result<(), Error> {
        Ok(())
    }

    fn present(&self, req: &PresentRequest<'_>) -> Result<Presented, Error> {
        let file = std::fs::canonicalize(&req.clone.file)
            .map_err(|e| Error::io(format!("resolving {}", req.clone.file.display()), e))?;
        let backing_file = file.display().to_string();
        // Keep the device we had if it still points at the clone.
        if let Some(Presented::Loop { device, .. }) = req.previous {
            if self.backing_file(device).as_deref() == Some(file.as_path()) {
                return Ok(Presented::Loop {
                    device: device.clone(),
                    backing_file,
                });
            }
        }
        if let Some(device) = self.devices_for(&file).into_iter().next() {
            return Ok(Presented::Loop {
                device,
                backing_file,
            });
        }
        let out = cmd::run(
            "losetup",
            &["--find", "--show", &backing_file],
            "util-linux",
            LOSETUP_TIMEOUT,
        )?;
        let device = out.trim().to_string();
        if !device.starts_with("/dev/loop") {
            return Err(Error::Backend(format!(
                "losetup --find --show {backing_file}: expected a /dev/loopN path, found {out:?}"
            )));
        }
        tracing::info!(clone = %req.clone.name, %device, "attached loop device");
        Ok(Presented::Loop {
            device,
            backing_file,
        })
    }

    fn unpresent(&self, clone: &Clone, presented: &Presented) -> Result<(), Error> {
        let file = std::fs::canonicalize(&clone.file).unwrap_or_else(|_| clone.file.clone());
        let mut devices = self.devices_for(&file);
        if let Presented::Loop { device, .. } = presented {
            if self.backing_file(device).as_deref() == Some(file.as_path())
                && !devices.contains(device)
            {
                devices.push(device.clone());
            }
        }
        for device in devices {
            // A device that is open (mounted) is only marked for detach
            // ("autoclear"); it keeps the image until it is closed, which
            // `still_attached` reports.
            cmd::run(
                "losetup",
                &["--detach", &device],
                "util-linux",
                LOSETUP_TIMEOUT,
            )?;
            tracing::info!(clone = %clone.name, %device, "detached loop device");
        }
        Ok(())
    }

    fn still_attached(&self, clone: &Clone) -> Vec<String> {
        // A detach the kernel deferred completes when the last opener closes.
        // Right after an attach that opener is often udev's worker probing the
        // new device for a few milliseconds; give such a passing probe a grace
        // period, but answer at once when a device is mounted or stacked on
        // (that user will not go away by itself).
        let deadline = std::time::Instant::now() + DEFERRED_DETACH_GRACE;
        loop {
            let devices = self.devices_for(&clone.file);
            if devices.is_empty()
                || std::time::Instant::now() >= deadline
                || devices.iter().any(|d| self.has_lasting_user(d))
            {
                return devices;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How long a deferred loop detach may take before the device counts as held.
const DEFERRED_DETACH_GRACE: Duration = Duration::from_secs(5);

impl LoopPresenter {
    /// Whether `dev` is mounted on this machine or has a device stacked on it
    /// (dm, md): users that keep it open until someone releases them.
    fn has_lasting_user(&self, dev: &str) -> bool {
        let Some(name) = Path::new(dev).file_name() else {
            return false;
        };
        let sys = self.sysfs_block.join(name);
        let stacked = std::fs::read_dir(sys.join("holders"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if stacked {
            return true;
        }
        let Ok(devno) = std::fs::read_to_string(sys.join("dev")) else {
            return false;
        };
        let devno = devno.trim();
        // Field 3 of mountinfo is the mounted device's major:minor.
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().any(|l| l.split(' ').nth(2) == Some(devno)))
            .unwrap_or(false)
    }
}
