//! The manifest of a mounted volume: every mount with its source device,
//! type, UUID, original mountpoint and where it is now — what the CLI prints,
//! what the appliance and Docker will be given.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the filesystems were arranged under the volume path.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Assembled from the clone's own `/etc/fstab`: root at the volume path.
    Fstab,
    /// No usable fstab: each filesystem at `<volume>/<name>`.
    Flat,
}

/// One mounted filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountInfo {
    /// Device mounted (partition node, offset loop device, or LV).
    pub source: PathBuf,
    /// Filesystem type.
    pub fs_type: String,
    /// Filesystem UUID, if any.
    pub uuid: Option<String>,
    /// Filesystem label, if any.
    pub label: Option<String>,
    /// Partition number on the LUN, if it is a partition.
    pub partition: Option<u32>,
    /// Where the original host mounted it (from its fstab), if known.
    pub original_mountpoint: Option<String>,
    /// Where it is mounted now.
    pub mount_path: PathBuf,
    /// Mount options used.
    pub options: String,
    /// True when the partition was mapped with an offset loop device because
    /// the kernel did not create a partition node.
    pub via_offset_loop: bool,
    /// Options of the clone's fstab line carried over to this mount (the
    /// allow-list in `fstab_options`); empty in the flat layout.
    #[serde(default)]
    pub fstab_options_kept: Vec<String>,
    /// Options of the clone's fstab line not carried over, with the reason.
    #[serde(default)]
    pub fstab_options_dropped: Vec<DroppedOption>,
    /// For btrfs: the subvolume this mount shows, as the kernel reports it
    /// (the mount's root in mountinfo: `/root`, `/@home`, `/` for the top
    /// level); `None` for other filesystems.
    #[serde(default)]
    pub subvolume: Option<String>,
}

/// An option of a clone's fstab line that goldmount did not carry over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DroppedOption {
    /// The option as written (at most 256 bytes).
    pub option: String,
    /// Why it was dropped.
    pub reason: String,
}

/// Something found on the LUN that was deliberately not mounted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is (device or `partition N`).
    pub source: String,
    /// What it is (blkid TYPE, or "ambivalent").
    pub what: String,
    /// Why it was not mounted.
    pub reason: String,
}

/// An fstab entry of the clone that could not be resolved to one of its filesystems.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnresolvedEntry {
    /// First fstab field (UUID=…, LABEL=…, /dev/…).
    pub spec: String,
    /// Its mountpoint.
    pub mountpoint: String,
    /// Why it was not used.
    pub reason: String,
}

/// The whole picture of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Volume name.
    pub volume: String,
    /// Devices (LUNs) it came from; a multipath map as `/dev/mapper/<name>`
    /// (stable across boots, unlike `/dev/dm-N`).
    pub devices: Vec<PathBuf>,
    /// The volume path to bind-mount.
    pub path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// Fstab or flat.
    pub layout: Layout,
    /// Mounts in mount order (parents first).
    pub mounts: Vec<MountInfo>,
    /// Things found and not mounted, with the reason.
    pub skipped: Vec<Skipped>,
    /// fstab entries that did not resolve.
    pub unresolved: Vec<UnresolvedEntry>,
    /// Notes for the operator (e.g. "partitions mapped with offset loop devices").
    pub notes: Vec<String>,
}
