//! lvm2 and its helpers run through the workspace's one runner (`toolrun`):
//! argument vector (no shell), a timeout that kills the tool's process
//! group, and stderr in the error — mapped into [`LvmError`].

use std::time::Duration;

use crate::error::{LvmError, Result};

/// What a successful run printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output (JSON reports).
    pub stdout: String,
    /// Standard error (lvm2 warnings).
    pub stderr: String,
}

/// The command line as errors show it (same quoting as the runner's).
pub fn display(program: &str, args: &[String]) -> String {
    toolrun::Tool::new(program).args(args).cmdline()
}

/// Runs `program args…` with `env` within `timeout`; `package` names the
/// Debian package for the "not installed" error.
pub fn run(
    program: &str,
    package: &'static str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Output> {
    let tool = env
        .iter()
        .fold(toolrun::Tool::new(program).args(args), |t, (k, v)| {
            t.env(k, v)
        })
        .timeout(timeout);
    match tool.run() {
        Ok(o) => Ok(Output {
            stdout: o.stdout,
            stderr: o.stderr,
        }),
        Err(toolrun::ToolError::Spawn { source, .. })
        | Err(toolrun::ToolError::Wait { source, .. }) => Err(LvmError::Spawn {
            program: program.to_string(),
            package,
            source,
        }),
        Err(toolrun::ToolError::Timeout { cmdline, .. }) => Err(LvmError::Timeout {
            command: cmdline,
            secs: timeout.as_secs(),
        }),
        Err(toolrun::ToolError::Failed {
            cmdline,
            status,
            stderr,
            ..
        }) => Err(LvmError::Command {
            command: cmdline,
            status: status.to_string(),
            stderr,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn stderr_timeout_and_spawn_errors() {
        let e = run(
            "sh",
            "dash",
            &s(&["-c", "echo oops >&2; exit 3"]),
            &[],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            matches!(&e, LvmError::Command { stderr, .. } if stderr == "oops"),
            "{e}"
        );
        let e = run(
            "sleep",
            "coreutils",
            &s(&["5"]),
            &[],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(e, LvmError::Timeout { .. }));
        let e = run("/nonexistent/x", "none", &[], &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, LvmError::Spawn { .. }));
        let o = run(
            "sh",
            "dash",
            &s(&["-c", "echo $A"]),
            &[("A".into(), "b".into())],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(o.stdout, "b\n");
    }
}
