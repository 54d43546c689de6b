//! Running external tools through the workspace's one runner (`toolrun`):
//! argument vectors only, a timeout that kills the tool's process group,
//! stderr kept for the error.

use std::time::Duration;

use crate::error::{Error, Result};

/// What a successful tool run printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings).
    pub stderr: String,
}

/// Runs `prog args…` within `timeout`; a non-zero exit is an error carrying
/// the tool's stderr.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    match toolrun::run(prog, args, timeout) {
        Ok(o) => Ok(Output {
            stdout: o.stdout,
            stderr: o.stderr,
        }),
        Err(e @ toolrun::ToolError::Timeout { hung: Some(_), .. }) => Err(Error::CommandHung {
            message: e.to_string(),
        }),
        Err(toolrun::ToolError::Timeout { cmdline, .. }) => Err(Error::CommandTimeout {
            cmd: cmdline,
            secs: timeout.as_secs(),
        }),
        Err(toolrun::ToolError::Failed {
            cmdline,
            status,
            stderr,
            ..
        }) => Err(Error::Command {
            cmd: cmdline,
            status: status.to_string(),
            stderr,
        }),
        Err(e @ toolrun::ToolError::Spawn { .. }) => Err(Error::Command {
            cmd: prog.to_string(),
            status: "not started".into(),
            stderr: e.to_string(),
        }),
        Err(toolrun::ToolError::Wait { cmdline, source }) => Err(Error::Command {
            cmd: cmdline,
            status: "wait failed".into(),
            stderr: source.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn stderr_and_timeout() {
        let o = run("sh", &["-c", "echo hi"], Duration::from_secs(5)).unwrap();
        assert_eq!(o.stdout, "hi\n");
        let e = run(
            "sh",
            &["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        let e = run("sleep", &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Error::CommandTimeout { .. }), "{e}");
        let e = run("/nonexistent/tool", &[], Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("not started"), "{e}");
    }
}
