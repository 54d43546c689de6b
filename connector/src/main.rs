//! The `goldmount` command line: the host side of copy-data virtualization.

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connector::config::Config;

/// goldmount: bring copy-data clones up on this host and take them down again.
#[derive(Parser)]
#[command(name = "goldmount", version, about, long_about = None)]
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
    /// Check, install or remove the host setting that keeps LVM from
    /// autoactivating clone LUNs (LVM's devices file; reversible).
    Guard(cmd::guard::GuardArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOLDMOUNT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Probe(args) = &cli.command {
        return cmd::probe::run(args);
    }
    if let Command::Guard(args) = &cli.command {
        return match Config::load(cli.config.as_deref()).and_then(|cfg| cmd::guard::run(&cfg, args))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("goldmount guard: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let result = Config::load(cli.config.as_deref()).and_then(|cfg| match &cli.command {
        Command::Mount(a) => cmd::mount::run(cfg, a),
        Command::Unmount(a) => cmd::unmount::run(cfg, a),
        Command::List(a) => cmd::list::run(cfg, a),
        Command::Probe(_) | Command::Guard(_) => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goldmount: {e:#}");
            ExitCode::from(1)
        }
    }
}
