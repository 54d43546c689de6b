//! The plugin's own persisted state: which Docker volumes exist, the clone
//! and presentation behind each, and how many mounts each Docker mount ID
//! holds. Docker forgets volumes a restarted plugin no longer lists, so
//! this survives restarts. The engine's state store has only its volume
//! table, so this is a redb file of its own beside it
//! (`<state dir>/docker-<plugin>.redb`), held open by one process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{PluginError, Result};

const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("docker_volumes");

/// Where a volume is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recorded; the clone and its presentation are being made (a crash
    /// here is finished by the next create or removed by `docker volume rm`).
    Creating,
    /// The clone is presented to this host.
    Ready,
    /// Being taken down (a crash here is finished by the next remove).
    Removing,
}

/// One Docker volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The name Docker knows it by (`pg1` or `pg1@default`).
    pub docker_name: String,
    /// The part before `@`.
    pub base: String,
    /// The resolved profile.
    pub profile: String,
    /// Its settings when the volume was created (what the clone was made
    /// with and every mount uses); none in records from before profiles.
    #[serde(default)]
    pub settings: Option<crate::profile::ProfileSettings>,
    /// The gold copy it was cloned from.
    pub gold: String,
    /// The point in time asked for, if any.
    pub point_in_time: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
    /// The clone's name on the appliance.
    pub clone: String,
    /// The host the clone is presented to (the appliance's name).
    pub host: String,
    /// The presentation document, as the appliance returned it.
    pub presentation: Option<serde_json::Value>,
    /// The engine's volume name.
    pub engine_volume: String,
    /// Where the tree is published for Docker.
    pub mountpoint: PathBuf,
    /// Mounts held, per Docker mount ID.
    pub mounts: BTreeMap<String, u32>,
    /// The boot the mounts were counted in (mounts do not survive a reboot).
    pub boot_id: Option<String>,
    /// Where it is.
    pub phase: Phase,
    /// Unix seconds of the create.
    pub created: u64,
}

impl Record {
    /// True while some Docker mount ID holds it.
    pub fn in_use(&self) -> bool {
        self.mounts.values().any(|n| *n > 0)
    }
}

/// The open store.
pub struct Store {
    path: PathBuf,
    db: Database,
}

impl Store {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |m: String| PluginError::Store {
            path: path.to_path_buf(),
            message: m,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| err(e.to_string()))?;
        let s = Self {
            path: path.to_path_buf(),
            db,
        };
        let tx = s.db.begin_write().map_err(|e| s.err(e))?;
        tx.open_table(VOLUMES).map_err(|e| s.err(e))?;
        tx.commit().map_err(|e| s.err(e))?;
        Ok(s)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> PluginError {
        PluginError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The record of `docker_name`.
    pub fn get(&self, docker_name: &str) -> Result<Option<Record>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
        match t.get(docker_name).map_err(|e| self.err(e))? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| self.err(format!("record {docker_name} is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    /// Writes `rec` (durably, before the step it announces is taken).
    pub fn put(&self, rec: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
            t.insert(rec.docker_name.as_str(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Forgets `docker_name`.
    pub fn delete(&self, docker_name: &str) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
            t.remove(docker_name).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every record, by Docker name.
    pub fn list(&self) -> Result<Vec<Record>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(VOLUMES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let rec: Record = serde_json::from_slice(v.value())
                .map_err(|e| self.err(format!("record {} is unreadable: {e}", k.value())))?;
            out.push(rec);
        }
        Ok(out)
    }
}
