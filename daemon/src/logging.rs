//! Log setup: text for a person (coloured only on a terminal) or one JSON
//! object per line for journald and log shippers, filtered by `[log] level`
//! or `GOLDMOUNT_LOG`, always on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Fails when `GOLDMOUNT_LOG` is not a
/// filter, or when a subscriber is installed already.
pub fn init(c: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("GOLDMOUNT_LOG") {
        Ok(v) => EnvFilter::try_new(&v)
            .map_err(|e| format!("GOLDMOUNT_LOG={v:?} is not a log filter: {e}"))?,
        Err(_) => EnvFilter::try_new(&c.level)
            .map_err(|e| format!("log.level {:?} is not a log filter: {e}", c.level))?,
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let r = match c.format {
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => b.json().with_current_span(false).try_init(),
    };
    r.map_err(|e| format!("cannot install the logger: {e}"))
}
