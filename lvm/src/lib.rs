//! LVM2 for goldmount: a pure-Rust reader of LVM2 on-disk metadata (to plan an
//! import before lvm2 runs) and clone-safe orchestration of the lvm2 tools
//! (`vgimportclone`, activation, deactivation) restricted to a clone's devices,
//! plus the host-side autoactivation guard that keeps clones away from LVM's
//! udev autoactivation.
//!
//! Order the connector calls things in (see README.md):
//! [`check_autoactivation_guard`] / [`install_autoactivation_guard`] once per
//! host → [`plan::plan_devices`] on the clone's PV devices → per VG,
//! [`import_clone`] → mount → on teardown [`deactivate`].

pub mod dm;
pub mod error;
pub mod guard;
pub mod import;
pub mod metadata;
pub mod plan;
pub mod run;
pub mod settings;
pub mod tool;

pub use error::{LvmError, Result};
pub use guard::{
    check_autoactivation_guard, install_autoactivation_guard, remove_autoactivation_guard,
    GuardStatus,
};
pub use import::{deactivate, import_clone, ImportOptions, ImportedLv, ImportedVg, Rename};
pub use metadata::{parse_metadata_text, read_pv, PvInfo, VgMetadata};
pub use plan::{plan_devices, Plan, VgPlan};
pub use tool::Lvm;
