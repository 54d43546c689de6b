//! Read-only probing of partition tables and filesystem/volume signatures.
//!
//! `fsdetect` answers "what is on this disk?" the way `blkid -p` does — same
//! TYPE/UUID/LABEL vocabulary, same rules for ambivalent results — from any
//! [`BlockSource`] (an image file, a block device, bytes in memory), with a
//! fraction of blkid's reads: requests are planned so that the head and the
//! tail of each region are fetched once, and every read is counted.
//!
//! It never writes: sources are opened read-only and nothing here holds a
//! writable handle.
//!
//! ```no_run
//! let src = fsdetect::FileSource::open("/dev/sdb")?;
//! let report = fsdetect::probe_disk(&src)?;
//! for p in &report.partitions {
//!     println!("{} {:?}", p.partition.number, p.content);
//! }
//! # Ok::<(), fsdetect::ProbeError>(())
//! ```

pub mod bytes;
pub mod checksum;
pub mod entry;
pub mod error;
pub mod gpt;
pub mod journal;
pub mod mbr;
pub mod probe;
pub mod reader;
pub mod sig;
pub mod signature;
pub mod source;
pub mod table;
pub mod udev;

pub use entry::PartEntry;
pub use error::{ProbeError, Result};
pub use journal::{Inspection, Journal, JournalState};
pub use probe::{probe_disk, probe_region, probe_signatures, Content, DiskReport, PartitionReport};
pub use reader::{Bytes, IoStats, Reader, Window};
pub use signature::{Signature, Tag, Usage};
pub use source::{BlockSource, FileSource, MemSource, ReadMode, TracedSource};
pub use table::{GptHeader, Partition, PartitionKind, PartitionTable, PartitionType, TableKind};
