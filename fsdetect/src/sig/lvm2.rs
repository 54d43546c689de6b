//! NOT IMPLEMENTED YET: placeholder while the lvm2 prober is written.

use crate::error::Result;
use crate::reader::Window;
use crate::signature::Signature;

/// Placeholder: finds nothing yet.
pub fn probe(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
