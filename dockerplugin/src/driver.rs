//! The volume driver: what each Docker request does, blocking (the server
//! runs these on blocking threads). Create records the volume and has the
//! appliance clone the gold copy and present the clone to this host; the
//! first Mount ID has the engine attach and mount the whole tree and
//! publish it at the volume's mountpoint; every ID counts its mounts
//! (`docker cp` reuses a running container's ID); at zero the tree is
//! unpublished and unmounted, the clone stays presented; Remove takes it
//! all away. Each step is recorded before it is taken, and a failed
//! request undoes what it did itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector::engine::{DeviceSource, Engine, MountRequest, Multipath, VolumeName};
use connector::state::current_boot_id;
use serde::Serialize;

use crate::appliance::ApplianceLink;
use crate::config::DockerConfig;
use crate::error::{PluginError, Result};
use crate::observe::{self, NoObserver, Operation, SharedObserver, Stage};
use crate::options::{parse_create, parse_name};
use crate::profile::Profiles;
use crate::store::{Phase, Record, Store};

/// The engine publication id of a volume's Docker mountpoint (one per
/// volume; the per-container counts are the plugin's).
pub const PUBLICATION_ID: &str = "docker";

/// What `Get` and `List` show of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Docker's name.
    pub name: String,
    /// The published tree while a container mounts it.
    pub mountpoint: Option<PathBuf>,
    /// RFC 3339 time of the create.
    pub created_at: String,
    /// Shown by `docker volume inspect` under `Status`.
    pub status: BTreeMap<String, serde_json::Value>,
}

/// The driver over one engine and one appliance.
pub struct Driver {
    name: String,
    engine: Arc<Engine>,
    store: Store,
    appliance: ApplianceLink,
    profiles: Arc<Profiles>,
    mounts_root: PathBuf,
    lun_wait: Duration,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    observer: SharedObserver,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// What identifies the storage behind a source (a loop backing file, a WWN).
fn storage_key(s: &DeviceSource) -> Option<String> {
    match s {
        DeviceSource::LoopBacking { file, .. } => Some(file.display().to_string()),
        DeviceSource::Iscsi { presentation, .. } => Some(presentation.wwn.to_ascii_lowercase()),
        DeviceSource::Fc { presentation, .. } => Some(presentation.wwn.to_ascii_lowercase()),
        DeviceSource::Wwid { wwid, .. } => Some(wwid.to_ascii_lowercase()),
        DeviceSource::Device { .. } => None,
    }
}

impl Driver {
    /// The driver `cfg` describes, its state beside the engine's
    /// (`<state dir>/docker-<name>.redb`). Mount counts from an earlier
    /// boot are dropped: those mounts ended with it.
    pub fn open(cfg: &DockerConfig, engine: Arc<Engine>, appliance: ApplianceLink) -> Result<Self> {
        let state_dir = engine
            .config()
            .state_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/var/lib/goldmount"));
        let store = Store::open(&state_dir.join(format!("docker-{}.redb", cfg.name)))?;
        let boot = current_boot_id();
        for mut rec in store.list()? {
            if rec.in_use() && rec.boot_id != boot {
                tracing::warn!(volume = %rec.docker_name, "mount counts from an earlier boot dropped");
                rec.mounts.clear();
                store.put(&rec)?;
            }
        }
        let driver = Self {
            name: cfg.name.clone(),
            engine,
            store,
            appliance,
            profiles: Arc::new(Profiles::default()),
            mounts_root: cfg.mounts_root(),
            lun_wait: cfg.lun_wait(),
            locks: Mutex::default(),
            observer: Arc::new(NoObserver),
        };
        driver.reconcile()?;
        Ok(driver)
    }

    /// Takes away what an interrupted Create, Mount or Remove left (a
    /// record in phase creating or removing, a tree mounted with no Mount
    /// counted: the plugin was killed mid-request, and Docker was told the
    /// request failed), so a volume is listed only when it is whole and
    /// mounted only while a container holds it. Each step is the same as
    /// `docker volume rm`'s and is no change when already done; one that
    /// fails (the appliance out of reach) leaves the record for `docker
    /// volume rm` to finish.
    fn reconcile(&self) -> Result<()> {
        for rec in self.store.list()? {
            if rec.phase == Phase::Ready {
                let mut rec = rec;
                if rec.in_use() && self.unmounts_lost(&rec) {
                    rec.mounts.clear();
                    self.store.put(&rec)?;
                }
                // Mounted and published, killed before the Mount was
                // counted: Docker was told the Mount failed, so no
                // container holds the tree.
                if !rec.in_use() {
                    if let Err(e) = self.take_down(&rec) {
                        tracing::warn!(volume = %rec.docker_name, error = %e, "a tree no container holds stays mounted; docker volume rm takes it down");
                    }
                }
                continue;
            }
            match self.remove(&rec.docker_name) {
                Ok(()) => {
                    tracing::warn!(volume = %rec.docker_name, phase = ?rec.phase, clone = %rec.clone, "interrupted docker request: the volume's clone, presentation and record taken away")
                }
                Err(e) => {
                    tracing::warn!(volume = %rec.docker_name, phase = ?rec.phase, error = %e, "interrupted docker request not undone; docker volume rm finishes it")
                }
            }
        }
        Ok(())
    }

    /// The driver resolving `NAME@profile` / `-o profile=` through
    /// `profiles` (shared with the control API, so a PUT there applies to
    /// the next create) instead of the built-in `default` only.
    pub fn with_profiles(mut self, profiles: Arc<Profiles>) -> Self {
        self.profiles = profiles;
        self
    }

    /// The driver reporting its requests and their stages to `observer`
    /// (goldmountd's metrics) instead of to nobody.
    pub fn with_observer(mut self, observer: SharedObserver) -> Self {
        self.observer = observer;
        self
    }

    /// Who is told about requests and stages (the server reports each
    /// request's start and end to it).
    pub fn observer(&self) -> &SharedObserver {
        &self.observer
    }

    /// The driver name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's state file.
    pub fn store_path(&self) -> &Path {
        self.store.path()
    }

    /// One operation per volume at a time (keyed by the base name, which
    /// `NAME` and `NAME@profile` share).
    fn volume_lock(&self, base: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(base.to_string())
            .or_default()
            .clone()
    }

    /// Waits for `lock` (a volume's), timed as the stage `lock_wait` of `op`.
    fn wait_turn<'l>(
        &self,
        op: Operation,
        volume: &str,
        lock: &'l Mutex<()>,
    ) -> MutexGuard<'l, ()> {
        self.observer.stage_started(op, volume, Stage::LockWait);
        let t0 = Instant::now();
        let g = lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.observer
            .stage_finished(op, volume, Stage::LockWait, t0.elapsed(), true);
        g
    }

    /// Runs `f` as stage `stage` of `op` on `volume` (timed, observed).
    fn stage<T>(
        &self,
        op: Operation,
        volume: &str,
        stage: Stage,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        observe::stage(&*self.observer, op, volume, stage, f)
    }

    fn need(&self, docker_name: &str) -> Result<Record> {
        self.store
            .get(docker_name)?
            .ok_or_else(|| PluginError::NoSuchVolume {
                name: docker_name.to_string(),
                driver: self.name.clone(),
            })
    }

    fn info(&self, r: &Record) -> VolumeInfo {
        let mut status = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            status.insert(k.to_string(), v);
        };
        put("gold", r.gold.clone().into());
        put("clone", r.clone.clone().into());
        put("profile", r.profile.clone().into());
        if let Some(class) = r.settings.as_ref().and_then(|s| s.class.clone()) {
            put("class", class.into());
        }
        put("read_only", r.read_only.into());
        put("phase", serde_json::to_value(r.phase).unwrap_or_default());
        put("mounts", r.mounts.values().sum::<u32>().into());
        put("engine_volume", r.engine_volume.clone().into());
        VolumeInfo {
            name: r.docker_name.clone(),
            mountpoint: r.in_use().then(|| r.mountpoint.clone()),
            created_at: rfc3339(r.created),
            status,
        }
    }

    /// `VolumeDriver.Create`.
    pub fn create(&self, docker_name: &str, opts: Option<&BTreeMap<String, String>>) -> Result<()> {
        let spec = parse_create(docker_name, opts, &self.profiles)?;
        let base = spec.name.base.clone();
        let lock = self.volume_lock(&base);
        let _g = self.wait_turn(Operation::Create, docker_name, &lock);
        let existing = self.store.get(docker_name)?;
        if let Some(r) = &existing {
            let same = Some(&r.gold) == spec.source.as_ref()
                && r.read_only == spec.read_only
                && r.point_in_time == spec.point_in_time
                && r.profile == spec.profile.name;
            match (r.phase, same) {
                (Phase::Ready, true) => return Ok(()),
                (Phase::Ready, false) => {
                    return Err(PluginError::Conflict {
                        name: docker_name.into(),
                        message: format!(
                            "it exists already from gold copy {} (read_only={}, profile {}); remove it first to create it with other options",
                            r.gold, r.read_only, r.profile
                        ),
                    })
                }
                (Phase::Removing, _) => {
                    return Err(PluginError::Conflict {
                        name: docker_name.into(),
                        message: "an earlier docker volume rm of it did not finish; run docker volume rm again".into(),
                    })
                }
                (Phase::Creating, _) => {}
            }
        }
        if let Some(other) = self
            .store
            .list()?
            .into_iter()
            .find(|r| r.base == base && r.docker_name != docker_name)
        {
            return Err(PluginError::Conflict {
                name: docker_name.into(),
                message: format!(
                    "volume {base} exists already as {}; use that name or remove it first",
                    other.docker_name
                ),
            });
        }
        let gold = match &spec.source {
            Some(g) => g.clone(),
            None => {
                return Err(PluginError::MissingSource {
                    name: docker_name.into(),
                    known: self.appliance.gold_names(docker_name)?.join(", "),
                })
            }
        };
        self.stage(
            Operation::Create,
            docker_name,
            Stage::ApplianceCheck,
            || self.appliance.check_gold(docker_name, &gold),
        )?;
        let host = self.appliance.host()?;
        let engine_volume = format!("{}-{base}", self.name);
        let ev = VolumeName::parse(&engine_volume).map_err(|e| PluginError::BadName {
            name: docker_name.into(),
            why: e.message,
        })?;
        let clone = format!("{host}.{}.{base}", self.name);
        if clone.len() > 64 {
            return Err(PluginError::BadName {
                name: docker_name.into(),
                why: format!(
                    "its clone on the appliance would be named {clone}, longer than 64 characters; use a shorter volume name"
                ),
            });
        }
        let mut rec = match existing {
            Some(r) => r, // an interrupted create: finish it
            None => {
                if self.engine.get(&ev).is_ok() {
                    return Err(PluginError::Conflict {
                        name: docker_name.into(),
                        message: format!("the engine already has a volume {engine_volume} that this plugin did not make; unmount it (goldmount unmount) or choose another name"),
                    });
                }
                if self.appliance.clone_exists(docker_name, &clone)? {
                    return Err(PluginError::Conflict {
                        name: docker_name.into(),
                        message: format!("the appliance already has a clone {clone} that this plugin did not record; delete it on the appliance or choose another volume name"),
                    });
                }
                Record {
                    docker_name: docker_name.into(),
                    base: base.clone(),
                    profile: spec.profile.name.clone(),
                    settings: Some(spec.profile.settings.clone()),
                    gold: gold.clone(),
                    point_in_time: spec.point_in_time.clone(),
                    read_only: spec.read_only,
                    clone: clone.clone(),
                    host: host.clone(),
                    presentation: None,
                    engine_volume,
                    mountpoint: self.mounts_root.join(&base),
                    mounts: BTreeMap::new(),
                    boot_id: None,
                    phase: Phase::Creating,
                    created: now(),
                }
            }
        };
        self.store.put(&rec)?;
        let undo_record = |e: PluginError| {
            let _ = self.store.delete(docker_name);
            e
        };
        let class = rec.settings.as_ref().and_then(|s| s.class.clone());
        self.stage(
            Operation::Create,
            docker_name,
            Stage::ApplianceClone,
            || {
                self.appliance.create_clone(
                    docker_name,
                    &rec.clone,
                    &gold,
                    rec.point_in_time.as_deref(),
                    class.as_deref(),
                )
            },
        )
        .map_err(undo_record)?;
        let presented = match self.stage(
            Operation::Create,
            docker_name,
            Stage::AppliancePresent,
            || self.appliance.present(docker_name, &rec.clone, &rec.host),
        ) {
            Ok(p) => p,
            Err(e) => {
                let e = match self.appliance.delete_clone(docker_name, &rec.clone) {
                    Ok(()) => e.and_then_say("the clone was deleted again; nothing was created"),
                    Err(d) => {
                        // The record (phase creating) stays, so docker volume rm finishes it.
                        return Err(e.and_then_say(&format!(
                            "deleting the clone again failed too ({d}); run docker volume rm {docker_name}"
                        )));
                    }
                };
                return Err(undo_record(e));
            }
        };
        rec.presentation = Some(presented);
        rec.phase = Phase::Ready;
        self.store.put(&rec)?;
        tracing::info!(volume = docker_name, gold = %gold, clone = %rec.clone, host = %rec.host, profile = %rec.profile, class = ?class, read_only = rec.read_only, "docker volume created");
        Ok(())
    }

    fn source(&self, rec: &Record) -> Result<DeviceSource> {
        let doc = rec
            .presentation
            .as_ref()
            .ok_or_else(|| PluginError::Conflict {
                name: rec.docker_name.clone(),
                message:
                    "its clone was never presented to this host; remove it and create it again"
                        .into(),
            })?;
        DeviceSource::from_presentation_json(&doc.to_string(), self.lun_wait, Multipath::Auto)
            .map_err(|e| PluginError::engine(&rec.docker_name, &e))
    }

    fn engine_name(rec: &Record) -> Result<VolumeName> {
        VolumeName::parse(&rec.engine_volume).map_err(|e| PluginError::BadName {
            name: rec.docker_name.clone(),
            why: e.message,
        })
    }

    /// `VolumeDriver.Mount`: the tree's path.
    pub fn mount(&self, docker_name: &str, id: &str) -> Result<PathBuf> {
        let base = parse_name(docker_name)?.base;
        let lock = self.volume_lock(&base);
        let _g = self.wait_turn(Operation::Mount, docker_name, &lock);
        let mut rec = self.need(docker_name)?;
        if rec.phase != Phase::Ready {
            return Err(PluginError::Conflict {
                name: docker_name.into(),
                message: format!(
                    "it is not ready ({:?}); run docker volume rm {docker_name} and create it again",
                    rec.phase
                ),
            });
        }
        let ev = Self::engine_name(&rec)?;
        let published = |rec: &Record| {
            self.engine
                .get(&ev)
                .map(|st| {
                    st.publications
                        .iter()
                        .any(|p| p.id == PUBLICATION_ID && p.target == rec.mountpoint)
                })
                .unwrap_or(false)
        };
        if rec.in_use() {
            if published(&rec) {
                *rec.mounts.entry(id.to_string()).or_insert(0) += 1;
                self.store.put(&rec)?;
                tracing::info!(volume = docker_name, id, mounts = ?rec.mounts, "docker mount (already mounted)");
                return Ok(rec.mountpoint);
            }
            // Taken down behind the plugin's back (goldmount unmount --force):
            // mounted again below, the other IDs' counts kept.
            tracing::warn!(volume = docker_name, mounts = ?rec.mounts, "counted as mounted but not published: mounting again");
        }
        // The settings recorded at create (a later PUT of the profile does
        // not change an existing volume); a record from before profiles had
        // settings resolves its profile by name.
        let settings = match &rec.settings {
            Some(s) => s.clone(),
            None => self.profiles.resolve(Some(&rec.profile))?.settings,
        };
        let req = MountRequest {
            volume: ev.clone(),
            sources: vec![self.source(&rec)?],
            options: settings.mount_options(rec.read_only),
        };
        let t0 = Instant::now();
        // A failed engine mount rolls back everything it did itself.
        let mounted = self.stage(Operation::Mount, docker_name, Stage::EngineMount, || {
            self.engine
                .mount(&req)
                .map_err(|e| PluginError::engine(docker_name, &e))
        })?;
        let created = mounted.created();
        let undo = |e: PluginError| -> PluginError {
            if !created {
                return e;
            }
            match self.engine.unmount(&ev, false) {
                Ok(_) => e.and_then_say("the volume this Mount mounted was unmounted again"),
                Err(u) => e.and_then_say(&format!(
                    "unmounting the volume this Mount mounted failed too: {}",
                    u.message
                )),
            }
        };
        // A volume this call mounted has no publication yet: no need to
        // look (each look is a transaction under the engine's host-wide
        // state-store lock, which concurrent mounts queue on).
        if created || !published(&rec) {
            self.stage(Operation::Mount, docker_name, Stage::Publish, || {
                self.engine
                    .publish(&ev, PUBLICATION_ID, &rec.mountpoint, rec.read_only)
                    .map_err(|e| PluginError::engine(docker_name, &e))
            })
            .map_err(undo)?;
        }
        *rec.mounts.entry(id.to_string()).or_insert(0) += 1;
        rec.boot_id = current_boot_id();
        if let Err(e) = self.store.put(&rec) {
            let _ = self.engine.unpublish(&ev, PUBLICATION_ID, false);
            return Err(undo(e));
        }
        tracing::info!(volume = docker_name, id, mountpoint = %rec.mountpoint.display(), secs = t0.elapsed().as_secs_f64(), "docker mount: tree mounted and published");
        Ok(rec.mountpoint)
    }

    /// Unpublishes and unmounts the volume's tree (nothing mounted: no change).
    fn take_down(&self, rec: &Record) -> Result<()> {
        let ev = Self::engine_name(rec)?;
        let st = match self.engine.get(&ev) {
            Ok(st) => st,
            Err(e) if e.kind == connector::engine::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(PluginError::engine(&rec.docker_name, &e)),
        };
        for p in st.publications.iter().filter(|p| p.id == PUBLICATION_ID) {
            for _ in 0..p.refs.max(1) {
                let left = self
                    .engine
                    .unpublish(&ev, PUBLICATION_ID, false)
                    .map_err(|e| PluginError::engine(&rec.docker_name, &e))?
                    .into_inner();
                if left == 0 {
                    break;
                }
            }
        }
        self.engine
            .unmount(&ev, false)
            .map_err(|e| PluginError::engine(&rec.docker_name, &e))?;
        Ok(())
    }

    /// Whether a volume counted as mounted has lost its Unmounts: killed
    /// while Docker unmounted it (Docker's retry comes without a body and
    /// is refused), or down when its container ended. Its tree is mounted
    /// here and no other mount namespace has any copy of it — a running
    /// container always has its bind of the published tree, whatever its
    /// propagation, so a copy of any kind keeps the counts.
    fn unmounts_lost(&self, rec: &Record) -> bool {
        let devs = self.tree_devices(rec);
        if devs.is_empty() {
            return false;
        }
        let foreign = mountinfo::foreign_mounts(&devs);
        if foreign.is_empty() {
            tracing::warn!(volume = %rec.docker_name, mounts = ?rec.mounts, "counted as mounted, but no container holds the tree (its Unmount was lost while goldmountd was down or killed): the counts are dropped and the tree taken down");
            return true;
        }
        tracing::info!(volume = %rec.docker_name, held_by = ?foreign.iter().map(ToString::to_string).collect::<Vec<_>>(), "mounted by a container: kept");
        false
    }

    /// The devices of the volume's tree as mounted in this namespace.
    fn tree_devices(&self, rec: &Record) -> Vec<(u32, u32)> {
        let mut roots = vec![rec.mountpoint.clone()];
        if let Ok(st) = Self::engine_name(rec).and_then(|ev| {
            self.engine
                .get(&ev)
                .map_err(|e| PluginError::engine(&rec.docker_name, &e))
        }) {
            roots.extend(st.manifest.map(|m| m.path));
        }
        let ours = mountinfo::current().unwrap_or_default();
        let mut devs: Vec<(u32, u32)> = roots
            .iter()
            .flat_map(|r| mountinfo::mounts_under(&ours, r))
            .map(|m| (m.major, m.minor))
            .collect();
        devs.sort_unstable();
        devs.dedup();
        devs
    }

    /// Mounts of the volume's filesystems in other mount namespaces: a
    /// running container's bind of the published tree.
    fn foreign_mounts(&self, rec: &Record) -> Vec<mountinfo::ForeignMount> {
        mountinfo::foreign_mounts(&self.tree_devices(rec))
    }

    /// `VolumeDriver.Unmount`.
    pub fn unmount(&self, docker_name: &str, id: &str) -> Result<()> {
        let base = parse_name(docker_name)?.base;
        let lock = self.volume_lock(&base);
        let _g = self.wait_turn(Operation::Unmount, docker_name, &lock);
        let mut rec = self.need(docker_name)?;
        match rec.mounts.get_mut(id) {
            None => {
                tracing::warn!(
                    volume = docker_name,
                    id,
                    "unmount of an ID that holds no mount: nothing to do"
                );
                if rec.in_use() {
                    return Ok(());
                }
            }
            Some(n) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    rec.mounts.remove(id);
                }
                // Docker counts this ID as released whatever happens below.
                self.store.put(&rec)?;
            }
        }
        if rec.in_use() {
            tracing::info!(volume = docker_name, id, mounts = ?rec.mounts, "docker unmount: still in use");
            return Ok(());
        }
        self.stage(Operation::Unmount, docker_name, Stage::Teardown, || {
            self.take_down(&rec)
        })
        .map_err(|e| {
            e.and_then_say(&format!(
                "the tree stays mounted; docker volume rm {docker_name} tries again"
            ))
        })?;
        tracing::info!(
            volume = docker_name,
            id,
            "docker unmount: tree unmounted (clone stays presented)"
        );
        Ok(())
    }

    /// `VolumeDriver.Remove`: refused while another mount namespace (a
    /// container) has the tree; else the tree, the presentation and the
    /// clone go, then the record.
    pub fn remove(&self, docker_name: &str) -> Result<()> {
        let base = parse_name(docker_name)?.base;
        let lock = self.volume_lock(&base);
        let _g = self.wait_turn(Operation::Remove, docker_name, &lock);
        let Some(mut rec) = self.store.get(docker_name)? else {
            return Ok(());
        };
        if rec.in_use() {
            // Docker calls Remove only when no container refers to the
            // volume, so counted mounts are Unmounts goldmount never got
            // (it was down when the container ended). They are dropped
            // unless the tree is still mounted in another namespace.
            let held: Vec<String> = self
                .foreign_mounts(&rec)
                .iter()
                .filter(|m| !m.follows_ours)
                .map(ToString::to_string)
                .collect();
            if !held.is_empty() {
                return Err(PluginError::Conflict {
                    name: docker_name.into(),
                    message: format!(
                        "it is in use ({}); stop the containers using it first (docker ps -a --filter volume={docker_name})",
                        held.join("; ")
                    ),
                });
            }
            tracing::warn!(volume = docker_name, mounts = ?rec.mounts, "docker removes a volume still counted as mounted: the Unmounts were lost (goldmountd was down when the containers ended) and nothing else mounts the tree; the counts are dropped");
            rec.mounts.clear();
        }
        rec.phase = Phase::Removing;
        self.store.put(&rec)?;
        self.stage(Operation::Remove, docker_name, Stage::Teardown, || {
            self.take_down(&rec)
        })?;
        if let Ok(ours) = self.source(&rec) {
            let key = storage_key(&ours);
            let users: Vec<String> = self
                .engine
                .list()
                .map_err(|e| PluginError::engine(docker_name, &e))?
                .into_iter()
                .filter(|v| {
                    v.sources
                        .iter()
                        .any(|s| key.is_some() && storage_key(s) == key)
                })
                .map(|v| v.volume)
                .collect();
            if !users.is_empty() {
                return Err(PluginError::Conflict {
                    name: docker_name.into(),
                    message: format!(
                        "its clone {} is still mounted on this host as engine volume(s) {}; unmount them (goldmount unmount), then run docker volume rm again",
                        rec.clone,
                        users.join(", ")
                    ),
                });
            }
        }
        self.stage(
            Operation::Remove,
            docker_name,
            Stage::ApplianceUnpresent,
            || self.appliance.unpresent(docker_name, &rec.clone),
        )?;
        self.stage(
            Operation::Remove,
            docker_name,
            Stage::ApplianceDelete,
            || self.appliance.delete_clone(docker_name, &rec.clone),
        )?;
        self.store.delete(docker_name)?;
        tracing::info!(volume = docker_name, clone = %rec.clone, "docker volume removed");
        Ok(())
    }

    /// `VolumeDriver.Get`.
    pub fn get(&self, docker_name: &str) -> Result<VolumeInfo> {
        Ok(self.info(&self.need(docker_name)?))
    }

    /// `VolumeDriver.List`.
    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        Ok(self.store.list()?.iter().map(|r| self.info(r)).collect())
    }

    /// `VolumeDriver.Path`: the mountpoint while mounted.
    pub fn path(&self, docker_name: &str) -> Result<Option<PathBuf>> {
        Ok(self.get(docker_name)?.mountpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_187_661), "2026-12-02T05:01:01Z");
    }
}
