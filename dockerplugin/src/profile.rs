//! Storage profiles for `docker volume create NAME@profile` and
//! `-o profile=`: the types, parsing and resolution live in
//! [`connector::profile`] (the `goldmount clone GOLD@profile` CLI uses them
//! too); this module re-exports them so the plugin's modules and goldmountd
//! keep naming `dockerplugin::profile`, and adds what is Docker's own — an
//! unknown profile as the plugin's error, which Docker shows to the person
//! who typed the command.

pub use connector::profile::*;

use crate::error::PluginError;

impl From<UnknownProfile> for PluginError {
    fn from(e: UnknownProfile) -> Self {
        PluginError::UnknownProfile {
            name: e.name,
            known: e.known,
        }
    }
}
