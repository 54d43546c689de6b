//! `cargo xtask demo|test|lab|bench`: the project's automation entry points.
//! This file only dispatches; each subcommand lives in its own module.

use anyhow::{bail, Result};

mod bench;
mod demo;
/// The sample gold disk, shared with the connector's host tests.
#[path = "../../tests/src/golddisk.rs"]
mod golddisk;
mod lab;
mod prereqs;
mod test;

/// Errors print as one chain of causes, never with a backtrace: CI keeps
/// only the end of the console, and that space belongs to the reason.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("lab") => lab::main(&args[1..]),
        Some("test") => test::main(&args[1..]),
        Some("demo") => demo::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some(cmd) => bail!("xtask {cmd}: not written yet"),
        None => bail!("usage: cargo xtask demo|test|lab|bench"),
    }
}
