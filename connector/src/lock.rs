//! Per-volume exclusive locks (flock on a file), so two goldmount processes
//! never work on the same volume at once while different volumes proceed in
//! parallel. A lock held by a crashed process disappears with it, which is
//! how a stale `Mounting` record is recognised. The lock file of a volume
//! that no longer exists is removed by its last holder, so lock files do
//! not pile up one per volume name ever used.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct VolumeLock {
    file: File,
    path: PathBuf,
}

impl VolumeLock {
    /// Takes the lock for `volume`, failing at once if another process holds it.
    pub fn try_acquire(lock_dir: &Path, volume: &str) -> anyhow::Result<Option<Self>> {
        std::fs::create_dir_all(lock_dir)?;
        let path = lock_dir.join(format!("{volume}.lock"));
        // The holder before us may have removed the file after we opened
        // it: then the lock we got is on a dead inode; open again.
        for _ in 0..100 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(anyhow::anyhow!("locking {}: {e}", path.display())),
            }
            let held = file.metadata()?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(Self { file, path }))
                }
                _ => continue,
            }
        }
        Err(anyhow::anyhow!(
            "locking {}: the lock file keeps being replaced",
            path.display()
        ))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock and removes its file (the volume is gone). Removed
    /// while still held, so a waiter sees a dead inode and opens again.
    pub fn release_and_remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lock_files_go_with_their_volume_and_a_second_taker_waits() {
        let d = tempfile::tempdir().unwrap();
        let l = VolumeLock::try_acquire(d.path(), "v1").unwrap().unwrap();
        assert!(VolumeLock::try_acquire(d.path(), "v1").unwrap().is_none());
        l.release_and_remove();
        assert!(!d.path().join("v1.lock").exists());
        let again = VolumeLock::try_acquire(d.path(), "v1").unwrap().unwrap();
        drop(again);
        assert!(d.path().join("v1.lock").exists());
    }
}
