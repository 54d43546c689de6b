//! `goldmount unmount`: undo everything `mount` did, newest first.

use anyhow::Result;
use clap::Args;
use connector::engine::Engine;

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
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `goldmount unmount`.
pub fn run(engine: &Engine, args: &UnmountArgs) -> Result<()> {
    let r = engine.unmount(&super::volume(&args.volume)?, args.force)?;
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
