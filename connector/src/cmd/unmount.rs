//! `goldmount unmount`: undo everything `mount` did, newest first.

use anyhow::Result;
use clap::Args;
use connector::config::Config;
use connector::volume::{self, Ctx};

/// Arguments of `goldmount unmount`.
#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// Volume name.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Detach busy mounts lazily instead of refusing (reports what it did).
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `goldmount unmount`.
pub fn run(cfg: Config, args: &UnmountArgs) -> Result<()> {
    let ctx = Ctx::open(cfg)?;
    let r = volume::unmount(&ctx, &args.volume, args.force)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.not_mounted {
        println!("volume {} is not mounted; nothing to do", r.volume);
    } else {
        for u in &r.undone {
            println!("  {u}");
        }
        for f in &r.forced {
            println!("  FORCED: {f} was busy and was detached lazily");
        }
        println!("volume {} unmounted", r.volume);
    }
    Ok(())
}
