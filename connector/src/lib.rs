//! goldmount's host-side engine as a library: probe a LUN, map its
//! partitions, assemble the original mount tree, mount clone-safely, journal
//! every step, publish the tree to consumers, and tear it all down. The
//! `goldmount` binary is a thin CLI over [`engine::Engine`].

pub mod config;
pub mod discover;
pub mod engine;
pub mod fstab;
pub mod fstab_options;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod mounter;
pub mod mountinfo;
pub mod partmap;
pub mod profile;
pub mod state;
pub mod tools;
pub mod wwid;
pub mod zfs;
