//! Running external tools (mount, losetup, lvm2, zpool…): the workspace's
//! one runner, `toolrun` — an argument vector, never a shell string; a
//! timeout that kills the tool's process group; stderr in the error.

use std::time::Duration;

pub use toolrun::{Output as ToolOutput, Tool, ToolError, DEFAULT_TIMEOUT};

/// Runs `prog args…` with `timeout`; success means exit status 0.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Result<ToolOutput, ToolError> {
    toolrun::run(prog, args, timeout)
}
