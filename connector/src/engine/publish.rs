//! Publications: consumers of a volume's tree. Each is a recursive bind of
//! the whole tree (the original host's `/`, `/boot`, `/srv/data`…) at a
//! caller's path — "mount it at /media/pgsql1", Docker's `Mount(ID)`, CSI's
//! `NodePublishVolume` — with a reference count per consumer id, recorded in
//! the volume's state before it is made.

use std::path::{Path, PathBuf};

use hostfs::bind::{self, Target};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, EngineResult, ErrorKind};
use super::types::{Outcome, UnmountReport, VolumeName};
use crate::config::Config;
use crate::state::{Phase, StateStore, VolumeRecord};

/// One consumer of a volume's tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Publication {
    /// The consumer's id (Docker's mount ID, a CSI target, a name).
    pub id: String,
    /// Where the tree is bound.
    pub target: PathBuf,
    /// Every mount of the publication is read-only.
    pub read_only: bool,
    /// How many times this consumer asked for it (`docker cp` reuses an ID).
    pub refs: u32,
    /// Directories made for the target (removed when it goes).
    pub created_dirs: Vec<PathBuf>,
    /// The kernel's ids of the bind mounts (top first), once bound.
    pub mount_ids: Vec<u32>,
}

fn forbidden(cfg: &Config) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = bind::DEFAULT_FORBIDDEN.iter().map(PathBuf::from).collect();
    v.push(cfg.volumes_root.clone());
    v.push(cfg.run_dir.clone());
    v
}

fn mounted(store: &StateStore, volume: &VolumeName) -> EngineResult<VolumeRecord> {
    let rec = store.get(volume.as_str())?.ok_or_else(|| {
        EngineError::new(
            ErrorKind::NotFound,
            format!("no volume {volume} on this host"),
        )
    })?;
    if rec.phase != Phase::Mounted {
        return Err(EngineError::conflict(format!(
            "volume {volume} is not mounted ({:?})",
            rec.phase
        )));
    }
    Ok(rec)
}

/// See [`Engine::publish`](super::Engine::publish). The caller holds the volume lock.
pub fn publish(
    store: &StateStore,
    cfg: &Config,
    volume: &VolumeName,
    id: &str,
    target: &Path,
    read_only: bool,
) -> EngineResult<Outcome<Publication>> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
        return Err(EngineError::invalid(format!(
            "invalid publication id {id:?}"
        )));
    }
    let t =
        Target::parse(target, &forbidden(cfg)).map_err(|e| EngineError::invalid(e.to_string()))?;
    let mut rec = mounted(store, volume)?;
    let source = cfg.volumes_root.join(volume.as_str());
    if let Some(i) = rec.publications.iter().position(|p| p.id == id) {
        let p = &rec.publications[i];
        if p.target != t.path() || p.read_only != read_only {
            return Err(EngineError::conflict(format!(
                "consumer {id} already has volume {volume} at {}{}",
                p.target.display(),
                if p.read_only { " (read-only)" } else { "" }
            )));
        }
        if p.mount_ids.is_empty() {
            // A run died between recording this publication and recording
            // its bind: finish it (the caller never got an answer, so it is
            // still one reference) instead of answering a tree that is not
            // there.
            let found = binds_of(&source, &p.target);
            if !found.is_empty() {
                rec.publications[i].mount_ids = found;
                let out = rec.publications[i].clone();
                store.put(&rec)?;
                return Ok(Outcome::Created(out));
            }
            return bind_recorded(store, rec, i, volume, &source, &t, read_only);
        }
        rec.publications[i].refs += 1;
        let out = rec.publications[i].clone();
        store.put(&rec)?;
        return Ok(Outcome::Existing(out));
    }
    if let Some(p) = rec.publications.iter().find(|p| p.target == t.path()) {
        return Err(EngineError::conflict(format!(
            "{} already holds volume {volume} for consumer {}",
            t.path().display(),
            p.id
        )));
    }
    rec.publications.push(Publication {
        id: id.to_string(),
        target: t.path().to_path_buf(),
        read_only,
        refs: 1,
        created_dirs: Vec::new(),
        mount_ids: Vec::new(),
    });
    store.put(&rec)?;
    let last = rec.publications.len() - 1;
    bind_recorded(store, rec, last, volume, &source, &t, read_only)
}

/// Binds the tree for publication `i` of `rec`, already recorded (journal
/// first), and records its mounts; on failure the publication is dropped
/// from the record again.
fn bind_recorded(
    store: &StateStore,
    mut rec: VolumeRecord,
    i: usize,
    volume: &VolumeName,
    source: &Path,
    t: &Target,
    read_only: bool,
) -> EngineResult<Outcome<Publication>> {
    match bind::publish(source, t, read_only) {
        Ok(p) => {
            let publication = &mut rec.publications[i];
            for d in p.created_dirs {
                if !publication.created_dirs.contains(&d) {
                    publication.created_dirs.push(d);
                }
            }
            publication.mount_ids = p.mount_ids;
            let out = publication.clone();
            store.put(&rec)?;
            Ok(Outcome::Created(out))
        }
        Err(e) => {
            rec.publications.remove(i);
            store.put(&rec)?;
            let kind = match e {
                bind::BindError::NotEmpty { .. }
                | bind::BindError::MountPoint { .. }
                | bind::BindError::AlreadyPublished { .. } => ErrorKind::Conflict,
                bind::BindError::Sys { .. } => ErrorKind::Internal,
                _ => ErrorKind::Invalid,
            };
            Err(EngineError::new(
                kind,
                format!("publishing volume {volume} at {}: {e}", t.path().display()),
            ))
        }
    }
}

/// See [`Engine::unpublish`](super::Engine::unpublish). Returns the references left.
pub fn unpublish(
    store: &StateStore,
    cfg: &Config,
    volume: &VolumeName,
    id: &str,
    force: bool,
) -> EngineResult<Outcome<u32>> {
    let Some(mut rec) = store.get(volume.as_str())? else {
        return Ok(Outcome::Existing(0));
    };
    let Some(i) = rec.publications.iter().position(|p| p.id == id) else {
        return Ok(Outcome::Existing(0));
    };
    if rec.publications[i].refs > 1 {
        rec.publications[i].refs -= 1;
        let left = rec.publications[i].refs;
        store.put(&rec)?;
        return Ok(Outcome::Created(left));
    }
    let dir = cfg.volumes_root.join(volume.as_str());
    take_down(&dir, &rec.publications[i], force)?;
    rec.publications.remove(i);
    store.put(&rec)?;
    Ok(Outcome::Created(0))
}

/// Takes down the publications of `volume` that a killed run recorded but
/// never finished (no mount ids): whatever bind of the volume's own tree is
/// at their target, and the directories they made; a foreign mount there is
/// never touched. Returns their targets. Called by recovery with the
/// volume's lock held.
pub fn roll_back_unfinished(
    store: &StateStore,
    cfg: &Config,
    volume: &VolumeName,
) -> EngineResult<Vec<PathBuf>> {
    let Some(mut rec) = store.get(volume.as_str())? else {
        return Ok(Vec::new());
    };
    let dir = cfg.volumes_root.join(volume.as_str());
    let mut done = Vec::new();
    let mut i = 0;
    while i < rec.publications.len() {
        if rec.publications[i].mount_ids.is_empty() {
            take_down(&dir, &rec.publications[i], false)?;
            done.push(rec.publications.remove(i).target);
            store.put(&rec)?;
        } else {
            i += 1;
        }
    }
    Ok(done)
}

/// The mount ids of a bind of `volume_dir` at `target` and everything
/// under it — for a publication whose run died between recording it and
/// recording its mounts. Only a mount at the target that shows the volume
/// directory (same filesystem, same root inside it) qualifies.
fn binds_of(volume_dir: &Path, target: &Path) -> Vec<u32> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let Ok(st) = statx(
        CWD,
        volume_dir,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::MNT_ID,
    ) else {
        return Vec::new();
    };
    let table = mountinfo::current().unwrap_or_default();
    let Some(home) = table.iter().find(|m| u64::from(m.id) == st.stx_mnt_id) else {
        return Vec::new();
    };
    let Ok(rel) = volume_dir.strip_prefix(&home.mount_point) else {
        return Vec::new();
    };
    let root = home.root.join(rel);
    let Some(base) = table.iter().find(|m| {
        m.mount_point == target && (m.major, m.minor) == (home.major, home.minor) && m.root == root
    }) else {
        return Vec::new();
    };
    let mut ids = vec![base.id];
    let mut i = 0;
    while i < ids.len() {
        let parent = ids[i];
        ids.extend(table.iter().filter(|m| m.parent == parent).map(|m| m.id));
        i += 1;
    }
    ids
}

fn take_down(volume_dir: &Path, p: &Publication, force: bool) -> EngineResult<()> {
    let t = Target::parse::<PathBuf>(&p.target, &[])
        .map_err(|e| EngineError::internal(e.to_string()))?;
    let ids = if p.mount_ids.is_empty() {
        binds_of(volume_dir, &p.target)
    } else {
        p.mount_ids.clone()
    };
    bind::unpublish_expected(&t, &ids, &p.created_dirs, force).map_err(|e| {
        let kind = if matches!(e, bind::BindError::Busy { .. }) {
            ErrorKind::Conflict
        } else {
            ErrorKind::Internal
        };
        EngineError::new(kind, format!("taking down {}: {e}", p.target.display()))
            .with_hint("stop what uses it, or force it (lazy detach)")
    })?;
    Ok(())
}

/// Takes every publication of `rec` down (forced unmount of the volume).
pub fn take_down_all(
    store: &StateStore,
    dir: &Path,
    rec: &mut VolumeRecord,
    report: &mut UnmountReport,
) -> EngineResult<()> {
    while let Some(p) = rec.publications.last().cloned() {
        take_down(dir, &p, true)?;
        report.undone.push(format!(
            "took down the publication at {}",
            p.target.display()
        ));
        rec.publications.pop();
        store.put(rec)?;
    }
    Ok(())
}
