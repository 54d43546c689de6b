//! The records the appliance stores and returns over the API. These are the
//! wire format too (JSON), so field names are part of the API contract in
//! `openapi.yaml`.

use crate::copy::CopyMode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A host that may be given clones; identified by its initiator ports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Host {
    /// Unique host name.
    pub name: String,
    /// iSCSI initiator names (lower-case).
    #[serde(default)]
    pub iqns: Vec<String>,
    /// Fibre Channel port WWPNs (`aa:bb:..` lower-case).
    #[serde(default)]
    pub wwpns: Vec<String>,
    /// Where the appliance can call the host's connector back (mTLS), if given.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// CA certificate (PEM) that signs the connector's callback certificate.
    #[serde(default)]
    pub callback_ca_pem: Option<String>,
    /// Seconds since the Unix epoch at registration.
    pub created: u64,
}

/// Body of `POST /v1/hosts`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RegisterHost {
    /// Unique host name.
    pub name: String,
    /// iSCSI initiator names.
    #[serde(default)]
    pub iqns: Vec<String>,
    /// FC WWPNs.
    #[serde(default)]
    pub wwpns: Vec<String>,
    /// Connector callback URL (`https://...`).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// PEM CA for the callback.
    #[serde(default)]
    pub callback_ca_pem: Option<String>,
}

/// Body of `PUT /v1/hosts/{name}`: the host's whole identity, replacing
/// what was stored (the name comes from the path; a `name` in the body must
/// equal it).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PutHost {
    /// Optional; must equal the path's name when given.
    #[serde(default)]
    pub name: Option<String>,
    /// iSCSI initiator names.
    #[serde(default)]
    pub iqns: Vec<String>,
    /// FC WWPNs.
    #[serde(default)]
    pub wwpns: Vec<String>,
    /// Connector callback URL (`https://...`); absent clears it.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// PEM CA for the callback; absent clears it.
    #[serde(default)]
    pub callback_ca_pem: Option<String>,
}

/// Query of `GET /v1/hosts`: find hosts by an initiator identity.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// An iSCSI initiator name (compared normalised, case-insensitively).
    #[serde(default)]
    pub iqn: Option<String>,
    /// An FC WWPN (any accepted spelling).
    #[serde(default)]
    pub wwpn: Option<String>,
}

/// A gold copy: a read-only raw image in the data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gold {
    /// Unique gold copy name.
    pub name: String,
    /// The image file inside the data directory.
    pub file: PathBuf,
    /// Image size in bytes.
    pub size: u64,
    /// Where it was imported from.
    pub source: PathBuf,
    /// Point-in-time label of this copy (defaults to the import time).
    pub point_in_time: String,
    /// How the import copied the data.
    pub copy_mode: CopyMode,
    /// Seconds since the Unix epoch at import.
    pub created: u64,
}

/// Body of `POST /v1/gold-copies` (import a file or device on the appliance).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportGold {
    /// Unique gold copy name.
    pub name: String,
    /// Path of an image file or block device on the appliance machine.
    pub source: PathBuf,
    /// Optional point-in-time label.
    #[serde(default)]
    pub point_in_time: Option<String>,
}

/// A writable clone of a gold copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Clone {
    /// Unique clone name.
    pub name: String,
    /// The gold copy it was made from.
    pub gold: String,
    /// The gold copy's point-in-time label the clone was taken at.
    pub point_in_time: String,
    /// The clone image inside the data directory.
    pub file: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// `reflink` (thin) or `full_copy`.
    pub copy_mode: CopyMode,
    /// Set when the clone is not thin, saying why.
    #[serde(default)]
    pub warning: Option<String>,
    /// SCSI unit serial chosen by the appliance (VPD 0x80); stable for life.
    pub unit_serial: String,
    /// The clone class (pool/service level) asked for at creation, if any:
    /// how a storage profile on the host says where its clones belong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Seconds since the Unix epoch at creation.
    pub created: u64,
}

/// Body of `POST /v1/clones`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClone {
    /// Unique clone name.
    pub name: String,
    /// Gold copy to clone.
    pub gold: String,
    /// If given, must equal the gold copy's point-in-time label.
    #[serde(default)]
    pub point_in_time: Option<String>,
    /// The clone class (a short name, see [`crate::service::validate_class`]):
    /// stored and returned with the clone, so a host's storage profile
    /// decides where its clones belong. The same request again must name
    /// the same class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// Where and how a clone is visible to its host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum Presented {
    /// A LUN on the appliance's LIO iSCSI target.
    Iscsi {
        /// Target IQN to log in to.
        target_iqn: String,
        /// Portals (`ip:port`) the target listens on.
        portals: Vec<String>,
        /// LUN number.
        lun: u32,
        /// NAA WWN as the kernel reports it (`naa.6001405...`).
        wwn: String,
        /// Unit serial (VPD 0x80).
        serial: String,
    },
    /// A loop device on the appliance machine itself.
    Loop {
        /// `/dev/loopN`.
        device: String,
        /// The clone image backing it (the "WWN" equivalent to wait for).
        backing_file: String,
    },
}

/// A clone presented to a host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Presentation {
    /// The clone (one presentation per clone).
    pub clone: String,
    /// The host it is presented to.
    pub host: String,
    /// Transport details.
    #[serde(flatten)]
    pub presented: Presented,
    /// Seconds since the Unix epoch at presentation.
    pub created: u64,
}

/// Body of `POST /v1/presentations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Present {
    /// Clone to present.
    pub clone: String,
    /// Host to present it to.
    pub host: String,
}

/// Body of `POST /v1/mounts`: clone `gold`, present the clone to `host`,
/// and have the host's connector mount it as `volume` (published at `path`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    /// Gold copy to clone.
    pub gold: String,
    /// Registered host whose connector mounts the clone.
    pub host: String,
    /// Volume name on the host (also the clone's name when that is free).
    pub volume: String,
    /// Where the host publishes the volume's tree (absolute); none: the
    /// volume is only mounted under the connector's volumes root.
    #[serde(default)]
    pub path: Option<String>,
    /// Mount read-only on the host.
    #[serde(default)]
    pub read_only: bool,
}

/// Where a one-call mount is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MountPhase {
    /// Steps are being taken (or a run died while taking them: the same
    /// request again resumes).
    Mounting,
    /// The host's connector answered with its manifest.
    Mounted,
    /// Being taken down (or a teardown stopped half-way: DELETE again).
    Unmounting,
    /// The connector's answer was lost (connection broken or timed out) and
    /// the appliance could not learn afterwards whether the host mounted
    /// the clone: clone and presentation are kept (`host_state` says why);
    /// the same request again finishes the mount, DELETE takes it down.
    HostUnknown,
}

/// What a host's connector says about a one-call mount's volume.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostVolumeState {
    /// Mounted from this mount's clone.
    Mounted,
    /// Still being mounted.
    Mounting,
    /// Being unmounted.
    Unmounting,
    /// The connector could not undo a step and quarantined the volume.
    Quarantined,
    /// No such volume built from this mount's clone (never mounted, or
    /// rolled back — e.g. by the connector's recovery after a crash).
    Absent,
    /// The connector could not be asked (the reason says why).
    Unknown,
}

/// The host's side of a one-call mount, as its connector reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostState {
    /// What the connector says.
    pub state: HostVolumeState,
    /// Why (unknown: what failed; absent/quarantined: what the connector said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How long each step of a one-call mount took, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountTimings {
    /// Creating the clone.
    pub clone_ms: u64,
    /// Presenting it to the host.
    pub present_ms: u64,
    /// The connector's `PUT /v1/volumes/{volume}` (login, scan, wait,
    /// import, mount, publish on the host).
    pub connector_ms: u64,
    /// The whole call.
    pub total_ms: u64,
}

/// What the appliance mounted where (`GET /v1/mounts`), and the answer of
/// `POST /v1/mounts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// Volume name on the host.
    pub volume: String,
    /// Gold copy the clone was made from.
    pub gold: String,
    /// Host whose connector mounted it.
    pub host: String,
    /// Where the host published it, if asked.
    pub path: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
    /// Life-cycle phase.
    pub phase: MountPhase,
    /// The clone made for this mount (named after the volume when free).
    pub clone: String,
    /// Its presentation, once presented.
    pub presentation: Option<Presentation>,
    /// The connector's manifest of the mounted volume, once mounted.
    pub manifest: Option<serde_json::Value>,
    /// The connector's publication at `path`, if any.
    pub publication: Option<serde_json::Value>,
    /// Step durations of the call that mounted it.
    pub timings: MountTimings,
    /// The host's side: in `GET /v1/mounts/{volume}` asked of the connector
    /// at that moment; elsewhere the last the appliance learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_state: Option<HostState>,
    /// Seconds since the Unix epoch when the mount was asked for.
    pub created: u64,
}

/// The answer of `DELETE /v1/mounts/{volume}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unmounted {
    /// Volume name on the host.
    pub volume: String,
    /// The connector's unmount report.
    pub connector: serde_json::Value,
    /// The clone that was unpresented and deleted.
    pub clone: String,
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
