//! Running external tools: argument vectors only, a timeout, stderr kept for
//! the error.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::error::{Error, Result};

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `prog args…`, killing it after `timeout`. A non-zero exit is an
/// [`Error::Command`] carrying its stderr.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let cmdline = std::iter::once(prog)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(cmd = %cmdline, "running");
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            cmd: cmdline.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let status = match child.wait_timeout(timeout) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::CommandTimeout {
                cmd: cmdline,
                secs: timeout.as_secs(),
            });
        }
        Err(e) => {
            let _ = child.kill();
            return Err(Error::Command {
                cmd: cmdline,
                status: "wait failed".into(),
                stderr: e.to_string(),
            });
        }
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(Error::Command {
            cmd: cmdline,
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(Output { stdout, stderr })
}

fn reader<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
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
