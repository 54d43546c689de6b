//! A small runner for external commands: argument vector (no shell), a
//! timeout after which the child is killed, and stderr in the error.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::error::{LvmError, Result};

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error (lvm2 prints warnings here even on success).
    pub stderr: String,
}

/// Renders a command line for messages (arguments with spaces quoted).
pub fn display(program: &str, args: &[String]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(a);
        }
    }
    s
}

/// Runs `program args` with extra environment `env`; fails on a non-zero
/// exit, a spawn error (naming the Debian `package`) or the timeout.
pub fn run(
    program: &str,
    package: &'static str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Output> {
    let shown = display(program, args);
    tracing::debug!(command = %shown, "running");
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LvmError::Spawn {
            program: program.to_string(),
            package,
            source,
        })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = match child.wait_timeout(timeout) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LvmError::Timeout {
                command: shown,
                secs: timeout.as_secs(),
            });
        }
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LvmError::Spawn {
                program: program.to_string(),
                package,
                source,
            });
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        return Err(LvmError::Command {
            command: shown,
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(Output { stdout, stderr })
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
