//! `/proc/self/mountinfo`: what is mounted where, to find our own mounts, the
//! filesystems already mounted on the host (UUID collisions), and holders.
//! The parser is the workspace's `mountinfo` crate.

pub use mountinfo::{current, mounts_under, parse, MountEntry};
