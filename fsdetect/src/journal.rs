//! Whether a filesystem's journal (ext3/ext4), log (XFS) or log tree (btrfs)
//! holds changes that are not yet written in place.
//!
//! It matters to whoever mounts a clone read-only: a mount that skips the
//! replay (ext4 `noload`, XFS `norecovery`, btrfs `rescue=nologreplay`)
//! shows the filesystem as of its last checkpoint, so the newest files may be
//! missing. The probers decide it from the superblock they read anyway (no
//! extra read) wherever the superblock says so; XFS's superblock does not, so
//! its log is read on demand by [`inspect`] (a bounded scan, see
//! [`crate::sig::xfs_log`]).

use crate::error::Result;
use crate::reader::{IoStats, Reader};
use crate::signature::Signature;
use crate::source::BlockSource;

/// What the journal of a filesystem says about replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum JournalState {
    /// Nothing to replay: the filesystem was unmounted cleanly (or the log
    /// is empty).
    Clean,
    /// The journal/log holds changes a mount would replay (ext `needs_recovery`,
    /// an XFS log whose last record is not an unmount record, a btrfs log tree).
    NeedsRecovery,
    /// The superblock alone cannot say (XFS): call [`inspect`] to read the log.
    NotInspected,
    /// It could not be decided (a corrupt or implausible log, an external log
    /// device that is not on this device); [`Journal::basis`] says why.
    Unknown,
}

impl JournalState {
    /// The word used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalState::Clean => "clean",
            JournalState::NeedsRecovery => "needs_recovery",
            JournalState::NotInspected => "not_inspected",
            JournalState::Unknown => "unknown",
        }
    }
}

/// The journal of a filesystem and what it says, with how that was decided
/// (for messages and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Journal {
    /// Clean, needs recovery, or undecided.
    pub state: JournalState,
    /// The journal/log lives on another device (ext3/4 `journal_dev`, an XFS
    /// external log): replaying it needs that device too.
    pub external: bool,
    /// How the state was decided, or why it could not be (e.g. "superblock
    /// flag needs_recovery", "unmount record is the last log record").
    pub basis: String,
}

impl Journal {
    /// A journal on the filesystem's own device.
    pub fn internal(state: JournalState, basis: impl Into<String>) -> Self {
        Self {
            state,
            external: false,
            basis: basis.into(),
        }
    }

    /// True when a mount that skips replay may miss recent changes.
    pub fn needs_recovery(&self) -> bool {
        self.state == JournalState::NeedsRecovery
    }
}

/// The outcome of [`inspect`]: the journal (`None` for formats without one)
/// and the reads it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The journal's state, decided as far as the on-disk data allows.
    pub journal: Option<Journal>,
    /// Reads that reached the source (zero when the probe's superblock
    /// already said everything).
    pub io: IoStats,
}

/// Decides the journal state of the filesystem `sig` found at `offset..offset+len`
/// of `src`: the probe's verdict when the superblock decided it, otherwise
/// (XFS) a bounded read of the log — at most a few single-block reads for the
/// binary search of the log's head and one window of up to 4 MiB around it.
/// Corrupt or implausible logs give [`JournalState::Unknown`], never an error;
/// errors are only I/O failures and a region outside the source.
pub fn inspect(
    src: &dyn BlockSource,
    offset: u64,
    len: u64,
    sig: &Signature,
) -> Result<Inspection> {
    let Some(journal) = &sig.journal else {
        return Ok(Inspection {
            journal: None,
            io: IoStats::default(),
        });
    };
    if journal.state != JournalState::NotInspected || sig.fs_type != "xfs" {
        return Ok(Inspection {
            journal: Some(journal.clone()),
            io: IoStats::default(),
        });
    }
    let reader = Reader::new(src);
    let w = reader.region(offset, len)?;
    let journal = crate::sig::xfs::log_journal(&w)?;
    Ok(Inspection {
        journal: Some(journal),
        io: reader.stats(),
    })
}
