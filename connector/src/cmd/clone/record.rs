//! What `goldmount clone` created on the appliance for a volume it mounted
//! in-process (no goldmountd): the clone, its presentation, the request —
//! one small JSON file per volume beside the engine's state store
//! (`<state>.clones/<volume>.json`, the engine's sidecar), written before
//! each appliance step so that `unclone`, or the same `clone` again after
//! a crash, finds exactly what to finish or undo. The engine's own volume
//! record stays the one truth about the host side.

use std::io::Write;
use std::path::{Path, PathBuf};

use connector::engine::Engine;
use connector::profile::{ProfileSettings, DEFAULT_PROFILE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CloneError;

/// How far a clone made by the CLI got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Steps are being taken (or a run stopped half-way: the same request
    /// resumes it, `unclone` undoes it).
    Creating,
    /// Cloned, presented, mounted (and published when a path was asked).
    Mounted,
    /// A failed run could not undo everything (see `left`).
    Failed,
}

/// Step durations of the run that mounted the volume, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Creating the clone on the appliance.
    pub clone_ms: u64,
    /// Presenting it to this host.
    pub present_ms: u64,
    /// The host side: wait for the LUN, discover, import, mount, publish.
    pub mount_ms: u64,
    /// From the first appliance step to mounted.
    pub total_ms: u64,
}

/// The record of one volume made by `goldmount clone` in-process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneRecord {
    /// The appliance's base URL.
    pub appliance: String,
    /// The volume on this host.
    pub volume: String,
    /// The gold copy asked for.
    pub gold: String,
    /// This host's name on the appliance.
    pub host: String,
    /// The clone made for the volume.
    pub clone: String,
    /// Where the tree is published, if asked.
    pub path: Option<PathBuf>,
    /// Mounted read-only.
    pub read_only: bool,
    /// The storage profile it was made with (a record from before
    /// profiles: `default`).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// That profile's settings when it was made (the clone's class, the
    /// mount settings): a resumed run uses these, not the profile's now.
    #[serde(default)]
    pub settings: ProfileSettings,
    /// The presentation document, once presented.
    pub presentation: Option<Value>,
    /// How far it got.
    pub phase: Phase,
    /// What a failed run could not undo.
    #[serde(default)]
    pub left: Vec<String>,
    /// The durations of the run that mounted it.
    #[serde(default)]
    pub timings: Timings,
}

fn default_profile() -> String {
    DEFAULT_PROFILE.to_string()
}

/// The directory of the records: a sidecar of the engine's state store.
fn dir(engine: &Engine) -> PathBuf {
    engine.store().sidecar("clones")
}

fn file(engine: &Engine, volume: &str) -> PathBuf {
    dir(engine).join(format!("{volume}.json"))
}

fn store_err(path: &Path, what: &str, e: impl std::fmt::Display) -> CloneError {
    CloneError::Record {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

/// The record of `volume`, if `goldmount clone` made it in-process.
pub fn load(engine: &Engine, volume: &str) -> Result<Option<CloneRecord>, CloneError> {
    let p = file(engine, volume);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_err(&p, "cannot read it", e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| store_err(&p, "not a clone record (damaged?)", e))
}

/// Writes the record durably (a new file renamed over the old, synced).
pub fn save(engine: &Engine, rec: &CloneRecord) -> Result<(), CloneError> {
    let d = dir(engine);
    std::fs::create_dir_all(&d).map_err(|e| store_err(&d, "cannot create it", e))?;
    let p = file(engine, &rec.volume);
    let tmp = d.join(format!(".{}.json.tmp", rec.volume));
    let text = serde_json::to_vec_pretty(rec).map_err(|e| store_err(&p, "cannot encode", e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| store_err(&tmp, "cannot create", e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| store_err(&tmp, "cannot write", e))?;
    std::fs::rename(&tmp, &p).map_err(|e| store_err(&p, "cannot replace", e))?;
    if let Ok(dirf) = std::fs::File::open(&d) {
        let _ = dirf.sync_all();
    }
    Ok(())
}

/// Forgets the record (everything it names is gone).
pub fn remove(engine: &Engine, volume: &str) -> Result<(), CloneError> {
    let p = file(engine, volume);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(store_err(&p, "cannot remove it", e)),
    }
}
