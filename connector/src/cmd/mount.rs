//! `goldmount mount`: bring everything on a LUN up under one volume path.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use connector::engine::{self, DeviceSource, Engine, MountOptions, MountRequest};
use connector::manifest::Manifest;

/// Arguments of `goldmount mount`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["device", "wwid", "loop_backing", "presentation"])))]
pub struct MountArgs {
    /// The LUN's block device (or an image file, attached through a loop
    /// device). Repeat for a clone set whose volume group spans several LUNs.
    #[arg(long, value_name = "DEV")]
    device: Vec<PathBuf>,
    /// Wait for the device with this WWID (naa.…), verified from the
    /// device's VPD pages (the multipath map when multipathd owns it).
    /// Repeatable, like --device.
    #[arg(long, value_name = "WWID")]
    wwid: Vec<String>,
    /// The appliance's loop backend: wait for the loop device it attached
    /// over this clone file (absolute path). Repeatable.
    #[arg(long, value_name = "FILE")]
    loop_backing: Vec<PathBuf>,
    /// A presentation document as the appliance returns it (the JSON
    /// `goldmount-appliance present` prints; `-` reads stdin): goldmount
    /// logs in to the iSCSI target where no session exists, scans exactly
    /// that LUN, waits for it verified by its WWN, and on unmount removes
    /// the LUN's devices and logs out of sessions nothing else uses. An
    /// iSCSI document may carry `"chap": {"username", "password"}`.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    presentation: Vec<PathBuf>,
    /// How long to wait for `--wwid` / `--loop-backing` / `--presentation`
    /// to appear, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// For `--wwid`: `auto` takes the multipath map when multipathd runs and
    /// the LUN has (or will have) several paths, asking multipathd for it
    /// when it does not make it on its own; `require` fails without a map;
    /// `never` takes a path even when a map exists.
    #[arg(long, value_enum, default_value_t = Multipath::Auto)]
    multipath: Multipath,
    /// Volume name: the tree appears at <volumes_root>/<NAME>.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Mount read-only, without replaying journals (nothing is written).
    #[arg(long)]
    read_only: bool,
    /// Give each XFS of the clone a new UUID (xfs_admin -U generate) after a
    /// log-replaying mount. Changes the clone's data: opt-in.
    #[arg(long, conflicts_with = "read_only")]
    regen_uuid: bool,
    /// Give each ZFS pool of the clone a new pool GUID after import (zpool
    /// reguid; rewrites the clone's labels). Needed for a second clone of the
    /// same gold pool: OpenZFS never opens two pools with one GUID. Opt-in.
    #[arg(long, conflicts_with = "read_only")]
    zfs_reguid: bool,
    /// If the kernel refuses a btrfs whose fsid is already mounted (Linux
    /// before 6.7 has no temp-fsid), give the clone a new fsid with
    /// btrfstune -m and retry. Changes the clone's superblocks: opt-in.
    #[arg(long, conflicts_with = "read_only")]
    btrfs_new_fsid: bool,
    /// Let setuid binaries and device nodes of the clone take effect (mount
    /// without nosuid,nodev). Only for a clone trusted as much as the host.
    #[arg(long)]
    allow_suid_dev: bool,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// `--multipath` values (the executor's wait policy).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multipath {
    /// The map when the LUN is multipathed, else the path.
    Auto,
    /// The map, or an error.
    Require,
    /// Always a path.
    Never,
}

impl From<Multipath> for engine::Multipath {
    fn from(m: Multipath) -> Self {
        match m {
            Multipath::Auto => engine::Multipath::Auto,
            Multipath::Require => engine::Multipath::Require,
            Multipath::Never => engine::Multipath::Never,
        }
    }
}

/// Prints a manifest for people.
pub fn print_manifest(m: &Manifest) {
    println!(
        "volume {} at {} ({:?} layout{})",
        m.volume,
        m.path.display(),
        m.layout,
        if m.read_only { ", read-only" } else { "" }
    );
    for mi in &m.mounts {
        println!(
            "  {:<40} {:<6} {} {}{}",
            mi.mount_path.display(),
            mi.fs_type,
            mi.source.display(),
            mi.original_mountpoint
                .as_deref()
                .map(|o| format!("(was {o}) "))
                .unwrap_or_default(),
            mi.options
        );
    }
    for s in &m.skipped {
        println!("  skipped {} ({}): {}", s.source, s.what, s.reason);
    }
    for u in &m.unresolved {
        println!(
            "  fstab entry {} {} not resolved: {}",
            u.spec, u.mountpoint, u.reason
        );
    }
    for n in &m.notes {
        println!("  note: {n}");
    }
}

/// Runs `goldmount mount`.
pub fn run(engine: &Engine, args: &MountArgs) -> Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let mut sources: Vec<DeviceSource> = args
        .device
        .iter()
        .map(|p| DeviceSource::Device { path: p.clone() })
        .collect();
    for w in &args.wwid {
        if w.starts_with('/') {
            return Err(
                engine::EngineError::invalid(format!("--wwid {w}: a path is not a WWID"))
                    .with_hint("for the appliance's loop backend use --loop-backing FILE")
                    .into(),
            );
        } else {
            sources.push(DeviceSource::Wwid {
                wwid: w.clone(),
                timeout,
                multipath: args.multipath.into(),
            });
        }
    }
    for f in &args.loop_backing {
        sources.push(DeviceSource::LoopBacking {
            file: f.clone(),
            timeout,
        });
    }
    for f in &args.presentation {
        let text = read_presentation(f)?;
        sources.push(DeviceSource::from_presentation_json(
            &text,
            timeout,
            args.multipath.into(),
        )?);
    }
    let req = MountRequest {
        volume: super::volume(&args.volume)?,
        sources,
        options: MountOptions {
            read_only: args.read_only,
            regen_xfs_uuid: args.regen_uuid,
            zfs_reguid: args.zfs_reguid,
            btrfs_new_fsid: args.btrfs_new_fsid,
            allow_suid_dev: args.allow_suid_dev,
        },
    };
    let m = engine.mount(&req)?.into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        print_manifest(&m);
    }
    Ok(())
}

/// Reads a presentation document (at most 64 KiB; `-` is stdin).
fn read_presentation(f: &std::path::Path) -> Result<String> {
    use std::io::Read;
    const CAP: u64 = 64 * 1024;
    let mut text = String::new();
    let n = if f == std::path::Path::new("-") {
        std::io::stdin().take(CAP + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(f).and_then(|h| h.take(CAP + 1).read_to_string(&mut text))
    }
    .map_err(|e| {
        engine::EngineError::invalid(format!("cannot read the presentation {}: {e}", f.display()))
    })?;
    if n as u64 > CAP {
        return Err(engine::EngineError::invalid(format!(
            "presentation {} is larger than 64 KiB: not a presentation document",
            f.display()
        ))
        .into());
    }
    Ok(text)
}
