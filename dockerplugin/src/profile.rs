//! Storage profiles: a name (`NAME@profile`, `-o profile=`) standing for
//! settings, so an application asks for `gold` and never sees knobs.
//!
//! The seam for issue 11 §2: only `default` exists now and it changes
//! nothing. Configured profiles (appliance class, read-only, XFS UUID
//! regeneration, ZFS reguid, allow-suid) will be looked up in
//! [`Profiles::resolve`] and applied in [`Profile::mount_options`] and the
//! clone request; callers already go through both.

use connector::engine::MountOptions;

use crate::error::{PluginError, Result};

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// One resolved profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: String,
}

impl Profile {
    /// The engine's mount options for a volume of this profile.
    pub fn mount_options(&self, read_only: bool) -> MountOptions {
        MountOptions {
            read_only,
            ..MountOptions::default()
        }
    }
}

/// The profiles this plugin knows.
#[derive(Debug, Clone, Default)]
pub struct Profiles {}

impl Profiles {
    /// The names of the known profiles, `default` first.
    pub fn known(&self) -> Vec<String> {
        vec![DEFAULT_PROFILE.to_string()]
    }

    /// The profile `name` (`default` when none is given), or an error
    /// listing the known ones.
    pub fn resolve(&self, name: Option<&str>) -> Result<Profile> {
        let name = name.unwrap_or(DEFAULT_PROFILE);
        if self.known().iter().any(|k| k == name) {
            Ok(Profile {
                name: name.to_string(),
            })
        } else {
            Err(PluginError::UnknownProfile {
                name: name.to_string(),
                known: self.known(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_default_is_known_for_now() {
        let p = Profiles::default();
        assert_eq!(p.resolve(None).unwrap().name, "default");
        assert_eq!(p.resolve(Some("default")).unwrap().name, "default");
        let e = p.resolve(Some("fast")).unwrap_err().to_string();
        assert!(e.contains("\"fast\"") && e.contains("default"), "{e}");
    }
}
