//! Presentation backends: how a clone image becomes a disk a host can see.
//!
//! The service decides *what* is presented (and allocates LUN numbers); a
//! [`Presenter`] only makes the kernel side match. Every method is idempotent
//! because the same calls re-apply the stored state after a restart.

pub mod iscsi;
pub mod loopback;

use crate::error::Error;
use crate::model::{Clone, Host, Presented};

/// What to present: the clone, the host, the LUN number the service chose,
/// and what was presented before (after a restart), if anything.
#[derive(Debug)]
pub struct PresentRequest<'a> {
    /// The clone to present.
    pub clone: &'a Clone,
    /// The host to present it to.
    pub host: &'a Host,
    /// LUN number allocated by the service (transports without LUNs ignore it).
    pub lun: u32,
    /// The stored result of an earlier present of the same clone, if any.
    pub previous: Option<&'a Presented>,
}

/// A way of exposing clone images to hosts.
pub trait Presenter: Send + Sync {
    /// `"iscsi"` or `"loop"`, as reported in the API.
    fn transport(&self) -> &'static str;

    /// Brings up whatever all presentations share (e.g. the iSCSI target and
    /// the ACLs of all registered hosts). Called at start and on host changes.
    fn prepare(&self, hosts: &[Host]) -> Result<(), Error>;

    /// Prepares for one host being registered (its ACLs); a failure undoes
    /// the registration. By default the same as [`Presenter::prepare`] for it.
    fn prepare_host(&self, host: &Host) -> Result<(), Error> {
        self.prepare(std::slice::from_ref(host))
    }

    /// Makes `req.clone` visible to `req.host`; returns the details the host
    /// needs to find the disk. Idempotent.
    fn present(&self, req: &PresentRequest<'_>) -> Result<Presented, Error>;

    /// Takes a presentation away. Absent kernel objects are not an error.
    fn unpresent(&self, clone: &Clone, presented: &Presented) -> Result<(), Error>;

    /// Devices on this machine that still hold the clone's image after an
    /// unpresent (a loop device whose detach the kernel deferred because it
    /// is open). Deleting the image then would unlink a file in use.
    fn still_attached(&self, _clone: &Clone) -> Vec<String> {
        Vec::new()
    }
}
