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
        self.devices_for(&clone.file)
    }
}
