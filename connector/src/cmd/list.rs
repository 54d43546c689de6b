//! `goldmount list`: the volumes this host has, from the engine.

use anyhow::Result;
use clap::Args;
use connector::engine::Engine;

/// Arguments of `goldmount list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the records (with manifests) as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `goldmount list`.
pub fn run(engine: &Engine, args: &ListArgs) -> Result<()> {
    let vols = engine.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&vols)?);
        return Ok(());
    }
    if vols.is_empty() {
        println!("no volumes");
    }
    for v in vols {
        let mounts = v.manifest.as_ref().map(|m| m.mounts.len()).unwrap_or(0);
        let path = v
            .manifest
            .as_ref()
            .map(|m| m.path.display().to_string())
            .unwrap_or_default();
        println!(
            "{:<24} {:<11} {:<20} {} mounts  {}{}",
            v.volume,
            format!("{:?}", v.phase).to_lowercase(),
            v.devices
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            mounts,
            path,
            v.quarantine
                .as_deref()
                .map(|q| format!("  ({q})"))
                .unwrap_or_default()
        );
        for p in &v.publications {
            println!(
                "  published at {} for {}{} ({} refs)",
                p.target.display(),
                p.id,
                if p.read_only { ", read-only" } else { "" },
                p.refs
            );
        }
    }
    Ok(())
}
