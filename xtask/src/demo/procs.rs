//! The processes the demo starts: long-running services it stops with
//! SIGTERM, one-shot commands, and Ctrl-C.
//!
//! Every child runs in a process group of its own, so a Ctrl-C at the
//! terminal reaches only the demo: it lets the current step end, then takes
//! everything down in order (instead of the terminal killing goldmountd or
//! the appliance half-way through a mount and leaving it behind).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT, SIGTERM and SIGHUP: they only set a flag that
/// [`check_interrupt`] turns into an error between steps, so the cleanup
/// runs. Children get the default dispositions back at exec.
pub fn catch_interrupts() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `sa` is fully initialised (zeroed, then the handler, flags
        // and an emptied mask set); the handler only stores to an atomic,
        // which is async-signal-safe; no old action is asked for.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "cannot catch signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// An error once Ctrl-C (or SIGTERM/SIGHUP) arrived: called between steps.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: stopping after the current step and cleaning up");
    }
    Ok(())
}

/// `prog args…` in its own process group; its stdout, or an error with
/// its exit status and stderr.
pub fn output(prog: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", prog.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            prog.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A server the demo started, its output in a log file; stopped with
/// SIGTERM (then SIGKILL after a grace period) by [`Service::stop`] or on
/// drop.
pub struct Service {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `cmd` in its own process group with stdout and stderr going
    /// to `log`.
    pub fn start(name: &'static str, mut cmd: Command, log: &Path) -> Result<Self> {
        let f = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An error (with the log's end) when it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(c) = self.child.as_mut() else {
            bail!("{} was stopped", self.name);
        };
        if let Some(st) = c.try_wait()? {
            self.child = None;
            bail!(
                "{} exited ({st}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then waits up to `grace` for it to exit, then SIGKILL.
    /// Returns how it ended and how long the stop took; `None` if it was
    /// not running.
    pub fn stop(&mut self, grace: Duration) -> Result<Option<(ExitStatus, Duration)>> {
        let Some(mut c) = self.child.take() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        if c.try_wait()?.is_none() {
            // The pid is our unreaped child: it cannot have been reused.
            let _ = kill_process(Pid::from_child(&c), Signal::TERM);
            while t0.elapsed() < grace {
                if c.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if c.try_wait()?.is_none() {
                eprintln!(
                    "{} did not stop within {grace:?} of SIGTERM: SIGKILL",
                    self.name
                );
                let _ = c.kill();
            }
        }
        let st = c
            .wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        Ok(Some((st, t0.elapsed())))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(10)) {
            eprintln!("stopping {}: {e:#}", self.name);
        }
    }
}
