//! The engine's typed requests and results: a validated volume name, where
//! the data comes from, what the caller asked for, and whether anything
//! changed — so front doors cannot pass a raw string where a checked value
//! belongs, and an idempotent API falls out of the types.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::EngineError;

/// A volume name: a path component and an API identifier,
/// `[A-Za-z0-9_.-]{1,64}`, never `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

impl VolumeName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, EngineError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && name != "."
            && name != "..";
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(EngineError::invalid(format!(
                "invalid volume name {name:?}: expected 1-64 characters from [A-Za-z0-9_.-], not . or .."
            )))
        }
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VolumeName {
    type Error = EngineError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<VolumeName> for String {
    fn from(v: VolumeName) -> Self {
        v.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How to wait for a SCSI LUN to become a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Multipath {
    /// The multipath map when the LUN is (or will be) multipathed, else the path.
    #[default]
    Auto,
    /// The map, or an error.
    Require,
    /// Always a path.
    Never,
}

/// Where a volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceSource {
    /// A block device node (or an image file, attached through a loop device).
    Device {
        /// The node or file.
        path: PathBuf,
    },
    /// A SCSI LUN the appliance presented, by WWID (`naa.…`): waited for and
    /// verified from its VPD pages (the multipath map when multipathd owns it).
    Wwid {
        /// The WWID.
        wwid: String,
        /// How long to wait for it.
        #[serde(with = "secs")]
        timeout: Duration,
        /// Map or path.
        multipath: Multipath,
    },
    /// The appliance's loop backend: the clone's backing file, attached by
    /// the appliance as one whole-file loop device, waited for.
    LoopBacking {
        /// The backing file.
        file: PathBuf,
        /// How long to wait for its loop device.
        #[serde(with = "secs")]
        timeout: Duration,
    },
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Opt-in changes to the clone and other choices of one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOptions {
    /// Mount everything read-only, without journal/log replay.
    pub read_only: bool,
    /// Opt-in: give each XFS of the clone a new UUID after a log-replaying mount.
    pub regen_xfs_uuid: bool,
    /// Opt-in: give each imported ZFS pool a new pool GUID (`zpool reguid`).
    pub zfs_reguid: bool,
    /// Opt-in: give a btrfs whose fsid is already mounted a new one (`btrfstune -m`).
    pub btrfs_new_fsid: bool,
    /// Opt-in: allow setuid binaries and device nodes of the clone to take
    /// effect (mount without `nosuid,nodev`). Only for a clone whose content
    /// is trusted as much as the host itself.
    pub allow_suid_dev: bool,
}

/// One mount request.
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// The volume.
    pub volume: VolumeName,
    /// The LUNs (several when a volume group spans LUNs of one clone set).
    pub sources: Vec<DeviceSource>,
    /// Choices.
    pub options: MountOptions,
}

/// Whether a request changed anything: a repeated request answers
/// `Existing` with the same value, so every call is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "value", rename_all = "snake_case")]
pub enum Outcome<T> {
    /// Made by this call.
    Created(T),
    /// Already there, unchanged.
    Existing(T),
}

impl<T> Outcome<T> {
    /// The value either way.
    pub fn into_inner(self) -> T {
        match self {
            Outcome::Created(v) | Outcome::Existing(v) => v,
        }
    }
    /// True when this call changed something.
    pub fn created(&self) -> bool {
        matches!(self, Outcome::Created(_))
    }
}

/// What an unmount did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnmountReport {
    /// Volume name.
    pub volume: String,
    /// Steps undone, in order.
    pub undone: Vec<String>,
    /// True when the volume was not known (nothing to do).
    pub not_mounted: bool,
    /// Mounts detached lazily because `force` was given and they were busy.
    pub forced: Vec<String>,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Interrupted mounts rolled back.
    pub rolled_back: Vec<String>,
    /// Interrupted unmounts finished.
    pub finished: Vec<String>,
    /// Volumes whose record could not be undone: left in quarantine, with why.
    pub quarantined: Vec<(String, String)>,
    /// Volumes another process is working on right now (left alone).
    pub in_progress: Vec<String>,
}
