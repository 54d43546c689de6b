//! `goldmount guard`: the host setting that keeps LVM from autoactivating
//! clone LUNs (LVM's devices file; see lvm/README.md). Documented and
//! reversible: `install` changes /etc/lvm, `remove` restores it.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use connector::engine::Engine;

/// What to do with the guard.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GuardAction {
    /// Show whether clones are protected from autoactivation.
    Status,
    /// Enable LVM's devices file listing the host's own PVs.
    Install,
    /// Undo what `install` changed.
    Remove,
}

/// Arguments of `goldmount guard`.
#[derive(Args, Debug)]
pub struct GuardArgs {
    /// status (default), install or remove.
    #[arg(value_enum, default_value_t = GuardAction::Status)]
    action: GuardAction,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// The devices of every volume in the state store.
fn clone_devices(engine: &Engine) -> Result<Vec<PathBuf>> {
    Ok(engine.store().clone_devices()?)
}

/// Runs `goldmount guard`.
pub fn run(engine: &Engine, args: &GuardArgs) -> Result<()> {
    let st = match args.action {
        GuardAction::Status => lvm::check_autoactivation_guard(&clone_devices(engine)?)?,
        GuardAction::Install => lvm::install_autoactivation_guard(&clone_devices(engine)?)?,
        GuardAction::Remove => lvm::remove_autoactivation_guard()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    println!(
        "LVM autoactivation guard: {}",
        if st.installed {
            "installed (clones cannot be autoactivated)"
        } else {
            "NOT installed"
        }
    );
    println!(
        "  use_devicesfile={} devices file {} ({}), {} PVs listed, set by goldmount: {}",
        st.use_devicesfile,
        st.devices_file.display(),
        if st.devices_file_exists {
            "exists"
        } else {
            "missing"
        },
        st.listed_pvids.len(),
        st.set_by_goldmount
    );
    for p in &st.problems {
        println!("  problem: {p}");
    }
    Ok(())
}
