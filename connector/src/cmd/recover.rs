//! `goldmount recover`: roll back interrupted mounts and finish interrupted
//! unmounts now.

use anyhow::Result;
use clap::Args;
use connector::engine::{Engine, RecoveryReport};

/// Arguments of `goldmount recover`.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn print(r: &RecoveryReport) {
    for v in &r.rolled_back {
        println!("rolled back the interrupted mount of volume {v}");
    }
    for v in &r.finished {
        println!("finished the interrupted unmount of volume {v}");
    }
    for v in &r.in_progress {
        println!("volume {v} is being changed by another goldmount process; left alone");
    }
    for v in &r.stale {
        println!("dropped the record of volume {v}: it is from before the host restarted");
    }
    for p in &r.unpublished {
        println!("took down the interrupted publication of volume {p}");
    }
}

/// Recovery at the start of a command that changes things: what it did goes
/// to stderr; a quarantined volume is reported, not fatal (it blocks nothing
/// else).
pub fn at_start(engine: &Engine) -> Result<()> {
    let r = engine.recover()?;
    for v in r.rolled_back.iter().chain(&r.finished) {
        eprintln!("goldmount: recovered volume {v} (an earlier goldmount was interrupted)");
    }
    for v in &r.stale {
        eprintln!(
            "goldmount: dropped the record of volume {v}: it is from before the host restarted"
        );
    }
    for (v, why) in &r.quarantined {
        eprintln!("goldmount: volume {v} is quarantined: {why}");
    }
    for p in &r.unpublished {
        eprintln!("goldmount: took down the interrupted publication of volume {p}");
    }
    Ok(())
}

/// Runs `goldmount recover`.
pub fn run(engine: &Engine, args: &RecoverArgs) -> Result<()> {
    let r = engine.recover()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r);
        for (v, why) in &r.quarantined {
            println!("volume {v} is quarantined: {why}");
        }
        if r.rolled_back.is_empty()
            && r.finished.is_empty()
            && r.quarantined.is_empty()
            && r.in_progress.is_empty()
            && r.stale.is_empty()
            && r.unpublished.is_empty()
        {
            println!("nothing to recover");
        }
    }
    if let Some((v, why)) = r.quarantined.first() {
        anyhow::bail!("volume {v} could not be recovered: {why}");
    }
    Ok(())
}
