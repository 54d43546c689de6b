//! The one error type of the executor library, with enough detail that an
//! operator can act on it (what was expected, what was found, where).

use std::path::PathBuf;

/// Errors of the executor library. The binary maps each kind to an exit code
/// (see [`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sysfs/procfs/device file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The request itself is wrong (bad value, missing target, wildcard
    /// without `--wildcard`).
    #[error("{0}")]
    Invalid(String),
    /// The named device, host, session or port does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An external command failed; its stderr is included.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line (program and arguments).
        cmd: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// An external command did not finish in time and was killed.
    #[error("`{cmd}` did not finish within {secs}s and was killed")]
    CommandTimeout {
        /// The command line.
        cmd: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// An external command ran past its timeout and did not die when
    /// killed: it is stuck in the kernel (uninterruptible I/O on storage
    /// that is gone) and was left behind; what it was doing may be
    /// half-done.
    #[error("{message}")]
    CommandHung {
        /// The runner's description: command, pid, state, wchan.
        message: String,
    },
    /// The device did not show up in time.
    #[error("no device with {expected} appeared within {secs:.1}s ({last})")]
    WaitTimeout {
        /// The identity waited for.
        expected: String,
        /// How long we waited.
        secs: f64,
        /// What the last look found, e.g. "path sdc up, no multipath map yet".
        last: String,
    },
    /// The device at the expected place carries another identity, even after
    /// deleting it and scanning that LUN again (a LUN number reused for a
    /// different clone that the host still caches, or a wrong presentation).
    #[error("identity mismatch on {device} ({hctl}): expected {expected}, found {found}")]
    Mismatch {
        /// Kernel name of the device, e.g. sdc.
        device: String,
        /// Its H:C:T:L.
        hctl: String,
        /// The identity asked for.
        expected: String,
        /// The identity read from the device.
        found: String,
    },
    /// Refused: the device is mounted or held (unless forced).
    #[error(
        "{device} is in use: {holders}; unmount/deactivate it first, or pass --force to flush \
         and delete its SCSI paths anyway (a multipath map is still only removed once nothing \
         holds it; a filesystem mounted on it loses what it has not written)"
    )]
    InUse {
        /// The device asked for.
        device: String,
        /// Who holds it: mountpoints and holder devices.
        holders: String,
    },
    /// Flushing the device's buffers failed although a path is up; nothing
    /// was removed.
    #[error(
        "flushing {device} failed, nothing was removed: {detail}; retry, or pass --force to \
         remove it anyway, dropping whatever the host had not written to the LUN"
    )]
    FlushFailed {
        /// The device flushed (the multipath map or the only path).
        device: String,
        /// The flush's error.
        detail: String,
    },
    /// A multipath map could not be flushed because it is still open.
    #[error("multipath map {map} is still in use after {tries} tries (not forced): {detail}")]
    MapBusy {
        /// The dm name of the map.
        map: String,
        /// How many flush attempts were made.
        tries: u32,
        /// The last failure.
        detail: String,
    },
    /// An FC sysfs operation failed.
    #[error(transparent)]
    Fc(#[from] fc::FcError),
}

impl Error {
    /// The process exit code the binary uses for this error (documented in
    /// `goldmount-executor --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid(_) | Error::Fc(fc::FcError::BadWwn(_)) => 2,
            Error::NotFound(_)
            | Error::Fc(fc::FcError::NoSuchTarget { .. })
            | Error::Fc(fc::FcError::NoSuchHost(_)) => 3,
            Error::WaitTimeout { .. } => 4,
            Error::Mismatch { .. } => 5,
            Error::InUse { .. } | Error::MapBusy { .. } => 6,
            Error::Io { .. }
            | Error::Command { .. }
            | Error::CommandTimeout { .. }
            | Error::CommandHung { .. }
            | Error::FlushFailed { .. }
            | Error::Fc(fc::FcError::Io { .. }) => 1,
        }
    }
}

/// Shorthand for the library's results.
pub type Result<T> = std::result::Result<T, Error>;
