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
    /// It ran past its time limit; its process group was killed. When the
    /// tool did not die within the kill grace (`hung` is set) it is stuck
    /// in uninterruptible I/O in the kernel and was left behind: nothing
    /// more was waited for.
    #[error("{}", timeout_message(cmdline, timeout, stderr, hung.as_ref()))]
    Timeout {
        /// The command line (secrets redacted).
        cmdline: String,
        /// The limit.
        timeout: Duration,
        /// What it had written to stderr by then.
        stderr: String,
        /// Set when the tool was still there after SIGKILL and the kill
        /// grace: the process left behind. (A field of `Timeout` rather
        /// than a variant of its own so every crate's exhaustive mapping
        /// of `Timeout` keeps compiling; see [`ToolError::hung`].)
        hung: Option<Hung>,
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

    /// The process left behind when a killed tool did not die (stuck in
    /// uninterruptible I/O): callers must not assume its work is undone.
    pub fn hung(&self) -> Option<&Hung> {
        match self {
            ToolError::Timeout { hung, .. } => hung.as_ref(),
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

/// A killed tool that did not die: what the kernel says it is waiting in.
/// Such a process (state D, e.g. `umount` in `folio_wait_writeback` on a
/// multipath map with every path down and `queue_if_no_path`) only ends
/// when its I/O does; a thread of ours reaps it then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hung {
    /// Its process id.
    pub pid: u32,
    /// The state letter from `/proc/PID/stat` (`D`: uninterruptible sleep),
    /// `?` when unreadable.
    pub state: char,
    /// The kernel function it sleeps in (`/proc/PID/wchan`), empty when
    /// the kernel does not say.
    pub wchan: String,
}

impl Hung {
    /// Reads the state and wait channel of `pid`.
    fn read(pid: u32) -> Hung {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "PID (comm) S …": comm may hold spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .unwrap_or('?');
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .map(|w| w.trim().to_string())
            .unwrap_or_default();
        let wchan = if wchan == "0" { String::new() } else { wchan };
        Hung { pid, state, wchan }
    }
}

fn timeout_message(cmdline: &str, timeout: &Duration, stderr: &str, hung: Option<&Hung>) -> String {
    match hung {
        None => format!(
            "{cmdline} did not finish within {timeout:?} and was killed{}",
            tail(stderr)
        ),
        Some(h) => {
            let what = if h.state == 'D' {
                "is hanging in uninterruptible I/O".to_string()
            } else {
                "did not die".to_string()
            };
            let wchan = if h.wchan.is_empty() {
                String::new()
            } else {
                format!(", wchan {}", h.wchan)
            };
            format!(
                "{cmdline} did not finish within {timeout:?}; killed, it {what} (pid {}, state {}{wchan}) and was left behind{}",
                h.pid,
                h.state,
                tail(stderr)
            )
        }
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
    kill_grace: Duration,
    secrets: Vec<String>,
}

/// The time limit when none is set: long enough for lvm2 or mkfs on a slow
/// device, short enough that a hung tool is noticed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a killed tool is waited for when none is set: a process that
/// has not died 5 s after SIGKILL is stuck in the kernel.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

impl Tool {
    /// `program` with no arguments and [`DEFAULT_TIMEOUT`].
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Tool {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            kill_grace: DEFAULT_KILL_GRACE,
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

    /// How long to wait for a tool to die after SIGKILL (at its timeout)
    /// before leaving it behind as hung.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
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
                let hung = kill_group(child, self.kill_grace);
                // A hung tool holds our pipes for as long as it hangs:
                // take what is there, do not wait for their end.
                let grace = if hung.is_some() {
                    Duration::from_millis(50)
                } else {
                    EXIT_GRACE
                };
                if let Some(h) = &hung {
                    tracing::error!(cmd = %cmdline, pid = h.pid, state = %h.state, wchan = %h.wchan, "killed tool did not die; left behind");
                }
                return Err(ToolError::Timeout {
                    cmdline,
                    timeout: self.timeout,
                    stderr: Drain::finish(err, Instant::now() + grace)
                        .trim()
                        .to_string(),
                    hung,
                });
            }
            Err(source) => {
                let _ = kill_group(child, self.kill_grace);
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
/// started that stayed in it), then reap the tool — waiting `grace` at
/// most: a process in uninterruptible sleep does not die until its I/O
/// ends, which may be never. Such a one is handed to a detached thread
/// that reaps it whenever it dies (no zombie), and described.
fn kill_group(mut child: Child, grace: Duration) -> Option<Hung> {
    let id = child.id();
    if let Some(pid) = i32::try_from(id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    match child.wait_timeout(grace) {
        Ok(Some(_)) => return None,
        Ok(None) => {}
        Err(_) => {
            // Not waitable (already reaped?): nothing is left to wait for.
            if child.try_wait().is_ok() {
                return None;
            }
        }
    }
    let hung = Hung::read(id);
    let reaper = std::thread::Builder::new()
        .name(format!("reap-{id}"))
        .spawn(move || {
            let _ = child.wait();
        });
    if reaper.is_err() {
        tracing::warn!(pid = id, "cannot start a thread to reap the hung tool");
    }
    Some(hung)
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

    /// A FUSE filesystem served by this test, which reads every request
    /// after INIT and answers none until told to: a process waiting for an
    /// answer that the daemon has already read sleeps *uninterruptibly*
    /// once it gets SIGKILL (fs/fuse/dev.c request_wait_answer: the
    /// killable wait only gives up on requests still pending), which is
    /// the state a tool stuck on dead storage is in.
    struct SilentFuse {
        dir: std::path::PathBuf,
        dev: Arc<std::fs::File>,
        held: Arc<Mutex<Vec<u64>>>,
        answer: Arc<std::sync::atomic::AtomicBool>,
    }

    const FUSE_INIT: u32 = 26;
    const FUSE_INTERRUPT: u32 = 36;
    const ENOENT: i32 = 2;

    fn reply(dev: &std::fs::File, unique: u64, error: i32, body: &[u8]) {
        use std::io::Write;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
        msg.extend_from_slice(&(-error).to_le_bytes());
        msg.extend_from_slice(&unique.to_le_bytes());
        msg.extend_from_slice(body);
        let _ = (&*dev).write_all(&msg);
    }

    impl SilentFuse {
        fn mount() -> SilentFuse {
            let dir = std::env::temp_dir().join(format!("toolrun-fuse-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let dev = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
                .expect("/dev/fuse (this test needs FUSE and root)");
            let data = std::ffi::CString::new(format!(
                "fd={},rootmode=40000,user_id=0,group_id=0",
                std::os::fd::AsRawFd::as_raw_fd(&dev)
            ))
            .unwrap();
            rustix::mount::mount(
                "toolrun-test",
                &dir,
                "fuse",
                rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                data.as_c_str(),
            )
            .expect("mounting a FUSE filesystem (needs root)");
            let me = SilentFuse {
                dir,
                dev: Arc::new(dev),
                held: Arc::new(Mutex::new(Vec::new())),
                answer: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            };
            let (dev, held, answer) = (
                Arc::clone(&me.dev),
                Arc::clone(&me.held),
                Arc::clone(&me.answer),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match (&*dev).read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return, // ENODEV: unmounted
                    };
                    if n < 40 {
                        continue;
                    }
                    let opcode = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                    let unique = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                    match opcode {
                        FUSE_INIT => {
                            let mut out = [0u8; 64];
                            out[0..4].copy_from_slice(&7u32.to_le_bytes());
                            out[4..8].copy_from_slice(&31u32.to_le_bytes());
                            out[20..24].copy_from_slice(&4096u32.to_le_bytes());
                            reply(&dev, unique, 0, &out);
                        }
                        FUSE_INTERRUPT => {}
                        _ if answer.load(std::sync::atomic::Ordering::SeqCst) => {
                            reply(&dev, unique, ENOENT, &[]);
                        }
                        _ => held.lock().unwrap().push(unique),
                    }
                }
            });
            me
        }

        /// Answers every request read so far (and later ones) with ENOENT.
        fn release(&self) {
            self.answer.store(true, std::sync::atomic::Ordering::SeqCst);
            for u in self.held.lock().unwrap().drain(..) {
                reply(&self.dev, u, ENOENT, &[]);
            }
        }
    }

    impl Drop for SilentFuse {
        fn drop(&mut self) {
            self.release();
            let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// A tool that does not die after SIGKILL (state D on a FUSE request
    /// its daemon read and never answers) is left behind after the kill
    /// grace, described (pid, state D, wchan), and reaped by our thread
    /// once its I/O ends — instead of goldmount waiting for ever.
    #[test]
    fn a_tool_in_uninterruptible_sleep_is_left_behind_and_reaped_later() {
        let fuse = SilentFuse::mount();
        let target = fuse.dir.join("file");
        let t = Instant::now();
        let e = Tool::new("stat")
            .args([&target])
            .timeout(Duration::from_millis(500))
            .kill_grace(Duration::from_secs(1))
            .run()
            .unwrap_err();
        let took = t.elapsed();
        eprintln!("{e} after {took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        let h = e.hung().cloned().unwrap_or_else(|| panic!("not hung: {e}"));
        assert_eq!(h.state, 'D', "{h:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("is hanging in uninterruptible I/O (pid")
                && msg.contains("state D")
                && msg.ends_with("and was left behind"),
            "{msg}"
        );
        // Still there: a killed process that is a zombie would be 'Z'.
        assert!(std::path::Path::new(&format!("/proc/{}", h.pid)).exists());
        // Once the request is answered the kill takes effect and our
        // reaper thread collects it: no zombie is left.
        fuse.release();
        let t = Instant::now();
        while std::path::Path::new(&format!("/proc/{}", h.pid)).exists()
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{}", h.pid)).exists(),
            "pid {} not reaped: {}",
            h.pid,
            std::fs::read_to_string(format!("/proc/{}/stat", h.pid)).unwrap_or_default()
        );
    }

    /// A tool that dies on SIGKILL is a plain timeout, not a hung one.
    #[test]
    fn a_killed_tool_that_dies_is_not_hung() {
        let e = Tool::new("sleep")
            .args(["30"])
            .timeout(Duration::from_millis(200))
            .kill_grace(Duration::from_secs(2))
            .run()
            .unwrap_err();
        assert!(e.hung().is_none(), "{e}");
        assert!(e.to_string().ends_with("and was killed"), "{e}");
    }

    #[test]
    fn secrets_and_odd_arguments_in_the_command_line() {
        let t = Tool::new("iscsiadm")
            .args(["-v", "hunter2", "", "a b"])
            .secret("hunter2");
        assert_eq!(t.cmdline(), "iscsiadm -v *** \"\" \"a b\"");
    }
}
