//! `goldmount list`: the volumes this host has, from the state store.

use anyhow::Result;
use clap::Args;
use connector::config::Config;
use connector::volume::Ctx;

/// Arguments of `goldmount list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the records (with manifests) as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `goldmount list`.
pub fn run(cfg: Config, args: &ListArgs) -> Result<()> {
    let ctx = Ctx::open(cfg)?;
    let recs = ctx.store.list()?;
    if args.json {
        let v: Vec<serde_json::Value> = recs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "volume": r.name,
                    "devices": r.devices,
                    "phase": r.phase,
                    "read_only": r.read_only,
                    "manifest": r.manifest,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if recs.is_empty() {
        println!("no volumes");
    }
    for r in recs {
        let mounts = r.manifest.as_ref().map(|m| m.mounts.len()).unwrap_or(0);
        let path = r
            .manifest
            .as_ref()
            .map(|m| m.path.display().to_string())
            .unwrap_or_default();
        println!(
            "{:<24} {:<10} {:<20} {} mounts  {}",
            r.name,
            format!("{:?}", r.phase).to_lowercase(),
            r.devices
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            mounts,
            path
        );
    }
    Ok(())
}
