//! The crate's one way to run `zpool`, `zfs` and `umount`: through
//! `toolrun`, with a failure turned into [`ZfsError::Tool`] that says what
//! was being done.

use std::time::Duration;

use toolrun::{Output, ToolError};

use crate::error::{Result, ZfsError};

pub(crate) use toolrun::DEFAULT_TIMEOUT;

/// `zpool import` reads every label and may replay the intent log: slow
/// under emulation and on big pools, so it gets more time than other tools.
pub(crate) const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `prog args…`; the raw [`ToolError`] for callers that look at stderr
/// (to retry with `-f`, or to tell "busy" apart).
pub(crate) fn raw(
    prog: &str,
    args: &[&str],
    timeout: Duration,
) -> std::result::Result<Output, ToolError> {
    toolrun::run(prog, args, timeout)
}

/// Runs `prog args…`; a failure is [`ZfsError::Tool`] with `what`.
pub(crate) fn run(
    prog: &str,
    args: &[&str],
    timeout: Duration,
    what: impl FnOnce() -> String,
) -> Result<Output> {
    raw(prog, args, timeout).map_err(|error| tool_error(what(), error))
}

/// [`ZfsError::Tool`] for `error` while doing `what`.
pub(crate) fn tool_error(what: String, error: ToolError) -> ZfsError {
    ZfsError::Tool { what, error }
}
