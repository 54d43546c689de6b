//! NOT IMPLEMENTED YET: placeholder while the mbr reader is written.

use crate::error::Result;
use crate::reader::Window;
use crate::table::PartitionTable;

/// Placeholder: finds nothing yet.
pub fn probe(_w: &Window<'_>) -> Result<Option<PartitionTable>> {
    Ok(None)
}
