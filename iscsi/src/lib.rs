//! The iSCSI initiator side of goldmount, on top of open-iscsi.
//!
//! - [`initiator`]: the host's initiator IQN, cross-checked with sessions;
//! - [`inventory`]: sessions, ifaces and node records, read through
//!   open-iscsi's `libopeniscsiusr` ([`usr`], our bindgen bindings, loaded at
//!   run time) with [`sysfs`] / `iscsiadm` output as the fallback;
//! - [`adm`]: SendTargets discovery, CHAP, login/logout on one or several
//!   portals via `iscsiadm`, always with `node.session.scan=manual`, and
//!   logout only when no disk of the session is in use ([`inuse`]);
//! - [`sysfs::Sysfs::scan_lun`]: the targeted scan of one LUN.
//!
//! Nothing here prints: errors are [`IscsiError`], logs go to `tracing`.

pub mod adm;
mod cmd;
pub mod error;
pub mod exitcode;
pub mod initiator;
pub mod inuse;
pub mod inventory;
pub mod model;
pub mod sysfs;
pub mod usr;

pub use cmd::{iscsiadm_program, DEFAULT_TIMEOUT};
pub use error::IscsiError;
pub use model::{Iface, Node, Portal, Session, Source};
