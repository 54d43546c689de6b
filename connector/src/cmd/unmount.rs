//! `goldmount unmount`: undo everything `mount` did, newest first.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use connector::engine::{Engine, UnmountOptions};

/// The unmount finished but some filesystem may have lost data: `goldmount`
/// exits with status 6 (the report says which filesystem and why).
#[derive(Debug, thiserror::Error)]
#[error("data written since the last sync may be lost on {0} filesystem(s)")]
pub struct DataLossExit(pub usize);

/// Arguments of `goldmount unmount`.
#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// Volume name.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Detach busy mounts lazily and take publications down instead of
    /// refusing (reports what it did).
    #[arg(long)]
    force: bool,
    /// Deadline of each teardown step (flushing a filesystem, the kernel
    /// releasing a device), in seconds. Default: derived from the
    /// transport's own timeouts (an iSCSI session's recovery_tmo plus its
    /// NOP-out timeout, plus 30 s), at least 30 s.
    #[arg(long, value_name = "SECS")]
    deadline: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `goldmount unmount`.
pub fn run(engine: &Engine, args: &UnmountArgs) -> Result<()> {
    let opts = UnmountOptions {
        force: args.force,
        deadline: args.deadline.map(Duration::from_secs),
    };
    let r = engine.unmount_with(&super::volume(&args.volume)?, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.not_mounted {
        println!("volume {} is not mounted; nothing to do", r.volume);
    } else {
        for q in &r.queueing_off {
            println!(
                "  queueing turned off on multipath map {}: {}",
                q.map, q.reason
            );
        }
        for u in &r.undone {
            println!("  {u}");
        }
        for f in &r.forced {
            println!("  FORCED: {f} was busy and was detached lazily");
        }
        println!("volume {} unmounted", r.volume);
    }
    for l in &r.data_loss {
        eprintln!("goldmount: WARNING: {l}");
    }
    if !r.data_loss.is_empty() {
        return Err(DataLossExit(r.data_loss.len()).into());
    }
    Ok(())
}
