//! One module per subcommand.

pub mod list;
pub mod mount;
pub mod probe;
pub mod unmount;
