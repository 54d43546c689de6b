//! The `goldmount` command line: the host side of copy-data virtualization.
//!
//! Today it has one subcommand, `probe`; attach/mount/unmount and the daemon
//! come with later work and are not shown until they exist.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// goldmount: bring copy-data clones up on this host and take them down again.
#[derive(Parser)]
#[command(name = "goldmount", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read-only probe of block devices or image files: partition tables and
    /// filesystem/volume signatures (blkid-compatible).
    Probe(cmd::probe::ProbeArgs),
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
    match cli.command {
        Command::Probe(args) => cmd::probe::run(&args),
    }
}
