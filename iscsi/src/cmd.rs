//! Running `iscsiadm`: an argument vector, a timeout, stdout/stderr captured,
//! and a non-zero exit turned into [`IscsiError::Iscsiadm`] with its meaning.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::error::{IscsiError, IscsiadmFailure};
use crate::exitcode;
use crate::model::Portal;

/// Default limit for one iscsiadm call; a login to a dead portal retries for
/// a while inside iscsid, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The program run for every operation (`GOLDMOUNT_ISCSIADM` overrides it,
/// for hosts with open-iscsi in a non-standard place).
pub fn iscsiadm_program() -> String {
    std::env::var("GOLDMOUNT_ISCSIADM").unwrap_or_else(|_| "iscsiadm".to_string())
}

/// What one call is about, for errors and logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    pub op: String,
    pub target: Option<String>,
    pub portal: Option<Portal>,
}

impl Ctx {
    pub fn new(op: impl Into<String>, target: Option<&str>, portal: Option<&Portal>) -> Self {
        Ctx {
            op: op.into(),
            target: target.map(str::to_string),
            portal: portal.cloned(),
        }
    }
}

/// Output of a successful call.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: String,
}

/// Runs `iscsiadm args…`. `secret` values are masked in the debug log.
pub(crate) fn iscsiadm(
    ctx: &Ctx,
    args: &[&str],
    secrets: &[&str],
    timeout: Duration,
) -> Result<Output, IscsiError> {
    let program = iscsiadm_program();
    let shown: Vec<&str> = args
        .iter()
        .map(|a| if secrets.contains(a) { "***" } else { *a })
        .collect();
    tracing::debug!(op = %ctx.op, "running {program} {}", shown.join(" "));
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| IscsiError::Spawn {
            program: program.clone(),
            source,
        })?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let status = match child.wait_timeout(timeout) {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(IscsiError::Timeout {
                op: ctx.op.clone(),
                subject: crate::error::subject(&ctx.target, &ctx.portal),
                timeout,
                stderr: join(err),
            });
        }
    };
    let stdout = join(out);
    let stderr = join(err);
    match status.code() {
        Some(0) => Ok(Output { stdout }),
        code => {
            // Killed by a signal: report it as the generic error with a note.
            let code = code.unwrap_or(-1);
            let (name, meaning) = exitcode::describe(code);
            Err(IscsiError::Iscsiadm(Box::new(IscsiadmFailure {
                op: ctx.op.clone(),
                target: ctx.target.clone(),
                portal: ctx.portal.clone(),
                code,
                name,
                meaning,
                stderr: if code == -1 {
                    format!("terminated by {status}; {}", stderr.trim())
                } else {
                    stderr.trim().to_string()
                },
            })))
        }
    }
}

type Reader = std::thread::JoinHandle<String>;

fn reader(mut r: impl Read + Send + 'static) -> Reader {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn join(h: Option<Reader>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}
