//! Running external tools (losetup) safely: argument vectors only, a hard
//! timeout, and stderr carried into the error so failures explain themselves.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

/// Why an external command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started (usually: not installed).
    #[error("cannot run {program} (is it installed? Debian package: {package}): {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Debian package that provides it.
        package: &'static str,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("{cmdline} timed out after {timeout:?} and was killed")]
    Timeout {
        /// The command line, for the message.
        cmdline: String,
        /// The limit.
        timeout: Duration,
    },
    /// The program exited non-zero.
    #[error("{cmdline} failed ({status}): {stderr}")]
    Failed {
        /// The command line, for the message.
        cmdline: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// Waiting on or reading from the child failed.
    #[error("{cmdline}: {source}")]
    Io {
        /// The command line, for the message.
        cmdline: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `program args...` with a timeout and returns its stdout on success.
/// `package` names the Debian package for the "not installed" message.
pub fn run(
    program: &str,
    args: &[&str],
    package: &'static str,
    timeout: Duration,
) -> Result<String, CmdError> {
    let cmdline = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(%cmdline, "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            program: program.to_string(),
            package,
            source,
        })?;
    let io = |source| CmdError::Io {
        cmdline: cmdline.clone(),
        source,
    };
    // The tools used here print little, so reading after exit cannot dead-lock
    // on a full pipe in practice; the timeout bounds it regardless.
    let status = match child.wait_timeout(timeout).map_err(io)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CmdError::Timeout { cmdline, timeout });
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).map_err(io)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).map_err(io)?;
    }
    if !status.success() {
        return Err(CmdError::Failed {
            cmdline,
            status,
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(stdout)
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
        let e = run("sleep", &["5"], "coreutils", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, CmdError::Timeout { .. }), "{e}");
    }
}
