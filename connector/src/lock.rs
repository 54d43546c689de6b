//! Per-volume exclusive locks (flock on a file), so two goldmount processes
//! never work on the same volume at once while different volumes proceed in
//! parallel. A lock held by a crashed process disappears with it, which is
//! how a stale `Mounting` record is recognised.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct VolumeLock {
    _file: File,
    path: PathBuf,
}

impl VolumeLock {
    /// Takes the lock for `volume`, failing at once if another process holds it.
    pub fn try_acquire(lock_dir: &Path, volume: &str) -> anyhow::Result<Option<Self>> {
        std::fs::create_dir_all(lock_dir)?;
        let path = lock_dir.join(format!("{volume}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { _file: file, path })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
