//! NOT IMPLEMENTED YET: placeholder while the ext2/3/4/jbd probers are written.

use crate::error::Result;
use crate::reader::Window;
use crate::signature::Signature;

/// Placeholder.
pub fn probe_ext4dev(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
/// Placeholder.
pub fn probe_ext4(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
/// Placeholder.
pub fn probe_ext3(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
/// Placeholder.
pub fn probe_ext2(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
/// Placeholder.
pub fn probe_jbd(_w: &Window<'_>) -> Result<Option<Signature>> {
    Ok(None)
}
