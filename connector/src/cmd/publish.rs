//! `goldmount publish` / `unpublish`: bind a mounted volume's whole tree at a
//! consumer's path (every submount read-only when asked), and take it down.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use connector::engine::{Engine, Outcome};

/// Arguments of `goldmount publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Volume name.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Where the tree appears (absolute; created without following symlinks;
    /// not under /proc /sys /dev /etc /usr /boot or goldmount's own paths).
    #[arg(long, value_name = "PATH")]
    target: PathBuf,
    /// Consumer id (default: the target path). The same id again adds a reference.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Every mount of the publication read-only.
    #[arg(long)]
    read_only: bool,
    /// Print the publication as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `goldmount unpublish`.
#[derive(Args, Debug)]
pub struct UnpublishArgs {
    /// Volume name.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Consumer id (or the target path it was published at).
    #[arg(long, value_name = "ID")]
    id: String,
    /// Detach lazily when busy.
    #[arg(long)]
    force: bool,
}

/// Runs `goldmount publish`.
pub fn run_publish(engine: &Engine, a: &PublishArgs) -> Result<()> {
    let id =
        a.id.clone()
            .unwrap_or_else(|| a.target.display().to_string());
    let out = engine.publish(&super::volume(&a.volume)?, &id, &a.target, a.read_only)?;
    let created = out.created();
    let p = out.into_inner();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "volume {} {} at {} for {} ({} refs{})",
            a.volume,
            if created {
                "published"
            } else {
                "already published"
            },
            p.target.display(),
            p.id,
            p.refs,
            if p.read_only { ", read-only" } else { "" }
        );
    }
    Ok(())
}

/// Runs `goldmount unpublish`.
pub fn run_unpublish(engine: &Engine, a: &UnpublishArgs) -> Result<()> {
    match engine.unpublish(&super::volume(&a.volume)?, &a.id, a.force)? {
        Outcome::Created(0) => println!("publication {} of volume {} taken down", a.id, a.volume),
        Outcome::Created(n) => println!(
            "publication {} of volume {}: {n} references left",
            a.id, a.volume
        ),
        Outcome::Existing(_) => println!(
            "volume {} has no publication {}; nothing to do",
            a.volume, a.id
        ),
    }
    Ok(())
}
