//! Clone-safe ZFS pool import and export.
//!
//! A clone carries its gold pool's name and pool GUID, and the gold pool (or
//! another clone of it) may be imported on this host already. So a clone's
//! pool is imported by GUID under a new, unique name, reading only the clone's
//! own devices (`-d DEV` for each, never a scan of `/dev`), without automatic
//! mounts (`-N`), under an altroot inside the volume path (`-R`) and without
//! touching the host's cache file (`cachefile=none`). Its datasets are then
//! mounted one by one by the caller through [`mount`]: each mount point
//! resolved inside the altroot by fd (a clone's `mountpoint` property or
//! symlink cannot lead out of it), `nosuid,nodev` unless allowed — never by
//! `zfs mount`, which follows the clone's symlinks and honours its setuid
//! bits and device nodes.
//!
//! The pool GUID and name come from fsdetect's `zfs_member` signature:
//! `UUID` is the pool GUID in decimal, `LABEL` the pool name.
//!
//! Order a caller uses: [`unique_pool_name`] → [`import_clone`] (which checks
//! [`ensure_name_free`] and the GUID itself) → [`mount::mount_all`] (or
//! [`mount::resolve_target`] + [`mount::mount_dataset`] per dataset, to
//! journal each) → on teardown the mounts undone, then [`export_if_ours`]
//! (export only the pool with the recorded GUID) or [`export`]. Every
//! tool runs through the workspace's `toolrun` (argument vector, timeout that
//! kills the process group, stderr in the error); every failure is a
//! [`ZfsError`].

pub mod error;
pub mod export;
mod holders;
pub mod import;
pub mod list;
pub mod mount;
pub mod name;
pub mod offline;
mod run;

pub use error::{ErrorClass, Result, ZfsError};
pub use export::{export, export_if_ours, ExportOutcome, ExportReport};
pub use import::{ensure_name_free, import_clone, Dataset, ImportedPool};
pub use list::imported_pools;
pub use mount::{mount_all, mount_dataset, resolve_target, MountFlags};
pub use name::unique_pool_name;
