//! Running external tools (losetup) through the workspace's one runner,
//! `toolrun`: argument vectors only, a hard timeout, stderr carried into the
//! error — plus the Debian package to install when the tool is missing.

use std::time::Duration;

/// Why a tool failed: the runner's error, with the package that provides
/// the tool when it could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program is missing or could not be started.
    #[error("{source} (Debian package: {package})")]
    Spawn {
        /// The runner's error.
        #[source]
        source: toolrun::ToolError,
        /// The package that ships the program.
        package: &'static str,
    },
    /// It timed out, failed or could not be waited for.
    #[error(transparent)]
    Tool(toolrun::ToolError),
}

impl From<toolrun::ToolError> for CmdError {
    fn from(e: toolrun::ToolError) -> Self {
        CmdError::Tool(e)
    }
}

/// Runs `program args…` within `timeout` and returns its stdout; `package`
/// names the Debian package for the "is it installed?" error.
pub fn run(
    program: &str,
    args: &[&str],
    package: &'static str,
    timeout: Duration,
) -> Result<String, CmdError> {
    match toolrun::run(program, args, timeout) {
        Ok(out) => Ok(out.stdout),
        Err(source @ toolrun::ToolError::Spawn { .. }) => Err(CmdError::Spawn { source, package }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ok_failed_missing_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(run("echo", &["hi"], "coreutils", t).unwrap(), "hi\n");
        let e = run("ls", &["/nonexistent-xyz"], "coreutils", t).unwrap_err();
        assert!(e.to_string().contains("nonexistent-xyz"), "{e}");
        let e = run("no-such-tool-xyz", &[], "nope", t).unwrap_err();
        assert!(matches!(e, CmdError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("Debian package: nope"), "{e}");
        let e = run("sleep", &["5"], "coreutils", Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(e, CmdError::Tool(toolrun::ToolError::Timeout { .. })),
            "{e}"
        );
    }
}
