//! Typed errors of the crate: every failure says what was expected, what was
//! found and, for commands, the exact command and its stderr.

use std::path::PathBuf;

/// Everything that can go wrong reading LVM metadata or driving lvm2.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// Reading the device failed (I/O error, short device).
    #[error("reading {what}: {source}")]
    Read {
        /// Which structure was being read.
        what: String,
        /// The block source's error.
        #[source]
        source: fsdetect::ProbeError,
    },
    /// The device is shorter than the structure it should hold.
    #[error("truncated {what}: need {need} bytes at offset {offset}, device has {size}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        need: u64,
        /// Device size.
        size: u64,
    },
    /// None of the first four sectors holds an LVM2 `LABELONE` label.
    #[error("no LVM2 label (LABELONE) in the first four sectors: not a physical volume")]
    NoLabel,
    /// A label was found but is not usable.
    #[error("bad LVM2 label in sector {sector}: {reason}")]
    BadLabel {
        /// Sector 0–3.
        sector: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checksum did not match.
    #[error(
        "bad crc in {what} at offset {offset}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    BadCrc {
        /// Which structure (label, mda header, metadata text).
        what: &'static str,
        /// Absolute byte offset of the structure.
        offset: u64,
        /// Checksum stored on disk.
        stored: u32,
        /// Checksum computed over the data.
        computed: u32,
    },
    /// The PV header or a metadata-area header is malformed.
    #[error("corrupt {what} at offset {offset}: {reason}")]
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// Absolute byte offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// No usable VG metadata was found where some was required.
    #[error("no LVM metadata: {0}")]
    NoMetadata(String),
    /// The metadata text does not follow LVM's text format.
    #[error("corrupt metadata text at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What was expected and found.
        message: String,
    },
    /// The metadata text parses but lacks or misuses a field.
    #[error("invalid VG metadata: {0}")]
    Invalid(String),
    /// A VG of the clone set lacks some of its PVs; nothing was activated.
    #[error("volume group {vg} ({vg_uuid}) is missing PV(s) {}; not activating a partial VG (present the whole clone set)", missing.join(", "))]
    MissingPvs {
        /// VG name in the metadata.
        vg: String,
        /// VG UUID.
        vg_uuid: String,
        /// UUIDs of the PVs the metadata lists but no given device carries.
        missing: Vec<String>,
    },
    /// The same PV UUID is on two of the given devices.
    #[error("PV {pv_uuid} is on both {first} and {second}: pass each clone device once, and never a clone together with its gold copy")]
    DuplicatePv {
        /// The duplicated PV UUID.
        pv_uuid: String,
        /// First device.
        first: PathBuf,
        /// Second device.
        second: PathBuf,
    },
    /// The given devices do not hold exactly one VG.
    #[error("expected the devices to hold exactly one volume group, found {found}: {detail}")]
    NotOneVg {
        /// How many VGs were found.
        found: usize,
        /// Their names / the orphan devices.
        detail: String,
    },
    /// The wanted VG name is used on this host.
    #[error("volume group name {name} is already in use on this host ({by}); pass another name")]
    NameTaken {
        /// The name.
        name: String,
        /// Where it was seen (host VG, active dm device, /dev entry).
        by: String,
    },
    /// A name is not a valid LVM VG name.
    #[error("invalid volume group name {0:?}: use 1–127 characters of A-Za-z0-9+_.- not starting with '-' (and not . or ..)")]
    BadName(String),
    /// Something still uses a device that would be removed or deactivated.
    #[error("{device} is in use by {holder}; unmount/close it first")]
    Busy {
        /// The dm device or LV.
        device: String,
        /// The mount point, holder device or open count that keeps it busy.
        holder: String,
    },
    /// A dm device mixes clone devices and other devices: never touched.
    #[error("dm device {name} uses clone device(s) and other device(s) ({slaves}); refusing to remove it")]
    MixedDm {
        /// dm name.
        name: String,
        /// Its slave devices.
        slaves: String,
    },
    /// An external command could not be started.
    #[error("cannot run {program}: {source} (is the package {package} installed?)")]
    Spawn {
        /// Program name.
        program: String,
        /// Debian package that provides it.
        package: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for humans.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr (trimmed).
        stderr: String,
    },
    /// An external command did not finish in time and was killed.
    #[error("`{command}` did not finish within {secs} s and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The timeout.
        secs: u64,
    },
    /// A JSON report could not be parsed.
    #[error("cannot parse the JSON report of `{command}`: {source}")]
    Report {
        /// The command line.
        command: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A host file (sysfs, lvm.conf, devices file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The autoactivation guard cannot be installed safely.
    #[error("autoactivation guard: {0}")]
    Guard(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, LvmError>;

impl LvmError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LvmError::Io {
            path: path.into(),
            source,
        }
    }
}
