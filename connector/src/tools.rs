//! Running external tools (mount, losetup, lvm2…) the safe way: an argument
//! vector, never a shell string; a timeout; stderr in the error.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// Default time limit for one tool invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started (usually: not installed).
    #[error("cannot run {prog}: {source} (is it installed?)")]
    Spawn {
        /// Program name.
        prog: String,
        /// OS error.
        source: std::io::Error,
    },
    /// It ran past its time limit and was killed.
    #[error("{cmdline} did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line, for the operator.
        cmdline: String,
        /// The limit.
        timeout: Duration,
    },
    /// It exited unsuccessfully.
    #[error("{cmdline} failed ({status}): {stderr}")]
    Failed {
        /// The command line, for the operator.
        cmdline: String,
        /// Exit status text.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
        /// Its exit code, when it has one.
        code: Option<i32>,
    },
}

/// Output of a successful run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (tools often print warnings there even on success).
    pub stderr: String,
}

fn cmdline(prog: &str, args: &[&str]) -> String {
    let mut s = prog.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `prog args…` with `timeout`; success means exit status 0.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Result<ToolOutput, ToolError> {
    run_env(prog, args, &[], timeout)
}

/// Same as [`run`], with extra environment variables.
pub fn run_env(
    prog: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<ToolOutput, ToolError> {
    tracing::debug!(cmd = %cmdline(prog, args), "running");
    let mut child = Command::new(prog)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn {
            prog: prog.to_string(),
            source,
        })?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let status = match child.wait_timeout(timeout) {
        Ok(Some(st)) => st,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ToolError::Timeout {
                cmdline: cmdline(prog, args),
                timeout,
            });
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if !status.success() {
        return Err(ToolError::Failed {
            cmdline: cmdline(prog, args),
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
            code: status.code(),
        });
    }
    Ok(ToolOutput { stdout, stderr })
}
