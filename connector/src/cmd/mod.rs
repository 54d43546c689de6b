//! One module per subcommand.

pub mod probe;
