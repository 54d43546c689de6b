//! NOT WRITTEN YET: fixture builders for this group.

use super::Fixture;

/// The fixtures of this group.
pub fn fixtures() -> Vec<Fixture> {
    Vec::new()
}
