//! Running external commands with argument vectors, a timeout, and their
//! stderr in the error: the house rule for every tool the lab calls.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Waits for `child` up to `timeout`; `None` means it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the process group led by `child` (spawned with `process_group(0)`),
/// so helpers it started (QEMU under vng, iscsiadm under a test) die too.
pub fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What a finished command printed.
pub struct Captured {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `prog args…` capturing both streams, killing it after `timeout`.
pub fn capture(prog: &str, args: &[&str], timeout: Duration) -> Result<Captured> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    capture_cmd(cmd, timeout)
}

/// [`capture`] for a prepared `Command` (extra env, cwd).
pub fn capture_cmd(mut cmd: Command, timeout: Duration) -> Result<Captured> {
    use std::os::unix::process::CommandExt;
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {shown}"))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut s);
        }
        s
    });
    let Some(status) = wait_timeout(&mut child, timeout)? else {
        kill_group(&mut child);
        bail!("{shown} timed out after {timeout:?}");
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(Captured {
        status,
        stdout,
        stderr,
    })
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Result<String> {
    let c = capture(prog, args, timeout)?;
    if !c.status.success() {
        bail!(
            "{prog} {} failed ({}): {}",
            args.join(" "),
            c.status,
            c.stderr.trim()
        );
    }
    Ok(c.stdout)
}

/// Runs `cmd` with both streams appended to `log`, killing it after `timeout`.
/// Returns `None` on timeout.
pub fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<Option<ExitStatus>> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let file2 = file.try_clone().context("dup log fd")?;
    cmd.stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let status = wait_timeout(&mut child, timeout)?;
    if status.is_none() {
        kill_group(&mut child);
    }
    Ok(status)
}
