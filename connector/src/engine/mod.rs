//! The engine: one typed API over the whole life of a volume — mount,
//! unmount, list, get, recover, publish — that every front door (the CLI,
//! the daemon's control API, the Docker plugin, CSI) calls and only
//! translates. Requests are validated types, results say whether anything
//! changed, errors carry a kind.

pub mod attach;
pub mod claim;
pub mod error;
pub mod fs_kind;
pub mod journal;
pub mod pipeline;
pub mod publish;
pub mod source;
pub mod stage_lvm;
pub mod teardown;
pub mod types;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::lock::VolumeLock;
use crate::manifest::Manifest;
use crate::mounter;
use crate::state::{Action, Phase, StateStore, VolumeRecord};
pub use error::{EngineError, EngineResult, ErrorKind};
use journal::{Journal, UndoLog};
pub use publish::Publication;
pub use types::{
    ChapCredentials, DeviceSource, FcPresentation, IscsiPresentation, MountOptions, MountRequest,
    Multipath, Outcome, RecoveryReport, UnmountOptions, UnmountReport, VolumeName,
};

/// What the engine knows about one volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeStatus {
    /// Volume name.
    pub volume: String,
    /// The devices it was mounted from.
    pub devices: Vec<PathBuf>,
    /// Where it is in its life.
    pub phase: Phase,
    /// Mounted read-only.
    pub read_only: bool,
    /// The manifest, once mounted.
    pub manifest: Option<Manifest>,
    /// Why it is quarantined, if it is.
    pub quarantine: Option<String>,
    /// Who consumes it.
    pub publications: Vec<Publication>,
    /// The sources it was mounted from, as requested (without secrets): an
    /// appliance tells by these which of its clones the volume uses.
    pub sources: Vec<DeviceSource>,
}

impl From<VolumeRecord> for VolumeStatus {
    fn from(r: VolumeRecord) -> Self {
        Self {
            volume: r.name,
            devices: r.devices,
            phase: r.phase,
            read_only: r.read_only,
            manifest: r.manifest,
            quarantine: r.quarantine,
            publications: r.publications,
            sources: r.sources,
        }
    }
}

/// How long an operation waits for a volume lock that is held before it
/// answers "busy": long enough for a just-released lock's spawned copies to
/// go, short enough that a second operation on a busy volume is told at once
/// in human terms.
const LOCK_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The engine over one host's state.
pub struct Engine {
    cfg: Config,
    store: StateStore,
}

impl Engine {
    /// Opens the state store the config names. Does not recover: call
    /// [`recover`](Self::recover) once at process start.
    pub fn open(cfg: Config) -> EngineResult<Self> {
        let store = StateStore::open(&cfg.state_path)?;
        Ok(Self { cfg, store })
    }

    /// The paths in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The state store (for host settings that need the clones' devices).
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The volume's lock for an operation. A lock that was just released can
    /// stay held for a moment: a process another thread is spawning holds a
    /// copy of every descriptor, the lock's too, between its fork and its
    /// exec (close-on-exec closes it only then). So a busy lock is tried
    /// again for up to [`LOCK_SETTLE`] before the answer is "busy" (a Docker
    /// Mount whose publication failed met its own, just released lock in a
    /// test process that was spawning docker commands on other threads).
    fn lock(&self, volume: &VolumeName) -> EngineResult<VolumeLock> {
        let until = std::time::Instant::now() + LOCK_SETTLE;
        loop {
            match self.try_lock(volume) {
                Err(e) if e.kind == ErrorKind::Busy && std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    /// The volume's lock, or "busy" at once (recovery skips such volumes).
    fn try_lock(&self, volume: &VolumeName) -> EngineResult<VolumeLock> {
        VolumeLock::try_acquire(&self.cfg.lock_dir(), volume.as_str())
            .map_err(|e| EngineError::new(ErrorKind::Unavailable, format!("{e:#}")))?
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::Busy,
                    format!("volume {volume} is being changed by another goldmount process"),
                )
                .with_hint("try again when it finishes")
            })
    }

    /// Mounts everything on the request's devices under the volume path and
    /// returns the manifest: `Created` when this call mounted it, `Existing`
    /// when the same request had already been satisfied.
    pub fn mount(&self, req: &MountRequest) -> EngineResult<Outcome<Manifest>> {
        if req.sources.is_empty() {
            return Err(EngineError::invalid(format!(
                "no device given for volume {}",
                req.volume
            )));
        }
        for s in &req.sources {
            if s.wait_timeout().is_some_and(|t| t > types::MAX_WAIT) {
                return Err(EngineError::invalid(format!(
                    "a wait of more than {} s for a device was asked; at most {} s",
                    types::MAX_WAIT.as_secs(),
                    types::MAX_WAIT.as_secs()
                )));
            }
        }
        // Sources that are only looked up (a node, a WWID, a loop backing
        // file) are resolved before anything is recorded; presentations are
        // attached below, each change journaled.
        let active = req.sources.iter().any(DeviceSource::is_presentation);
        let mut looked_up: Vec<Option<PathBuf>> = Vec::new();
        for s in &req.sources {
            looked_up.push(match s.is_presentation() {
                true => None,
                false => Some(source::resolve(s)?),
            });
        }
        let known: Vec<PathBuf> = looked_up.iter().flatten().cloned().collect();
        no_repeats(&known)?;
        let recorded: Vec<DeviceSource> = req.sources.iter().map(DeviceSource::recorded).collect();
        let lock = self.lock(&req.volume)?;
        let name = req.volume.as_str();
        if let Some(rec) = self.store.get(name)? {
            let same_source = match active {
                true => rec.sources == recorded,
                false => rec.devices == known,
            };
            return match (&rec.phase, &rec.manifest) {
                (Phase::Mounted, Some(m)) if same_source && rec.options == req.options => {
                    Ok(Outcome::Existing(m.clone()))
                }
                (Phase::Mounted, _) => Err(EngineError::conflict(format!(
                    "volume {name} is already mounted from {} with other devices or options",
                    shown(&rec.devices)
                ))
                .with_hint(format!("unmount volume {name} first"))),
                _ => Err(EngineError::conflict(format!(
                    "volume {name} has an unfinished record ({:?}{})",
                    rec.phase,
                    rec.quarantine
                        .as_deref()
                        .map(|q| format!(": {q}"))
                        .unwrap_or_default()
                ))
                .with_hint("run recovery, or unmount the volume")),
            };
        }
        let mut rec = VolumeRecord::new(name, known.clone(), req.options.read_only);
        rec.options = req.options.clone();
        rec.sources = recorded;
        let mut j = if active {
            // The record comes first: the login and the scan are its steps.
            self.store.put(&rec)?;
            Journal::new(&self.store, rec)
        } else {
            // Claim the data: checked against every other record and recorded
            // in one state-store transaction, before any step.
            for d in &known {
                rec.claims.push(claim::claim_for(d, req.options.read_only)?);
            }
            let wanted = rec.claims.clone();
            claim::check_outside(&wanted)?;
            self.store
                .put_if(&rec, |records| claim::check(&wanted, name, records))??;
            Journal::new(&self.store, rec)
        };
        let devices = match active {
            true => self.attach_and_claim(&mut j, req, &looked_up),
            false => Ok(known),
        };
        let mut run = pipeline::Run::new(&self.cfg, &self.store, name, &req.options);
        let mounted = devices.and_then(|devices| {
            pipeline::mount_steps(&mut run, &mut j, &devices).map_err(EngineError::from_chain)
        });
        match mounted {
            Ok(m) => {
                j.rec.phase = Phase::Mounted;
                j.rec.manifest = Some(m.clone());
                j.save().map_err(EngineError::from_chain)?;
                Ok(Outcome::Created(m))
            }
            Err(e) => {
                let mut log = UndoLog::default();
                let rollback = j.undo_all(true, &mut log);
                let mut err = e;
                match rollback {
                    Ok(()) => {
                        let _ = self.store.delete(name);
                        drop(j);
                        lock.release_and_remove();
                        err.message = format!(
                            "mounting volume {name} failed; everything was rolled back: {}",
                            err.message
                        );
                    }
                    Err(re) => {
                        let why = format!("the rollback of a failed mount failed: {re:#}");
                        j.rec.phase = Phase::Quarantined;
                        j.rec.quarantine = Some(why.clone());
                        let _ = j.save();
                        err.message = format!(
                            "mounting volume {name} failed ({}) and {why}; the volume is quarantined: check mounts under {}",
                            err.message,
                            self.cfg.volumes_root.join(name).display()
                        );
                    }
                }
                Err(err)
            }
        }
    }

    /// Attaches the request's presentations (journaled in `j`), then claims
    /// every device in one state-store transaction.
    fn attach_and_claim(
        &self,
        j: &mut Journal,
        req: &MountRequest,
        looked_up: &[Option<PathBuf>],
    ) -> EngineResult<Vec<PathBuf>> {
        let mut devices = Vec::new();
        for (s, known) in req.sources.iter().zip(looked_up) {
            let d = match known {
                Some(d) => d.clone(),
                None => source::canonical(&attach::attach(j, s)?)?,
            };
            devices.push(d);
        }
        no_repeats(&devices)?;
        let name = req.volume.as_str();
        j.rec.devices = devices.clone();
        j.rec.claims.clear();
        for d in &devices {
            j.rec
                .claims
                .push(claim::claim_for(d, req.options.read_only)?);
        }
        let wanted = j.rec.claims.clone();
        claim::check_outside(&wanted)?;
        self.store
            .put_if(&j.rec, |records| claim::check(&wanted, name, records))??;
        Ok(devices)
    }

    /// Unmounts a volume and undoes every step, newest first. Refuses,
    /// changing nothing, while something uses it or it is published, unless
    /// `force` (busy mounts are then detached lazily, publications taken down).
    pub fn unmount(&self, volume: &VolumeName, force: bool) -> EngineResult<UnmountReport> {
        self.unmount_with(
            volume,
            &UnmountOptions {
                force,
                deadline: None,
            },
        )
    }

    /// [`unmount`](Self::unmount) with a deadline per step. Before the
    /// mounts are undone, queueing is turned off on multipath maps with no
    /// path up (all of them when forced) and every filesystem is flushed
    /// and checked: possible data loss is reported in the result, not
    /// hidden. A device the kernel still holds after its unmount keeps the
    /// record (phase unmounting, with the reason).
    pub fn unmount_with(
        &self,
        volume: &VolumeName,
        opts: &UnmountOptions,
    ) -> EngineResult<UnmountReport> {
        let force = opts.force;
        let lock = self.lock(volume)?;
        let name = volume.as_str();
        let Some(mut rec) = self.store.get(name)? else {
            lock.release_and_remove();
            return Ok(UnmountReport {
                volume: name.to_string(),
                not_mounted: true,
                ..Default::default()
            });
        };
        let mut report = UnmountReport {
            volume: name.to_string(),
            ..Default::default()
        };
        if !rec.publications.is_empty() {
            if !force {
                return Err(EngineError::conflict(format!(
                    "volume {name} is published at {}",
                    rec.publications
                        .iter()
                        .map(|p| p.target.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_hint("unpublish it first, or unmount with force"));
            }
            let dir = self.cfg.volumes_root.join(name);
            publish::take_down_all(&self.store, &dir, &mut rec, &mut report)?;
        }
        if !force {
            let mut busy = Vec::new();
            for s in &rec.steps {
                if let Action::Mount { target, .. } = &s.action {
                    let h = mounter::holders(target);
                    if !h.is_empty() {
                        busy.push(format!("{}: {}", target.display(), h.join("; ")));
                    }
                }
            }
            if !busy.is_empty() {
                return Err(EngineError::conflict(format!(
                    "volume {name} is in use, nothing was changed: {}",
                    busy.join(" | ")
                ))
                .with_hint("stop what uses it, or unmount with force to detach it lazily"));
            }
        }
        let deadline = opts
            .deadline
            .unwrap_or_else(|| teardown::deadline_for(&rec));
        let prepared = teardown::prepare(&rec, force, deadline);
        for l in &prepared.losses {
            tracing::error!(volume = name, "{l}");
        }
        if let Some(h) = prepared.losses.iter().find(|l| l.hanging) {
            if !force {
                // Unmounting now would only hang (or fail as busy behind the
                // flush left waiting): report it within the deadline and
                // leave the volume as it is.
                teardown::restore_queueing(&prepared.queueing_off);
                return Err(EngineError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "I/O to {} is hanging: flushing {} did not finish within {} s; nothing was unmounted and volume {name} stays mounted",
                        h.source.display(),
                        h.mount_point.display(),
                        prepared.deadline_secs
                    ),
                )
                .with_hint(
                    "when the storage is back, unmount again; or unmount with force to stop queueing and detach it (data not yet written is lost)",
                ));
            }
        }
        rec.phase = Phase::Unmounting;
        let mut j = Journal::new(&self.store, rec);
        j.release_deadline = deadline;
        j.save().map_err(EngineError::from_chain)?;
        let mut log = UndoLog::default();
        if let Err(e) = j.undo_all(force, &mut log) {
            let mut err = EngineError::from_chain(e);
            if j.rec
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Mount { .. }))
            {
                // Mounts are still there: the teardown is abandoned, the
                // maps queue again.
                teardown::restore_queueing(&prepared.queueing_off);
            }
            if !prepared.losses.is_empty() {
                err.message = format!(
                    "{} (and {})",
                    err.message,
                    prepared
                        .losses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            return Err(err);
        }
        report.data_loss = prepared.losses;
        report.queueing_off = prepared.queueing_off;
        report.deadline_secs = prepared.deadline_secs;
        self.store.delete(name)?;
        drop(j);
        lock.release_and_remove();
        report.undone.extend(log.undone);
        report.forced.extend(log.forced);
        Ok(report)
    }

    /// Every volume on this host.
    pub fn list(&self) -> EngineResult<Vec<VolumeStatus>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(VolumeStatus::from)
            .collect())
    }

    /// One volume.
    pub fn get(&self, volume: &VolumeName) -> EngineResult<VolumeStatus> {
        self.store
            .get(volume.as_str())?
            .map(VolumeStatus::from)
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::NotFound,
                    format!("no volume {volume} on this host"),
                )
            })
    }

    /// A mounted volume whose publication a killed run left half made
    /// (recorded, not bound): the publication is taken down, the volume
    /// stays mounted. Busy or failing: left for a repeated publish, which
    /// finishes it.
    fn recover_publications(&self, name: &str, report: &mut RecoveryReport) {
        let Ok(volume) = VolumeName::parse(name) else {
            return;
        };
        let Ok(_lock) = self.try_lock(&volume) else {
            report.in_progress.push(name.to_string());
            return;
        };
        match publish::roll_back_unfinished(&self.store, &self.cfg, &volume) {
            Ok(targets) => {
                for t in targets {
                    tracing::warn!(volume = name, target = %t.display(), "interrupted publication taken down");
                    report
                        .unpublished
                        .push(format!("{name} at {}", t.display()));
                }
            }
            Err(e) => {
                tracing::warn!(volume = name, error = %e, "interrupted publication left; publishing again finishes it")
            }
        }
    }

    /// Rolls back interrupted mounts and finishes interrupted unmounts (a
    /// volume whose lock is held is in progress and left alone). A record
    /// that cannot be undone is quarantined with the reason and blocks
    /// nothing else. Run once at process start, and on demand.
    pub fn recover(&self) -> EngineResult<RecoveryReport> {
        let mut report = RecoveryReport::default();
        for mut rec in self.store.list()? {
            let stale = rec.from_earlier_boot();
            if rec.phase == Phase::Mounted && !stale {
                if rec.publications.iter().any(|p| p.mount_ids.is_empty()) {
                    self.recover_publications(&rec.name, &mut report);
                }
                continue;
            }
            let Ok(name) = VolumeName::parse(&rec.name) else {
                continue;
            };
            let Ok(lock) = self.try_lock(&name) else {
                report.in_progress.push(rec.name.clone());
                continue;
            };
            if stale {
                // Mounts, loop devices, activations and sessions do not
                // survive a restart, and the kernel hands their ids and
                // device names out again: undoing those steps could hit
                // somebody else's. Only goldmount's empty directories go.
                tracing::warn!(volume = %rec.name, "record from before the host restarted: dropped");
                rec.steps
                    .retain(|s| matches!(s.action, Action::MakeDir { .. }));
                let mut j = Journal::new(&self.store, rec);
                let mut log = UndoLog::default();
                if let Err(e) = j.undo_all(false, &mut log) {
                    tracing::warn!(volume = %name, error = %format!("{e:#}"), "directories left");
                }
                self.store.delete(name.as_str())?;
                drop(j);
                lock.release_and_remove();
                report.stale.push(name.to_string());
                continue;
            }
            let phase = rec.phase;
            tracing::warn!(volume = %rec.name, phase = ?phase, "recovering an interrupted operation");
            let mut j = Journal::new(&self.store, rec);
            let mut log = UndoLog::default();
            match j.undo_all(phase == Phase::Mounting, &mut log) {
                Ok(()) => {
                    self.store.delete(name.as_str())?;
                    drop(j);
                    lock.release_and_remove();
                    match phase {
                        Phase::Mounting => report.rolled_back.push(name.to_string()),
                        _ => report.finished.push(name.to_string()),
                    }
                }
                Err(e) => {
                    let why = format!(
                        "recovery could not undo {} step(s): {e:#}; check the mounts under {} and the loop devices of this volume, then run recovery again",
                        j.rec.steps.len(),
                        self.cfg.volumes_root.join(name.as_str()).display()
                    );
                    j.rec.phase = Phase::Quarantined;
                    j.rec.quarantine = Some(why.clone());
                    j.save().map_err(EngineError::from_chain)?;
                    report.quarantined.push((name.to_string(), why));
                }
            }
        }
        Ok(report)
    }

    /// Publishes a mounted volume's whole tree at `target` for consumer `id`
    /// (a recursive bind; every submount read-only when asked). The same id
    /// and target again adds a reference and answers `Existing`.
    pub fn publish(
        &self,
        volume: &VolumeName,
        id: &str,
        target: &std::path::Path,
        read_only: bool,
    ) -> EngineResult<Outcome<Publication>> {
        let _lock = self.lock(volume)?;
        publish::publish(&self.store, &self.cfg, volume, id, target, read_only)
    }

    /// Drops one reference of consumer `id`; at zero its bind mount is taken
    /// down (`force`: lazily when busy). Unknown id: `Existing(())`.
    pub fn unpublish(
        &self,
        volume: &VolumeName,
        id: &str,
        force: bool,
    ) -> EngineResult<Outcome<u32>> {
        let _lock = self.lock(volume)?;
        publish::unpublish(&self.store, &self.cfg, volume, id, force)
    }
}

fn no_repeats(devices: &[PathBuf]) -> EngineResult<()> {
    for (i, d) in devices.iter().enumerate() {
        if devices[..i].contains(d) {
            return Err(EngineError::invalid(format!(
                "device {} given twice",
                d.display()
            )));
        }
    }
    Ok(())
}

fn shown(v: &[PathBuf]) -> String {
    v.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
