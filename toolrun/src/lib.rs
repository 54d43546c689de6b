//! Running external tools (mount, losetup, lvm2, iscsiadm, zpool…) the one
//! way every goldmount crate uses: an argument vector, never a shell string;
//! a time limit after which the tool *and everything it started* is killed
//! (it runs in its own process group); stdout and stderr drained
//! concurrently, so a chatty tool never blocks on a full pipe; a helper it
//! leaves running with our pipes (a FUSE daemon after `mount`) cannot keep
//! us waiting once the tool itself has exited; and stderr in the error, so a
//! failure explains itself.
//!
//! A side effect of the own process group, kept on purpose: a Ctrl-C at the
//! terminal reaches goldmount, not the tool it is running, so an lvm2 or
//! `vgimportclone` step runs to its end (or its timeout) instead of being
//! cut off half-way through rewriting metadata.
//!
//! Crates keep their own typed errors: they map [`ToolError`] into them.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// Why a tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started (usually: not installed).
    #[error("cannot run {program}: {source}{}", not_installed_hint(source))]
    Spawn {
        /// Program name as given.
        program: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its time limit; its process group was killed.
    #[error(
        "{cmdline} did not finish within {timeout:?} and was killed{}",
        tail(stderr)
    )]
    Timeout {
        /// The command line (secrets redacted).
        cmdline: String,
        /// The limit.
        timeout: Duration,
        /// What it had written to stderr by then.
        stderr: String,
    },
    /// It exited unsuccessfully (non-zero status or killed by a signal).
    #[error("{cmdline} failed ({status}): {stderr}")]
    Failed {
        /// The command line (secrets redacted).
        cmdline: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stdout (some tools explain failures there).
        stdout: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// Waiting for it failed (an OS error, not the tool's).
    #[error("waiting for {cmdline}: {source}")]
    Wait {
        /// The command line (secrets redacted).
        cmdline: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ToolError {
    /// The exit code of a tool that ran and failed, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ToolError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }

    /// The tool's stderr, when it got far enough to write any.
    pub fn stderr(&self) -> &str {
        match self {
            ToolError::Failed { stderr, .. } | ToolError::Timeout { stderr, .. } => stderr,
            _ => "",
        }
    }
}

fn not_installed_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        " (is it installed?)"
    } else {
        ""
    }
}

fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// What a finished tool printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error (tools print warnings there even on success).
    pub stderr: String,
}

/// One tool invocation, built up and then run.
#[derive(Debug, Clone)]
pub struct Tool {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    secrets: Vec<String>,
}

/// The time limit when none is set: long enough for lvm2 or mkfs on a slow
/// device, short enough that a hung tool is noticed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Tool {
    /// `program` with no arguments and [`DEFAULT_TIMEOUT`].
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Tool {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            secrets: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the tool.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// An argument that must never appear in logs or errors (a CHAP secret):
    /// it is shown as `***`.
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        let v = value.into();
        if !v.is_empty() {
            self.secrets.push(v);
        }
        self
    }

    /// The command line as logs and errors show it: arguments that are empty
    /// or contain whitespace are quoted, secrets are `***`.
    pub fn cmdline(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if self.secrets.iter().any(|x| *x == a) {
                s.push_str("***");
            } else if a.is_empty() || a.contains(char::is_whitespace) {
                s.push_str(&format!("{a:?}"));
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// Runs it; a non-zero exit is [`ToolError::Failed`].
    pub fn run(&self) -> Result<Output, ToolError> {
        let out = self.run_any_status()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(ToolError::Failed {
                cmdline: self.cmdline(),
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    /// Runs it and returns whatever status it exited with; only a failure
    /// to start, to wait or a timeout is an error. For tools whose exit
    /// codes carry meaning the caller decodes (iscsiadm).
    pub fn run_any_status(&self) -> Result<Output, ToolError> {
        let cmdline = self.cmdline();
        tracing::debug!(cmd = %cmdline, "running");
        let started = Instant::now();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| ToolError::Spawn {
                program: self.program.to_string_lossy().into_owned(),
                source,
            })?;
        let out = child.stdout.take().map(Drain::start);
        let err = child.stderr.take().map(Drain::start);
        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                kill_group(&mut child);
                return Err(ToolError::Timeout {
                    cmdline,
                    timeout: self.timeout,
                    stderr: Drain::finish(err, Instant::now() + EXIT_GRACE)
                        .trim()
                        .to_string(),
                });
            }
            Err(source) => {
                kill_group(&mut child);
                return Err(ToolError::Wait { cmdline, source });
            }
        };
        // The tool has exited. Whatever it started and left running keeps
        // running (killing it could take a FUSE mount down), but if it holds
        // our pipes we stop reading after a short grace.
        let grace_ends = Instant::now() + EXIT_GRACE;
        let stdout = Drain::finish(out, grace_ends);
        let stderr = Drain::finish(err, grace_ends);
        tracing::trace!(cmd = %cmdline, %status, ms = started.elapsed().as_millis() as u64, "finished");
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// How long to keep reading a pipe after the tool exited or was killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Runs `program args…` within `timeout`; success means exit status 0.
pub fn run<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    timeout: Duration,
) -> Result<Output, ToolError> {
    Tool::new(program).args(args).timeout(timeout).run()
}

/// A pipe read to its end by a thread of its own, into a buffer we can look
/// at even if the end never comes.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl Drain {
    fn start<R: Read + Send + 'static>(mut r: R) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => match sink.lock() {
                        Ok(mut b) => b.extend_from_slice(&chunk[..n]),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Drain { buf, reader }
    }

    /// What was read, waiting until `deadline` at most for the end of the
    /// pipe (a left-behind helper may hold it open for ever; its reader
    /// thread is then left to finish on its own).
    fn finish(d: Option<Drain>, deadline: Instant) -> String {
        let Some(d) = d else {
            return String::new();
        };
        while !d.reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let text = match d.buf.lock() {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(p) => String::from_utf8_lossy(&p.into_inner()).into_owned(),
        };
        text
    }
}

/// SIGKILL to the hung tool's process group (the tool and the helpers it
/// started that stayed in it), then reap the tool.
fn kill_group(child: &mut Child) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn stdout_stderr_and_env() {
        let o = Tool::new("sh")
            .args(["-c", "echo out; echo err >&2; echo $A"])
            .env("A", "b")
            .run()
            .unwrap();
        assert_eq!(o.stdout, "out\nb\n");
        assert_eq!(o.stderr, "err\n");
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let e = run(
            "sh",
            &["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(e.code(), Some(3));
        assert_eq!(e.stderr(), "boom");
        assert!(e.to_string().contains("boom"), "{e}");
        let o = Tool::new("sh")
            .args(["-c", "exit 4"])
            .run_any_status()
            .unwrap();
        assert_eq!(o.status.code(), Some(4));
    }

    #[test]
    fn spawn_error_names_the_program() {
        let e = run("/nonexistent/tool", &[] as &[&str], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&e, ToolError::Spawn { program, .. } if program == "/nonexistent/tool"));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        // The grandchild inherits the pipes; killing only `sh` would leave
        // the readers waiting for it.
        let t = Instant::now();
        let e = Tool::new("sh")
            .args(["-c", "echo started >&2; sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(
            matches!(&e, ToolError::Timeout { stderr, .. } if stderr == "started"),
            "{e}"
        );
    }

    #[test]
    fn a_left_behind_helper_does_not_hold_us_and_is_not_killed() {
        let dir = std::env::temp_dir().join(format!("toolrun-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mark = dir.join("helper-ran");
        let script = format!("(sleep 3; touch {}) & echo done", mark.display());
        let t = Instant::now();
        let o = Tool::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap();
        assert_eq!(o.stdout, "done\n");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // The helper (a daemon, in real life) still runs to completion.
        std::thread::sleep(Duration::from_secs(5));
        assert!(mark.exists(), "the helper left running was killed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn large_output_does_not_dead_lock() {
        let o = Tool::new("sh")
            .args([
                "-c",
                "head -c 1000000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero >&2",
            ])
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap();
        assert_eq!(o.stdout.len(), 1_000_000);
        assert_eq!(o.stderr.len(), 300_000);
    }

    #[test]
    fn secrets_and_odd_arguments_in_the_command_line() {
        let t = Tool::new("iscsiadm")
            .args(["-v", "hunter2", "", "a b"])
            .secret("hunter2");
        assert_eq!(t.cmdline(), "iscsiadm -v *** \"\" \"a b\"");
    }
}
