//! `goldmount guard`: the host setting that keeps LVM from autoactivating
//! clone LUNs (LVM's devices file; see lvm/README.md). Documented and
//! reversible: `install` changes /etc/lvm, `remove` restores it.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use connector::config::Config;
use connector::state::{Action, StateStore};

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

/// Every device goldmount has taken over for a volume (LUNs, their partition
/// loops, the PVs it imported): they are clones and must never be listed in
/// the host's LVM devices file.
fn clone_devices(cfg: &Config) -> Result<Vec<PathBuf>> {
    let mut devs = Vec::new();
    if !cfg.state_path.exists() {
        return Ok(devs);
    }
    for rec in StateStore::open(&cfg.state_path)?.list()? {
        devs.extend(rec.devices.iter().cloned());
        for s in rec.steps {
            match s.action {
                Action::ImportVg { devices, .. } => devs.extend(devices),
                Action::AttachLoop {
                    device: Some(d), ..
                } => devs.push(d),
                _ => {}
            }
        }
    }
    devs.sort();
    devs.dedup();
    Ok(devs)
}

/// Runs `goldmount guard`.
pub fn run(cfg: &Config, args: &GuardArgs) -> Result<()> {
    let st = match args.action {
        GuardAction::Status => lvm::check_autoactivation_guard()?,
        GuardAction::Install => lvm::install_autoactivation_guard(&clone_devices(cfg)?)?,
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
