//! One module per subcommand.

pub mod guard;
pub mod list;
pub mod mount;
pub mod probe;
pub mod unmount;
