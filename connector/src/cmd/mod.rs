//! One module per subcommand; each parses its arguments into an engine
//! request and prints the result.

pub mod certs;
pub mod clone;
pub mod guard;
pub mod list;
pub mod mount;
pub mod probe;
pub mod publish;
pub mod recover;
pub mod register;
pub mod status;
pub mod unmount;

use connector::engine::{EngineError, VolumeName};

/// A volume name from the command line, checked by the engine's rules.
pub fn volume(name: &str) -> Result<VolumeName, EngineError> {
    VolumeName::parse(name)
}
