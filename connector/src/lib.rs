//! goldmount's host-side pipeline as a library: probe a LUN, map its
//! partitions, assemble the original mount tree, mount clone-safely, journal
//! every step, and tear it all down. The `goldmount` binary is a thin CLI over it.

pub mod config;
pub mod discover;
pub mod fstab;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod mounter;
pub mod mountinfo;
pub mod partmap;
pub mod state;
pub mod tools;
pub mod volume;
pub mod wwid;
pub mod zfs;
