//! Running `iscsiadm`: an argument vector, a timeout, stdout/stderr captured,
//! and a non-zero exit turned into [`IscsiError::Iscsiadm`] with its meaning.

use std::time::Duration;

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
    let tool = secrets
        .iter()
        .fold(toolrun::Tool::new(&program).args(args), |t, s| t.secret(*s))
        .timeout(timeout);
    tracing::debug!(op = %ctx.op, "running {}", tool.cmdline());
    let out = match tool.run_any_status() {
        Ok(out) => out,
        Err(toolrun::ToolError::Timeout { stderr, .. }) => {
            return Err(IscsiError::Timeout {
                op: ctx.op.clone(),
                subject: crate::error::subject(&ctx.target, &ctx.portal),
                timeout,
                stderr,
            })
        }
        Err(toolrun::ToolError::Spawn { source, .. })
        | Err(toolrun::ToolError::Wait { source, .. }) => {
            return Err(IscsiError::Spawn { program, source })
        }
        Err(e @ toolrun::ToolError::Failed { .. }) => {
            // run_any_status never fails on the exit status; keep the
            // runner's words if that ever changes.
            return Err(IscsiError::Spawn {
                program,
                source: std::io::Error::other(e.to_string()),
            });
        }
    };
    let status = out.status;
    let stderr = out.stderr;
    match status.code() {
        Some(0) => Ok(Output { stdout: out.stdout }),
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
