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
    /// A LUN the appliance presented on an iSCSI target: the engine logs in
    /// where no session exists yet (journaled; logged out on teardown when
    /// nothing else uses the session), scans exactly that LUN on each
    /// session and waits for it, verified by WWID.
    Iscsi {
        /// The presentation.
        presentation: IscsiPresentation,
        /// How long to wait for the LUN once scanned.
        #[serde(with = "secs", default = "default_wait")]
        timeout: Duration,
        /// Map or path.
        #[serde(default)]
        multipath: Multipath,
    },
    /// A LUN the appliance presented over Fibre Channel: scanned behind each
    /// target port and waited for, verified by WWID (no login in FC).
    Fc {
        /// The presentation.
        presentation: FcPresentation,
        /// How long to wait for the LUN once scanned.
        #[serde(with = "secs", default = "default_wait")]
        timeout: Duration,
        /// Map or path.
        #[serde(default)]
        multipath: Multipath,
    },
}

fn default_wait() -> Duration {
    Duration::from_secs(60)
}

/// The longest a request may ask the engine to wait for a device: a wait
/// holds the volume (and a worker of a front door) for its whole length.
pub const MAX_WAIT: Duration = Duration::from_secs(900);

impl DeviceSource {
    /// How long this source may be waited for, if it is waited for.
    pub fn wait_timeout(&self) -> Option<Duration> {
        match self {
            DeviceSource::Device { .. } => None,
            DeviceSource::Wwid { timeout, .. }
            | DeviceSource::LoopBacking { timeout, .. }
            | DeviceSource::Iscsi { timeout, .. }
            | DeviceSource::Fc { timeout, .. } => Some(*timeout),
        }
    }

    /// True for the sources whose attach changes the host (login, scan) and
    /// is therefore journaled; the others are only looked up.
    pub fn is_presentation(&self) -> bool {
        matches!(self, DeviceSource::Iscsi { .. } | DeviceSource::Fc { .. })
    }

    /// The source as it is recorded in the state store and compared with a
    /// repeated request: without secrets.
    pub fn recorded(&self) -> DeviceSource {
        let mut s = self.clone();
        if let DeviceSource::Iscsi { presentation, .. } = &mut s {
            presentation.chap = None;
        }
        s
    }
}

/// The appliance's presentation document (`goldmount-appliance present`
/// prints it; its API returns it): the transport and where the LUN is.
/// Fields the appliance adds for its own use (`clone`, `host`, `created`)
/// are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
enum AppliancePresentation {
    Iscsi {
        target_iqn: String,
        portals: Vec<String>,
        lun: u64,
        wwn: String,
        #[serde(default)]
        serial: Option<String>,
        #[serde(default)]
        chap: Option<ChapCredentials>,
    },
    Fc {
        target_wwpns: Vec<String>,
        lun: u64,
        wwn: String,
        #[serde(default)]
        serial: Option<String>,
    },
    Loop {
        backing_file: PathBuf,
    },
}

impl DeviceSource {
    /// The source for a presentation document as the appliance returns it
    /// (`{"transport": "iscsi" | "fc" | "loop", …}`; an iSCSI one may carry
    /// `"chap": {"username", "password"}`).
    pub fn from_presentation_json(
        json: &str,
        timeout: Duration,
        multipath: Multipath,
    ) -> Result<Self, EngineError> {
        let p: AppliancePresentation = serde_json::from_str(json).map_err(|e| {
            EngineError::invalid(format!(
                "not a presentation document: {e}; expected the appliance's JSON with \"transport\": \"iscsi\" (target_iqn, portals, lun, wwn), \"fc\" (target_wwpns, lun, wwn) or \"loop\" (backing_file)"
            ))
        })?;
        Ok(match p {
            AppliancePresentation::Iscsi {
                target_iqn,
                portals,
                lun,
                wwn,
                serial,
                chap,
            } => DeviceSource::Iscsi {
                presentation: IscsiPresentation {
                    target_iqn,
                    portals,
                    lun,
                    wwn,
                    serial,
                    chap,
                },
                timeout,
                multipath,
            },
            AppliancePresentation::Fc {
                target_wwpns,
                lun,
                wwn,
                serial,
            } => DeviceSource::Fc {
                presentation: FcPresentation {
                    target_wwpns,
                    lun,
                    wwn,
                    serial,
                },
                timeout,
                multipath,
            },
            AppliancePresentation::Loop { backing_file } => DeviceSource::LoopBacking {
                file: backing_file,
                timeout,
            },
        })
    }
}

/// An iSCSI presentation, in the shape the appliance returns it
/// (`goldmount-appliance present --json`, transport `iscsi`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IscsiPresentation {
    /// Target IQN.
    pub target_iqn: String,
    /// Portals (`ip:port`, `[v6]:port`); several for multipath.
    pub portals: Vec<String>,
    /// LUN number.
    pub lun: u64,
    /// The LUN's WWN as the appliance announced it (`naa.6001405…`):
    /// what the device found is verified against.
    pub wwn: String,
    /// Unit serial (VPD 0x80), verified too when given.
    #[serde(default)]
    pub serial: Option<String>,
    /// CHAP credentials for the login; never recorded in the state store.
    #[serde(default, skip_serializing)]
    pub chap: Option<ChapCredentials>,
}

/// CHAP credentials of an iSCSI login. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapCredentials {
    /// Initiator user name.
    pub username: String,
    /// Initiator secret.
    pub password: String,
    /// Target user name (mutual CHAP).
    #[serde(default)]
    pub username_in: Option<String>,
    /// Target secret (mutual CHAP).
    #[serde(default)]
    pub password_in: Option<String>,
}

impl fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("username_in", &self.username_in)
            .finish_non_exhaustive()
    }
}

/// A Fibre Channel presentation: the LUN behind the appliance's target ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcPresentation {
    /// The target's port WWPNs, any common spelling.
    pub target_wwpns: Vec<String>,
    /// LUN number.
    pub lun: u64,
    /// The LUN's WWN as announced: the device found is verified against it.
    pub wwn: String,
    /// Unit serial, verified too when given.
    #[serde(default)]
    pub serial: Option<String>,
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
    /// Filesystems whose data written since the last sync may not have
    /// reached the storage (a flush error, an error the filesystem
    /// recorded): the unmount finished, but this must not go unnoticed.
    #[serde(default)]
    pub data_loss: Vec<super::teardown::DataLoss>,
    /// Multipath maps whose queueing was turned off so the teardown could
    /// not hang (no path up, or forced).
    #[serde(default)]
    pub queueing_off: Vec<super::teardown::QueueingOff>,
    /// The deadline of each teardown step, in seconds.
    #[serde(default)]
    pub deadline_secs: u64,
}

/// How to unmount.
#[derive(Debug, Clone, Default)]
pub struct UnmountOptions {
    /// Take publications down and detach busy mounts lazily; turn queueing
    /// off on every multipath map below the volume.
    pub force: bool,
    /// The deadline of each step (flush, release of a device); derived from
    /// the transport's timeouts when not given.
    pub deadline: Option<Duration>,
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
    /// Records from before the host restarted, dropped: their mounts, loop
    /// devices and sessions were gone (nothing of them was touched but the
    /// empty directories goldmount had made).
    #[serde(default)]
    pub stale: Vec<String>,
    /// Publications whose run died between recording them and recording
    /// their bind mounts: taken down (`volume at target`). The volume stays
    /// mounted; asking to publish again makes it anew.
    #[serde(default)]
    pub unpublished: Vec<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn appliance_presentations_become_sources() {
        let t = Duration::from_secs(9);
        let iscsi = r#"{"clone":"pg1","host":"h1","transport":"iscsi",
            "target_iqn":"iqn.2026-01.io.goldmount:pg1","portals":["127.0.0.1:3260"],
            "lun":0,"wwn":"naa.6001405aa","serial":"gm-pg1","created":1}"#;
        match DeviceSource::from_presentation_json(iscsi, t, Multipath::Auto).unwrap() {
            DeviceSource::Iscsi {
                presentation,
                timeout,
                ..
            } => {
                assert_eq!(presentation.lun, 0);
                assert_eq!(presentation.serial.as_deref(), Some("gm-pg1"));
                assert_eq!(timeout, t);
            }
            other => panic!("{other:?}"),
        }
        let lo = r#"{"transport":"loop","device":"/dev/loop3","backing_file":"/srv/c.img"}"#;
        assert!(matches!(
            DeviceSource::from_presentation_json(lo, t, Multipath::Auto).unwrap(),
            DeviceSource::LoopBacking { .. }
        ));
        let fc = r#"{"transport":"fc","target_wwpns":["50:01"],"lun":2,"wwn":"naa.6"}"#;
        assert!(matches!(
            DeviceSource::from_presentation_json(fc, t, Multipath::Auto).unwrap(),
            DeviceSource::Fc { .. }
        ));
        for bad in [
            "{}",
            r#"{"transport":"nvme"}"#,
            r#"{"transport":"iscsi","target_iqn":"iqn.x","portal":"1.2.3.4","lun":0,"wwn":"naa.6"}"#,
            "not json",
        ] {
            let e = DeviceSource::from_presentation_json(bad, t, Multipath::Auto).unwrap_err();
            assert!(
                e.message.contains("not a presentation document"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn api_sources_round_trip_with_defaults() {
        let j = r#"{"kind":"iscsi","presentation":{"target_iqn":"iqn.x","portals":["a"],"lun":1,"wwn":"naa.6"}}"#;
        let s: DeviceSource = serde_json::from_str(j).unwrap();
        match &s {
            DeviceSource::Iscsi {
                timeout, multipath, ..
            } => {
                assert_eq!(*timeout, Duration::from_secs(60));
                assert_eq!(*multipath, Multipath::Auto);
            }
            other => panic!("{other:?}"),
        }
        let back: DeviceSource = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
