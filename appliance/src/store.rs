//! Persistent state in an embedded `redb` file: one table per object kind,
//! keyed by name, values JSON. JSON keeps the file inspectable and lets
//! records gain optional fields without a migration.

use crate::error::Error;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// The object kinds the store keeps, one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`crate::model::Host`] by host name.
    Host,
    /// [`crate::model::Gold`] by gold copy name.
    Gold,
    /// [`crate::model::Clone`] by clone name.
    Clone,
    /// [`crate::model::Presentation`] by clone name.
    Presentation,
    /// [`crate::model::Mount`] by volume name.
    Mount,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Host,
        Kind::Gold,
        Kind::Clone,
        Kind::Presentation,
        Kind::Mount,
    ];

    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(match self {
            Kind::Host => "hosts",
            Kind::Gold => "gold_copies",
            Kind::Clone => "clones",
            Kind::Presentation => "presentations",
            Kind::Mount => "mounts",
        })
    }
}

/// Handle on the state file. Only one process may open it at a time (redb
/// locks it), which keeps the CLI from racing a running server.
pub struct Store {
    db: Database,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

impl Store {
    /// Opens (or creates) the state file and its tables.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Store(format!(
                "{} is already open in another process (is `goldmount-appliance serve` \
                 running on this data directory? use --server URL then)",
                path.display()
            )),
            e => Error::Store(format!("opening {}: {e}", path.display())),
        })?;
        let tx = db.begin_write().map_err(store_err)?;
        for k in Kind::ALL {
            tx.open_table(k.table()).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)?;
        Ok(Store { db })
    }

    /// Reads one record, `None` if absent.
    pub fn get<T: DeserializeOwned>(&self, kind: Kind, key: &str) -> Result<Option<T>, Error> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(kind.table()).map_err(store_err)?;
        match t.get(key).map_err(store_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| Error::Store(format!("decoding {kind:?} {key:?}: {e}"))),
            None => Ok(None),
        }
    }

    /// All records of a kind, ordered by name.
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, Error> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(kind.table()).map_err(store_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store_err)? {
            let (k, v) = item.map_err(store_err)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| Error::Store(format!("decoding {kind:?} {:?}: {e}", k.value())))?,
            );
        }
        Ok(out)
    }

    /// Inserts or replaces a record (durably committed on return).
    pub fn put<T: Serialize>(&self, kind: Kind, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(store_err)?;
        let tx = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = tx.open_table(kind.table()).map_err(store_err)?;
            t.insert(key, bytes.as_slice()).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }

    /// Removes a record; absent is not an error.
    pub fn delete(&self, kind: Kind, key: &str) -> Result<(), Error> {
        let tx = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = tx.open_table(kind.table()).map_err(store_err)?;
            t.remove(key).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn roundtrip_and_reopen() {
        let dir = std::env::temp_dir().join(format!("gm-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(Kind::Host, "b", &2u32).unwrap();
            s.put(Kind::Host, "a", &1u32).unwrap();
            s.put(Kind::Clone, "a", &9u32).unwrap();
            s.delete(Kind::Clone, "a").unwrap();
            s.delete(Kind::Clone, "zz").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.list::<u32>(Kind::Host).unwrap(), vec![1, 2]);
        assert_eq!(s.get::<u32>(Kind::Clone, "a").unwrap(), None);
        assert_eq!(s.get::<u32>(Kind::Host, "b").unwrap(), Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
