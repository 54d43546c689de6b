//! The journal of one volume: every step is recorded in the state store
//! before it is taken and marked done after, and every step has a typed undo
//! that first checks the object is still the one goldmount made (loop: owner
//! tag and backing inode; mount: the kernel's mount id; directory: resolved
//! inside its anchor), treats "already gone" as done, and touches nothing
//! else.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::mounter;
use crate::state::{Action, LoopId, StateStore, Step, VolumeRecord};
use crate::zfs;

/// Every loop device goldmount attaches carries a tag starting with this
/// (in the kernel's `lo_file_name`), followed by the run's nonce.
pub const LOOP_TAG_PREFIX: &str = "goldmount:";

/// Test-only hook: `GOLDMOUNT_TEST_KILL_AT=N` makes the process SIGKILL
/// itself at its N-th journal boundary (after a step is recorded pending;
/// after it is taken, before it is recorded done; after a step is undone,
/// before and after that is recorded), so a host test can prove that
/// recovery cleans up after a crash at every point.
fn boundary() {
    static KILL_AT: OnceLock<Option<u64>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let at = KILL_AT.get_or_init(|| {
        std::env::var("GOLDMOUNT_TEST_KILL_AT")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(at) = at {
        if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

/// A fresh random nonce for one run's loop tags.
pub fn nonce() -> String {
    let mut b = [0u8; 8];
    if let Ok(f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = (&f).read_exact(&mut b);
    }
    if b == [0u8; 8] {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The state of one volume while it is being changed, saved after every step.
pub struct Journal<'a> {
    store: &'a StateStore,
    /// The record as it is now.
    pub rec: VolumeRecord,
    /// Loop devices this run attached, held open until something else holds
    /// them (with autoclear, a crash frees them).
    holders: HashMap<PathBuf, OwnedFd>,
    nonce: String,
    loops: u32,
    /// How long an undone mount's device may stay held by the kernel
    /// (write-back still running) before the undo fails, naming it.
    pub release_deadline: std::time::Duration,
}

/// What undoing a step did, for the report.
#[derive(Default)]
pub struct UndoLog {
    /// Steps undone, in order.
    pub undone: Vec<String>,
    /// Busy mounts detached lazily.
    pub forced: Vec<String>,
}

impl<'a> Journal<'a> {
    /// A journal over `rec` (already in the store or about to be saved).
    pub fn new(store: &'a StateStore, rec: VolumeRecord) -> Self {
        Self {
            store,
            rec,
            holders: HashMap::new(),
            nonce: nonce(),
            loops: 0,
            release_deadline: std::time::Duration::from_secs(30),
        }
    }

    /// The state store the journal writes to.
    pub fn store(&self) -> &'a StateStore {
        self.store
    }

    /// Writes the record.
    pub fn save(&self) -> Result<()> {
        self.store
            .put(&self.rec)
            .context("recording a step in the state store")
    }

    /// Records `action` as about to happen, runs `f`, records completion
    /// (with the action as `f` returns it, e.g. the loop device now known).
    pub fn step<T>(
        &mut self,
        action: Action,
        f: impl FnOnce(&mut Self) -> Result<(Action, T)>,
    ) -> Result<T> {
        self.begin(action)?;
        let (done_action, v) = f(self)?;
        self.finish(Some(done_action))?;
        Ok(v)
    }

    /// Records `action` as about to happen (the first half of [`step`](Self::step)).
    pub fn begin(&mut self, action: Action) -> Result<()> {
        self.rec.steps.push(Step {
            action,
            done: false,
        });
        self.save()?;
        boundary();
        Ok(())
    }

    /// Records the newest step as done, with its final form if given.
    pub fn finish(&mut self, done_action: Option<Action>) -> Result<()> {
        boundary();
        if let Some(last) = self.rec.steps.last_mut() {
            if let Some(a) = done_action {
                last.action = a;
            }
            last.done = true;
        }
        self.save()
    }

    /// Drops the newest step from the record without undoing it (it turned
    /// out to change nothing).
    pub fn forget_last(&mut self) -> Result<()> {
        self.rec.steps.pop();
        self.save()
    }

    /// Attaches a tagged, autoclearing loop device over a range of
    /// `backing`, journaled; the journal holds it open until the end of the
    /// run.
    pub fn attach_loop(
        &mut self,
        backing: &Path,
        offset: u64,
        size: u64,
        read_only: bool,
    ) -> Result<PathBuf> {
        self.loops += 1;
        let tag = format!("{LOOP_TAG_PREFIX}{}:{}", self.nonce, self.loops);
        let pending = Action::AttachLoop {
            backing: backing.to_path_buf(),
            offset,
            size,
            read_only,
            tag: tag.clone(),
            device: None,
            identity: None,
        };
        self.step(pending, |j| {
            let spec = hostfs::loopdev::LoopSpec {
                backing,
                offset,
                size_limit: size,
                read_only,
                tag: &tag,
            };
            let att = hostfs::loopdev::attach(&spec).map_err(|e| {
                let hint = if !read_only && is_read_only_error(&e.to_string()) {
                    " (the device or image is read-only: mount the volume read-only)"
                } else {
                    ""
                };
                anyhow::anyhow!(
                    "attaching a loop device over {}: {e}{hint}",
                    backing.display()
                )
            })?;
            let (device, id, fd) = att.into_parts();
            j.holders.insert(device.clone(), fd);
            let identity = LoopId {
                backing_dev: id.backing_dev,
                backing_ino: id.backing_ino,
                offset: id.offset,
                size_limit: id.size_limit,
                tag: id.tag.clone(),
            };
            Ok((
                Action::AttachLoop {
                    backing: backing.to_path_buf(),
                    offset,
                    size,
                    read_only,
                    tag: tag.clone(),
                    device: Some(device.clone()),
                    identity: Some(identity),
                },
                device,
            ))
        })
    }

    /// Undoes the newest step and drops it from the record.
    pub fn undo_last(&mut self, lazy: bool, log: &mut UndoLog) -> Result<()> {
        let Some(step) = self.rec.steps.last().cloned() else {
            return Ok(());
        };
        match &step.action {
            Action::Mount {
                source,
                target,
                source_devno,
                mnt_id,
                mnt_unique,
                ..
            } => {
                let detached_lazily = undo_mount(
                    source,
                    target,
                    source_devno,
                    *mnt_id,
                    *mnt_unique,
                    lazy,
                    log,
                )?;
                // Out of the mount tree is not released: a hung umount has
                // already taken the mount out while the superblock still
                // waits for write-back. The step stays until the device is
                // free. (A lazily detached busy mount is released by its
                // users later: reported as forced.)
                if detached_lazily {
                    // Detached, but its users still write through it: the
                    // record (and with it the claim on the clone) stays until
                    // they let go, or a second writer could mount the clone.
                    let brief = self.release_deadline.min(std::time::Duration::from_secs(2));
                    if super::teardown::wait_released(source, source_devno, brief).is_err() {
                        let h = mounter::holders(target);
                        anyhow::bail!(crate::engine::error::EngineError::conflict(format!(
                            "{} was detached lazily but is still in use{}; the volume's record and its claim on the clone stay until it is released",
                            target.display(),
                            if h.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", h.join("; "))
                            }
                        ))
                        .with_hint("stop what uses it, then unmount the volume again to finish"));
                    }
                } else {
                    super::teardown::wait_released(source, source_devno, self.release_deadline)
                        .map_err(|e| {
                            anyhow::Error::new(crate::engine::error::EngineError::new(
                                crate::engine::error::ErrorKind::Unavailable,
                                format!("{}: {e}", target.display()),
                            )
                            .with_hint(
                                "the volume's record is kept; when the storage is back (or the paths are removed) unmount it again",
                            ))
                        })?;
                }
            }
            Action::MakeDir { root, path } => undo_dir(root, path, log),
            Action::ImportVg { devices, .. } => {
                // The VG's current name comes from the devices themselves (a
                // crash may have happened between vgimportclone and recording it).
                if devices.iter().all(|d| d.exists()) {
                    if let Ok(plan) = lvm::plan_devices(devices) {
                        if let [vg] = plan.vgs.as_slice() {
                            let name = vg.metadata.name.clone();
                            lvm::deactivate(&name, devices)
                                .with_context(|| format!("deactivating volume group {name}"))?;
                            log.undone.push(format!("deactivated volume group {name}"));
                        }
                    }
                }
            }
            Action::ImportPool {
                name,
                guid,
                devices,
            } => {
                // Only the pool we imported: the recorded GUID (the one it
                // had after import and reguid). A pending step may have
                // imported or reguided without recording the result (a
                // crash in between): then a pool built from exactly this
                // volume's own (claimed) devices is ours too.
                let unrecorded = (!step.done).then_some(devices.as_slice());
                match zfs::export_if_ours(name, &[*guid], unrecorded, lazy)
                    .with_context(|| format!("exporting ZFS pool {name}"))?
                {
                    zfs::ExportOutcome::NotImported => {}
                    zfs::ExportOutcome::NotOurs { found_guid } => tracing::info!(
                        pool = %name,
                        recorded_guid = guid,
                        found_guid,
                        "the pool of that name is not the one this volume imported; left alone"
                    ),
                    zfs::ExportOutcome::Exported(r) => {
                        log.undone.push(format!("exported ZFS pool {name}"));
                        log.forced.extend(r.forced);
                    }
                }
            }
            Action::IscsiSession {
                target_iqn,
                portal,
                opened,
            } => super::attach::undo_session(
                self.store,
                &self.rec.name,
                target_iqn,
                portal,
                *opened,
                log,
            )?,
            Action::ScanLun { wwid, owned, .. } => {
                super::attach::undo_lun(self.store, &self.rec.name, wwid, *owned, log)?
            }
            Action::AttachLoop {
                tag,
                device,
                identity,
                ..
            } => {
                if let Some(d) = device {
                    // Our own hold goes first: with autoclear the kernel frees
                    // the device when its last user closes it.
                    self.holders.remove(d);
                }
                undo_loop(tag, device.as_deref(), identity.as_ref(), log)?;
            }
        }
        // Undone, not yet recorded: the next run must find it gone and go on.
        boundary();
        self.rec.steps.pop();
        self.save()?;
        boundary();
        Ok(())
    }

    /// Undoes every step, newest first.
    pub fn undo_all(&mut self, lazy: bool, log: &mut UndoLog) -> Result<()> {
        while !self.rec.steps.is_empty() {
            self.undo_last(lazy, log)?;
        }
        Ok(())
    }
}

fn is_read_only_error(msg: &str) -> bool {
    msg.contains("EROFS")
        || msg.contains("Read-only")
        || msg.contains("EACCES")
        || msg.contains("ermission denied")
}

fn undo_mount(
    source: &Path,
    target: &Path,
    source_devno: &str,
    mnt_id: Option<u32>,
    mnt_unique: Option<u64>,
    lazy: bool,
    log: &mut UndoLog,
) -> Result<bool> {
    use hostfs::mountfd::{unmount, MountError, MountId, UnmountOutcome};
    let (major, minor) = source_devno
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .unwrap_or((0, 0));
    // The recorded identity; after a crash between mount and record, the
    // top mount at the target whose device is the recorded source.
    let (mnt_id, unique_id) = match mnt_id {
        Some(id) => (id, mnt_unique),
        None => {
            let found = mountinfo::current()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| {
                    m.mount_point == target
                        && (m.dev() == source_devno || Path::new(&m.source) == source)
                })
                .map(|m| m.id)
                .next_back();
            match found {
                Some(id) => (id, None),
                None => return Ok(false),
            }
        }
    };
    let id = MountId {
        mnt_id,
        unique_id,
        major,
        minor,
        host_path: target.to_path_buf(),
        mount_options: String::new(),
    };
    match unmount(&id, false) {
        Ok(UnmountOutcome::Gone) => {}
        Ok(_) => log.undone.push(format!("unmounted {}", target.display())),
        Err(MountError::NotOurs { .. }) => tracing::info!(
            target = %target.display(),
            "the mount recorded there is gone; what is mounted there now is not ours and was left alone"
        ),
        Err(MountError::Busy { .. }) if lazy => {
            unmount(&id, true).with_context(|| format!("detaching {}", target.display()))?;
            log.forced.push(target.display().to_string());
            log.undone
                .push(format!("lazily detached busy {}", target.display()));
            return Ok(true);
        }
        Err(MountError::Busy { .. }) => {
            let h = mounter::holders(target);
            anyhow::bail!(crate::engine::error::EngineError::conflict(format!(
                "{} is busy: {}",
                target.display(),
                if h.is_empty() {
                    "held by an unknown user (open files in another mount namespace?)".to_string()
                } else {
                    h.join("; ")
                }
            ))
            .with_hint("stop what uses it, or unmount with force to detach it lazily"));
        }
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
    }
    Ok(false)
}

fn undo_dir(root: &Path, path: &str, log: &mut UndoLog) {
    use hostfs::clonefs::{ClonePath, CloneRoot};
    let Ok(cp) = ClonePath::parse(path) else {
        return;
    };
    let Ok(r) = CloneRoot::open(root) else {
        return; // the anchor is gone, and the directory with it
    };
    match r.remove_dir(&cp) {
        Ok(true) => log
            .undone
            .push(format!("removed {}", root.join(cp.as_relative()).display())),
        Ok(false) => {}
        Err(e) => tracing::warn!("leaving {} in {}: {e}", path, root.display()),
    }
}

fn undo_loop(
    tag: &str,
    device: Option<&Path>,
    identity: Option<&LoopId>,
    log: &mut UndoLog,
) -> Result<()> {
    use hostfs::loopdev::{detach_if, find_by_tag, DetachOutcome, LoopIdentity};
    // Which devices are ours: the recorded one with its recorded identity, or
    // — when the run died before recording it — whatever carries our tag.
    let mut ours: Vec<(PathBuf, LoopIdentity)> = Vec::new();
    match (device, identity) {
        (Some(d), Some(id)) => {
            if let Ok(Some(now)) = hostfs::loopdev::status(d) {
                ours.push((
                    d.to_path_buf(),
                    LoopIdentity {
                        backing_dev: id.backing_dev,
                        backing_ino: id.backing_ino,
                        offset: id.offset,
                        size_limit: id.size_limit,
                        tag: id.tag.clone(),
                        ..now
                    },
                ));
            }
        }
        _ => ours = find_by_tag(tag).context("looking for loop devices by tag")?,
    }
    for (dev, id) in ours {
        match detach_if(&dev, &id).with_context(|| format!("detaching {}", dev.display()))? {
            DetachOutcome::Detached => log.undone.push(format!("detached {}", dev.display())),
            DetachOutcome::AutoclearSet => log.undone.push(format!(
                "released {} (the kernel frees it when its last user closes it)",
                dev.display()
            )),
            DetachOutcome::Gone => {}
            DetachOutcome::NotOurs(found) => tracing::info!(
                device = %dev.display(),
                tag = %found.tag,
                "loop device now belongs to someone else; left alone"
            ),
        }
    }
    Ok(())
}
