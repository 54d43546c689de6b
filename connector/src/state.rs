//! The state store: every volume and every step taken for it, written before
//! the step is taken, so a crash mid-way can be rolled back on restart.
//!
//! Backed by redb (`/var/lib/goldmount/state.redb` by default). Each access
//! opens the database for one short transaction, so several `goldmount`
//! processes (concurrent mounts of different volumes) share it without a
//! lock being held across slow steps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");

/// State store failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened, read or written.
    #[error("state store {path}: {msg}")]
    Db {
        /// Database file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A record could not be (de)serialised — a newer/older format or corruption.
    #[error("state store {path}: record {key:?} is unreadable: {msg}")]
    Record {
        /// Database file.
        path: PathBuf,
        /// Volume name.
        key: String,
        /// Decoder message.
        msg: String,
    },
}

/// Where a volume is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Steps are being taken; if no process holds the volume lock, it crashed.
    Mounting,
    /// Everything is up.
    Mounted,
    /// Teardown in progress (resumed on restart).
    Unmounting,
    /// Recovery could not undo a step: left alone, with the reason, so that
    /// it blocks nothing else; `recover` and `unmount` try again.
    Quarantined,
}

/// A loop device's identity as recorded when goldmount made it: undo
/// detaches a loop device only while it still is this one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoopId {
    /// `st_dev` of the backing file.
    pub backing_dev: u64,
    /// `st_ino` of the backing file.
    pub backing_ino: u64,
    /// Byte offset into the backing.
    pub offset: u64,
    /// Byte length (0 = to the end).
    pub size_limit: u64,
    /// The owner tag goldmount wrote into the loop device.
    pub tag: String,
}

/// One action goldmount takes on the host, recorded so it can be undone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A directory goldmount created (removed on teardown if empty), named
    /// relative to a trusted anchor directory and resolved inside it.
    MakeDir {
        /// The anchor (the volumes root, the volume path, the staging dir).
        root: PathBuf,
        /// The directory inside the anchor (`/srv/data`).
        path: String,
    },
    /// A loop device over a byte range of a device or image (a partition the
    /// kernel did not map, or an image given as a device), tagged so that
    /// goldmount can tell it from anybody else's.
    AttachLoop {
        /// What it reads from.
        backing: PathBuf,
        /// Byte offset into the backing.
        offset: u64,
        /// Byte length (0 = to the end).
        size: u64,
        /// Read-only loop.
        read_only: bool,
        /// The owner tag written into the loop device before it exists.
        tag: String,
        /// The loop device, once known.
        device: Option<PathBuf>,
        /// Its identity, once known.
        identity: Option<LoopId>,
    },
    /// A clone's volume group renamed (if it collided) and activated on
    /// exactly its devices; deactivated on teardown.
    ImportVg {
        /// The VG name after import (`<vg>_<volume>` on collision).
        vg: String,
        /// The name in the gold copy.
        original: String,
        /// The clone's PV devices.
        devices: Vec<PathBuf>,
    },
    /// A clone's ZFS pool imported by GUID under a new name; exported on teardown.
    ImportPool {
        /// Pool name on this host.
        name: String,
        /// Pool GUID as found on the clone.
        guid: u64,
        /// The clone's vdev devices.
        devices: Vec<PathBuf>,
    },
    /// An iSCSI session goldmount logged in for a presentation (recorded
    /// before the login). Logged out on teardown only when no other volume
    /// uses it and no disk of it is in use.
    IscsiSession {
        /// Target IQN.
        target_iqn: String,
        /// Portal (`ip:port`).
        portal: String,
        /// True when goldmount opened the session (this run, or another
        /// volume's run that still recorded it): only then is it logged out.
        opened: bool,
    },
    /// A LUN brought in by a targeted scan for a presentation (recorded
    /// before the scan). On teardown its SCSI devices (and multipath map)
    /// are removed, after checking the WWID, unless another volume uses it
    /// or goldmount did not bring it in.
    ScanLun {
        /// The WWN the presentation announced.
        wwid: String,
        /// What was scanned (for messages).
        location: String,
        /// True when goldmount brought the LUN in (it was not on the host
        /// before, or another volume's run brought it in).
        owned: bool,
    },
    /// A mount, identified by the kernel's mount id once made.
    Mount {
        /// Device mounted.
        source: PathBuf,
        /// `major:minor` of the source, recorded before mounting.
        source_devno: String,
        /// Mount point (host path, resolved inside the volume).
        target: PathBuf,
        /// Filesystem type.
        fstype: String,
        /// Options, as shown in the manifest.
        options: String,
        /// The kernel's mount id, once mounted (reused by the kernel after
        /// an unmount: never trusted alone).
        mnt_id: Option<u32>,
        /// The kernel's 64-bit unique mount id (Linux ≥ 6.8), never reused
        /// while the system runs; checked with the mount id before undo.
        #[serde(default)]
        mnt_unique: Option<u64>,
    },
}

/// An action and whether it completed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    /// What was (or was about to be) done.
    pub action: Action,
    /// False between "recorded" and "completed": after a crash such a step may
    /// or may not have taken effect, so undo checks reality.
    pub done: bool,
}

/// Everything known about one volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    /// Volume name.
    pub name: String,
    /// The devices (or images) it was mounted from.
    pub devices: Vec<PathBuf>,
    /// Mounted read-only.
    pub read_only: bool,
    /// Life-cycle phase.
    pub phase: Phase,
    /// Steps in the order they were taken.
    pub steps: Vec<Step>,
    /// The manifest, once mounted.
    pub manifest: Option<Manifest>,
    /// The data this volume holds (checked and recorded under one lock
    /// before any step is taken).
    #[serde(default)]
    pub claims: Vec<crate::engine::claim::Claim>,
    /// The options it was mounted with (a repeated request must match).
    #[serde(default)]
    pub options: crate::engine::types::MountOptions,
    /// Why it is quarantined, when it is.
    #[serde(default)]
    pub quarantine: Option<String>,
    /// Consumers of the volume's tree (bind mounts at their paths).
    #[serde(default)]
    pub publications: Vec<crate::engine::publish::Publication>,
    /// The sources as requested (without secrets): a repeated request with
    /// a presentation is compared with these.
    #[serde(default)]
    pub sources: Vec<crate::engine::types::DeviceSource>,
    /// The kernel's boot id when the record was made: a record from an
    /// earlier boot describes mounts, loop devices and sessions that are
    /// gone (and whose ids the kernel may have handed out again).
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// The name and claims of a record that does not decode whole.
fn claims_only(key: &str, bytes: &[u8]) -> Option<VolumeRecord> {
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        claims: Vec<crate::engine::claim::Claim>,
    }
    let c: Claims = serde_json::from_slice(bytes).ok()?;
    let mut r = VolumeRecord::new(key, Vec::new(), false);
    r.claims = c.claims;
    r.phase = Phase::Quarantined;
    Some(r)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), if readable.
pub fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl VolumeRecord {
    /// True when the record was made before the host last started: its
    /// mounts, loop devices, activations and sessions did not survive.
    pub fn from_earlier_boot(&self) -> bool {
        match (&self.boot_id, current_boot_id()) {
            (Some(then), Some(now)) => *then != now,
            _ => false,
        }
    }

    /// A new record in phase `Mounting`, before its first step.
    pub fn new(name: &str, devices: Vec<PathBuf>, read_only: bool) -> Self {
        Self {
            name: name.to_string(),
            devices,
            read_only,
            phase: Phase::Mounting,
            steps: Vec::new(),
            manifest: None,
            claims: Vec::new(),
            options: Default::default(),
            quarantine: None,
            publications: Vec::new(),
            sources: Vec::new(),
            boot_id: current_boot_id(),
        }
    }
}

/// Handle on the state database.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// Uses the database at `path`, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Db {
                path: path.to_path_buf(),
                msg: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let s = Self {
            path: path.to_path_buf(),
        };
        s.with_db(|db| {
            let tx = db.begin_write().map_err(|e| s.err(e))?;
            tx.open_table(VOLUMES).map_err(|e| s.err(e))?;
            tx.commit().map_err(|e| s.err(e))
        })?;
        Ok(s)
    }

    /// A file beside the database (`<db>.<suffix>`), for host-wide locks
    /// that belong to this state.
    pub fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".");
        p.push(suffix);
        PathBuf::from(p)
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            msg: e.to_string(),
        }
    }

    /// Waits for this process's turn at the database: an exclusive flock on
    /// `<db>.lock`, held for one transaction. Waiting in the kernel sleeps
    /// and wakes in turn; polling redb's own lock alone starved some of 8
    /// concurrent `goldmount mount` processes past the deadline (lab).
    fn take_turn(&self) -> Result<std::fs::File, StateError> {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| self.err(format!("cannot open {}: {e}", p.to_string_lossy())))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.err(format!("cannot lock {}: {e}", p.to_string_lossy())))?;
        Ok(f)
    }

    /// Opens the database for one operation, in turn with other goldmount
    /// processes (each holds it only for a transaction); still retries
    /// while something else has it open.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let _turn = self.take_turn()?;
        let mut delay = Duration::from_millis(5);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Database::create(&self.path) {
                Ok(db) => return f(&db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// Reads one volume.
    pub fn get(&self, name: &str) -> Result<Option<VolumeRecord>, StateError> {
        self.with_db(|db| {
            let tx = db.begin_read().map_err(|e| self.err(e))?;
            let t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
            match t.get(name).map_err(|e| self.err(e))? {
                Some(v) => self.decode(name, v.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<VolumeRecord, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Record {
            path: self.path.clone(),
            key: key.to_string(),
            msg: e.to_string(),
        })
    }

    /// Writes (creates or replaces) one volume, durably.
    pub fn put(&self, rec: &VolumeRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        self.with_db(|db| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
                t.insert(rec.name.as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Writes `rec` only if `check` accepts every record stored now — the
    /// read and the write in one transaction under the store's lock, so
    /// that two processes cannot both pass the check (one clone, one
    /// claim). `Ok(Err(e))` when the check refused; nothing was written.
    pub fn put_if<E>(
        &self,
        rec: &VolumeRecord,
        check: impl FnOnce(&[VolumeRecord]) -> Result<(), E>,
    ) -> Result<Result<(), E>, StateError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        self.with_db(|db| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
                let mut all = Vec::new();
                for item in t.iter().map_err(|e| self.err(e))? {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    match self.decode(k.value(), v.value()) {
                        Ok(r) => all.push(r),
                        Err(e) => {
                            // Its claims still count: a record this version
                            // cannot read whole (a newer field, a damaged
                            // step) must not let a second writer in. If
                            // even they are unreadable, fail closed.
                            let r = claims_only(k.value(), v.value()).ok_or_else(|| {
                                StateError::Db {
                                    path: self.path.clone(),
                                    msg: format!(
                                        "{e}; its claims cannot be read either, so no claim can be checked against it: inspect that record (goldmount list --json) and remove the volume's leftovers by hand"
                                    ),
                                }
                            })?;
                            tracing::warn!(error = %e, "state record unreadable; its claims still count");
                            all.push(r);
                        }
                    }
                }
                if let Err(refused) = check(&all) {
                    return Ok(Err(refused));
                }
                t.insert(rec.name.as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(Ok(()))
        })
    }

    /// Forgets a volume.
    pub fn delete(&self, name: &str) -> Result<(), StateError> {
        self.with_db(|db| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
                t.remove(name).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, StateError> {
        self.with_db(|db| {
            let tx = db.begin_read().map_err(|e| self.err(e))?;
            let t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                match self.decode(k.value(), v.value()) {
                    Ok(r) => out.push(r),
                    // One unreadable record must not block every other volume.
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable state record"),
                }
            }
            Ok(out)
        })
    }

    /// Every device goldmount has taken over for any volume (LUNs, their
    /// partition loops, the PVs it imported). They are clones: the host's LVM
    /// devices file must never list them, and an active LV on them is ours,
    /// not the host's.
    pub fn clone_devices(&self) -> Result<Vec<PathBuf>, StateError> {
        let mut devs = Vec::new();
        for rec in self.list()? {
            devs.extend(rec.devices.iter().cloned());
            for s in rec.steps {
                match s.action {
                    Action::ImportVg { devices, .. } => devs.extend(devices),
                    Action::AttachLoop {
                        device: Some(d), ..
                    } => devs.push(d),
                    _ => {}
                }
            }
        }
        devs.sort();
        devs.dedup();
        Ok(devs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s/state.redb");
        let s = StateStore::open(&p).unwrap();
        let mut rec = VolumeRecord::new("v1", vec!["/dev/loop9".into()], false);
        rec.steps.push(Step {
            action: Action::MakeDir {
                root: "/r".into(),
                path: "/x".into(),
            },
            done: false,
        });
        s.put(&rec).unwrap();
        let s2 = StateStore::open(&p).unwrap();
        assert_eq!(s2.get("v1").unwrap().unwrap(), rec);
        assert_eq!(s2.list().unwrap().len(), 1);
        s2.delete("v1").unwrap();
        assert!(s.get("v1").unwrap().is_none());
    }

    fn put_raw(s: &StateStore, key: &str, bytes: &[u8]) {
        s.with_db(|db| {
            let tx = db.begin_write().map_err(|e| s.err(e))?;
            {
                let mut t = tx.open_table(VOLUMES).map_err(|e| s.err(e))?;
                t.insert(key, bytes).map_err(|e| s.err(e))?;
            }
            tx.commit().map_err(|e| s.err(e))
        })
        .unwrap();
    }

    #[test]
    fn an_unreadable_record_still_holds_its_claims() {
        use crate::engine::claim::{check, Claim, DataId};
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let held = Claim {
            id: DataId::Lun {
                wwid: "36001405aa".into(),
            },
            offset: 0,
            len: u64::MAX,
            read_only: false,
            via: "/dev/sdx".into(),
        };
        // A record from a newer goldmount: a step this version cannot read.
        let raw = serde_json::json!({
            "name": "newer", "phase": "mounted", "steps": [{"action": {"future_step": {}}, "done": true}],
            "claims": [held],
        });
        put_raw(&s, "newer", raw.to_string().as_bytes());
        let mut rec = VolumeRecord::new("mine", vec![], false);
        rec.claims.push(Claim {
            via: "/dev/sdy".into(),
            ..held.clone()
        });
        let wanted = rec.claims.clone();
        let refused = s.put_if(&rec, |all| check(&wanted, "mine", all)).unwrap();
        let e = refused.unwrap_err();
        assert!(e.message.contains("newer"), "{}", e.message);
        assert!(s.get("mine").unwrap().is_none());
        // Not even the claims readable: fail closed, naming the store.
        put_raw(&s, "broken", b"{not json");
        assert!(s.put_if(&rec, |all| check(&wanted, "mine", all)).is_err());
        assert!(s.get("mine").unwrap().is_none());
    }

    #[test]
    fn concurrent_writers_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.redb");
        StateStore::open(&p).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let s = StateStore::open(&p).unwrap();
                    for n in 0..25 {
                        let mut rec = VolumeRecord::new(
                            &format!("v{i}"),
                            vec![format!("/dev/loop{i}").into()],
                            false,
                        );
                        rec.steps = vec![
                            Step {
                                action: Action::MakeDir {
                                    root: "/r".into(),
                                    path: "/x".into(),
                                },
                                done: true,
                            };
                            n
                        ];
                        s.put(&rec).unwrap();
                        assert_eq!(s.get(&rec.name).unwrap().unwrap(), rec);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(StateStore::open(&p).unwrap().list().unwrap().len(), 8);
    }
}
