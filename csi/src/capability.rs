//! The volume capabilities the driver serves: a mount volume (the tree of
//! filesystems of a whole disk), on one node, read-write or read-only.
//! Block access, mount flags and multi-node writers are refused, because
//! a clone's filesystems keep the gold's options and can be written by
//! one kernel only.

use crate::proto::{volume_capability, VolumeCapability};
use crate::status::RequestError;

/// Whether a capability asks for a read-only tree; refuses what the driver
/// cannot serve (block access, mount flags, multi-node writers).
pub fn read_only_of(cap: Option<&VolumeCapability>) -> Result<bool, RequestError> {
    use volume_capability::access_mode::Mode;
    let cap = cap.ok_or(RequestError::Missing {
        field: "volume_capability",
    })?;
    match &cap.access_type {
        None => {
            return Err(RequestError::Missing {
                field: "volume_capability.access_type",
            })
        }
        Some(volume_capability::AccessType::Block(_)) => {
            return Err(RequestError::Invalid {
                field: "volume_capability.access_type",
                why: "block access is not supported: a goldmount volume is the tree of filesystems of a whole disk; ask for a mount volume".into(),
            })
        }
        Some(volume_capability::AccessType::Mount(m)) if !m.mount_flags.is_empty() => {
            return Err(RequestError::Invalid {
                field: "volume_capability.mount.mount_flags",
                why: format!(
                    "mount flags {:?} are not supported: each filesystem of the tree keeps the gold's options; ask for read-only through the access mode or readonly",
                    m.mount_flags
                ),
            })
        }
        Some(volume_capability::AccessType::Mount(_)) => {}
    }
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or(RequestError::Missing {
            field: "volume_capability.access_mode",
        })?
        .mode;
    match Mode::try_from(mode) {
        Ok(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly) => Ok(true),
        Ok(Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter) => {
            Ok(false)
        }
        Ok(m @ (Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter)) => {
            Err(RequestError::Invalid {
                field: "volume_capability.access_mode",
                why: format!(
                    "{} is not supported: a clone's filesystems can be written on one node only",
                    m.as_str_name()
                ),
            })
        }
        Ok(Mode::Unknown) | Err(_) => Err(RequestError::Invalid {
            field: "volume_capability.access_mode",
            why: format!("expected a known access mode, found {mode}"),
        }),
    }
}
