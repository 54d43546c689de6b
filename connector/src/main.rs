//! The `goldmount` command line: the host side of copy-data virtualization.
//! A thin door onto the engine: it parses arguments into typed requests,
//! prints results, and turns engine error kinds into exit codes.

mod cmd;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connector::config::Config;
use connector::engine::{Engine, EngineError};

/// goldmount: bring copy-data clones up on this host and take them down again.
#[derive(Parser)]
#[command(
    name = "goldmount",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 done; 1 internal error or something unavailable (a LUN that never \
appeared, a missing tool); 2 invalid request or usage; 3 conflict (the data is held by another \
volume, the volume exists with other devices, it is in use); 4 not found; 5 busy (another \
goldmount process is changing that volume — try again); 6 unmounted, but data written since the \
last sync may be lost (a flush failed or the filesystem recorded an error: see the warnings)."
)]
struct Cli {
    /// Config file (default /etc/goldmount/config.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read-only probe of block devices or image files: partition tables and
    /// filesystem/volume signatures (blkid-compatible).
    Probe(cmd::probe::ProbeArgs),
    /// Mount everything on a LUN (partitions, filesystems, the original fstab
    /// tree) clone-safely under one volume path; prints the manifest.
    Mount(cmd::mount::MountArgs),
    /// Unmount a volume and undo every step, newest first.
    Unmount(cmd::unmount::UnmountArgs),
    /// List the volumes on this host.
    List(cmd::list::ListArgs),
    /// Roll back interrupted mounts and finish interrupted unmounts now
    /// (mount and unmount also do it once when they start).
    Recover(cmd::recover::RecoverArgs),
    /// Bind a mounted volume's whole tree at another path for a consumer.
    Publish(cmd::publish::PublishArgs),
    /// Take a consumer's publication down (one reference at a time).
    Unpublish(cmd::publish::UnpublishArgs),
    /// Check, install or remove the host setting that keeps LVM from
    /// autoactivating clone LUNs (LVM's devices file; reversible).
    Guard(cmd::guard::GuardArgs),
    /// A development PKI for the control API (CA, server and client
    /// certificates) for demos and tests.
    Certs(cmd::certs::CertsArgs),
    /// Register this host (IQNs, online FC WWPNs, callback) with the appliance once.
    Register(cmd::register::RegisterArgs),
    /// This host at a glance: identity, registration (asked read-only),
    /// volumes, operations in flight.
    Status(cmd::status::StatusArgs),
    /// Have the appliance clone gold copy GOLD and mount the clone here
    /// (through goldmountd when it runs, else in-process); prints where.
    Clone(cmd::clone::CloneArgs),
    /// Take a cloned volume away: unmount here, unpresent, delete the clone.
    Unclone(cmd::clone::UncloneArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOLDMOUNT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Probe(args) = &cli.command {
        return cmd::probe::run(args);
    }
    if let Command::Register(args) = &cli.command {
        return cmd::register::run(args, cli.config.as_deref());
    }
    if let Command::Clone(args) = &cli.command {
        return cmd::clone::run_clone(args, cli.config.as_deref());
    }
    if let Command::Unclone(args) = &cli.command {
        return cmd::clone::run_unclone(args, cli.config.as_deref());
    }
    if let Command::Certs(args) = &cli.command {
        return match cmd::certs::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("goldmount: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let result = run(&cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cmd::unmount::DataLossExit>().is_some() => {
            eprintln!("goldmount: {e:#}");
            ExitCode::from(6)
        }
        Err(e) => {
            let engine = e.chain().find_map(|c| c.downcast_ref::<EngineError>());
            eprintln!("goldmount: {e:#}");
            if let Some(h) = engine.and_then(|x| x.hint.as_deref()) {
                eprintln!("  hint: {h}");
            }
            ExitCode::from(engine.map(|x| x.kind.exit_code()).unwrap_or(1))
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    let engine = Engine::open(cfg)?;
    // Recovery once at process start, for the commands that change things.
    if matches!(
        cli.command,
        Command::Mount(_) | Command::Unmount(_) | Command::Publish(_) | Command::Unpublish(_)
    ) {
        cmd::recover::at_start(&engine)?;
    }
    match &cli.command {
        Command::Mount(a) => cmd::mount::run(&engine, a),
        Command::Unmount(a) => cmd::unmount::run(&engine, a),
        Command::List(a) => cmd::list::run(&engine, a),
        Command::Recover(a) => cmd::recover::run(&engine, a),
        Command::Publish(a) => cmd::publish::run_publish(&engine, a),
        Command::Unpublish(a) => cmd::publish::run_unpublish(&engine, a),
        Command::Guard(a) => cmd::guard::run(&engine, a),
        Command::Status(a) => cmd::status::run(&engine, a, cli.config.as_deref()),
        Command::Probe(_)
        | Command::Certs(_)
        | Command::Register(_)
        | Command::Clone(_)
        | Command::Unclone(_) => Ok(()),
    }
}
