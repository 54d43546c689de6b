//! Typed errors of the crate. Each message is complete on its own (the
//! tool's command line and stderr included), so a caller can print it
//! with `to_string()` or wrap it in context without losing anything.

use std::path::PathBuf;

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ZfsError>;

/// Everything that can go wrong importing or exporting a clone's pool.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// A pool of that name is imported already: a second one cannot be.
    #[error("a ZFS pool named {name:?} is already imported on this host (zpool list); choose another name or export it first")]
    NameInUse {
        /// The colliding name.
        name: String,
    },
    /// The name breaks ZFS's pool naming rules.
    #[error("{name:?} is not a valid ZFS pool name: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A dataset or the pool is in use; nothing was forced.
    #[error("{what} is busy; holders: {}; close them or use force", holders_text(.holders))]
    Busy {
        /// The busy dataset, mount point or pool.
        what: String,
        /// Processes using it, as `pid N (comm): how`.
        holders: Vec<String>,
    },
    /// The clone's GUID is open on this host and giving the clone a new GUID
    /// before its import (libzpool, `goldmount-zfs-reguid`) failed.
    #[error("pool GUID {guid} is already open on this host as pool {holder:?} (OpenZFS cannot open two pools with one GUID, openzfs/zfs#11404), and giving the clone a new GUID before its import failed: {why}")]
    OfflineReguid {
        /// The clone's pool GUID.
        guid: u64,
        /// The imported pool holding it.
        holder: String,
        /// What the helper said.
        why: String,
    },
    /// Export was asked for a pool goldmount did not import.
    #[error("pool {name:?} has no altroot, so goldmount did not import it (it imports every clone with -R); refusing to export a host pool")]
    NotOurs {
        /// The pool.
        name: String,
    },
    /// The devices hold no importable pool with that GUID.
    #[error("no importable ZFS pool with GUID {guid} on {devices}: {stderr}")]
    NotFound {
        /// The pool GUID asked for.
        guid: u64,
        /// The devices searched.
        devices: String,
        /// What zpool said.
        stderr: String,
    },
    /// An import was asked for with no device to read the pool from.
    #[error("import of pool {guid}: no devices given; pass the clone's LUNs (or their partitions) that carry the pool")]
    NoDevices {
        /// The pool GUID asked for.
        guid: u64,
    },
    /// A clone device is missing or is not a block device nor a file.
    #[error("clone device {}: expected a block device or an image file, found {found}", .path.display())]
    BadDevice {
        /// The device path given.
        path: PathBuf,
        /// What is there instead (or the OS error reading it).
        found: String,
    },
    /// A directory could not be created.
    #[error("creating {what} {}: {error}", .path.display())]
    CreateDir {
        /// What the directory is for (`altroot`).
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A `zpool` / `zfs` / `umount` run failed.
    #[error("{what}: {error}")]
    Tool {
        /// What was being done (`importing pool 42 as tank-v1`).
        what: String,
        /// The tool's failure: command line, status and stderr.
        error: toolrun::ToolError,
    },
    /// A tool printed something this crate does not understand.
    #[error("unexpected `{tool}` output line {line:?}: expected {expected}")]
    Parse {
        /// The command (`zpool list`).
        tool: &'static str,
        /// The line.
        line: String,
        /// What the line should look like.
        expected: &'static str,
    },
    /// The imported pool is not the one asked for.
    #[error("imported pool {name} has GUID {found}, expected {expected}; it is exported again")]
    WrongPool {
        /// The new pool name.
        name: String,
        /// GUID asked for.
        expected: u64,
        /// GUID zpool shows.
        found: u64,
    },
    /// `zpool list NAME` succeeded but did not show the pool.
    #[error("zpool list did not show pool {name} right after it was imported")]
    NotListed {
        /// The pool name.
        name: String,
    },
    /// `zpool reguid` returned success but the GUID is the old one.
    #[error("zpool reguid {name} left the GUID at {guid}")]
    ReguidUnchanged {
        /// The pool name.
        name: String,
        /// The unchanged GUID.
        guid: u64,
    },
    /// Mounting a dataset failed.
    #[error("mounting dataset {dataset} (nosuid,nodev unless allowed) on {}: {error}", .target.display())]
    Mount {
        /// The dataset.
        dataset: String,
        /// The directory it was to be mounted on (resolved inside the altroot).
        target: PathBuf,
        /// What the kernel said.
        error: Box<hostfs::mountfd::MountError>,
    },
    /// The altroot, or a mount point inside it, could not be resolved or
    /// created.
    #[error("{what}: {error}")]
    Path {
        /// What was being resolved (`mount point of tank/data`).
        what: String,
        /// Why it failed.
        error: hostfs::clonefs::PathError,
    },
    /// A step after `zpool import` failed, and so did exporting the pool
    /// again: the pool is still imported and needs a manual export.
    #[error("{error}; and exporting {name} again failed too: {export}; run `zpool export {name}` once its holders are gone")]
    ExportAfterFailure {
        /// The pool left imported.
        name: String,
        /// Why the import was undone.
        error: Box<ZfsError>,
        /// Why the export failed.
        export: Box<ZfsError>,
    },
}

/// What sort of failure a [`ZfsError`] is, for a caller that maps errors to
/// its own kinds (the engine's Conflict / Invalid / NotFound / Internal)
/// without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// It collides with what is on the host: a pool name or GUID in use,
    /// a busy dataset, a pool that is not goldmount's.
    Conflict,
    /// The request is wrong (a name ZFS rejects, no or odd devices).
    Invalid,
    /// The devices hold no such pool.
    NotFound,
    /// Anything else (a tool failed, output not understood).
    Internal,
}

impl ZfsError {
    /// The class of this error; an export that failed after a failed step
    /// has the class of the step's failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            ZfsError::NameInUse { .. }
            | ZfsError::OfflineReguid { .. }
            | ZfsError::Busy { .. }
            | ZfsError::NotOurs { .. }
            | ZfsError::WrongPool { .. } => ErrorClass::Conflict,
            ZfsError::InvalidName { .. }
            | ZfsError::NoDevices { .. }
            | ZfsError::BadDevice { .. } => ErrorClass::Invalid,
            ZfsError::NotFound { .. } => ErrorClass::NotFound,
            ZfsError::ExportAfterFailure { error, .. } => error.class(),
            ZfsError::Mount { error, .. } => match **error {
                hostfs::mountfd::MountError::Busy { .. } => ErrorClass::Conflict,
                _ => ErrorClass::Internal,
            },
            ZfsError::CreateDir { .. }
            | ZfsError::Tool { .. }
            | ZfsError::Parse { .. }
            | ZfsError::NotListed { .. }
            | ZfsError::ReguidUnchanged { .. }
            | ZfsError::Path { .. } => ErrorClass::Internal,
        }
    }
}

/// The holders list of a [`ZfsError::Busy`] message (also used in reports).
pub(crate) fn holders_text(h: &[String]) -> String {
    if h.is_empty() {
        "none found in /proc (kernel users, e.g. a nested mount or an NFS export?)".to_string()
    } else {
        h.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_error_names_holders() {
        let e = ZfsError::Busy {
            what: "dataset c/data at /vol/c/data".into(),
            holders: vec!["pid 7 (sh): cwd /vol/c/data".into()],
        };
        let s = e.to_string();
        assert!(s.contains("pid 7 (sh)") && s.contains("c/data"), "{s}");
        let none = ZfsError::Busy {
            what: "pool p".into(),
            holders: vec![],
        };
        assert!(none.to_string().contains("none found in /proc"), "{none}");
    }

    #[test]
    fn classes() {
        let busy = ZfsError::Busy {
            what: "pool p".into(),
            holders: vec![],
        };
        assert_eq!(busy.class(), ErrorClass::Conflict);
        let not_ours = ZfsError::NotOurs { name: "p".into() };
        assert_eq!(not_ours.class(), ErrorClass::Conflict);
        let wrapped = ZfsError::ExportAfterFailure {
            name: "p".into(),
            error: Box::new(ZfsError::OfflineReguid {
                guid: 1,
                holder: "q".into(),
                why: "libzpool missing".into(),
            }),
            export: Box::new(busy),
        };
        assert_eq!(wrapped.class(), ErrorClass::Conflict);
        assert_eq!(ZfsError::NoDevices { guid: 1 }.class(), ErrorClass::Invalid);
        assert_eq!(
            ZfsError::NotListed { name: "p".into() }.class(),
            ErrorClass::Internal
        );
    }

    #[test]
    fn tool_errors_carry_the_command_and_stderr() {
        let err = toolrun::run(
            "sh",
            &["-c", "echo nope >&2; exit 3"],
            toolrun::DEFAULT_TIMEOUT,
        )
        .err()
        .map(|error| ZfsError::Tool {
            what: "importing pool 42 as tank-v1".into(),
            error,
        });
        let s = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(s.starts_with("importing pool 42 as tank-v1: "), "{s}");
        assert!(s.contains("nope") && s.contains("sh -c"), "{s}");
    }
}
