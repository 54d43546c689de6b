//! `cargo xtask demo|test|lab|bench`: the project's automation entry points.

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(cmd) => bail!("xtask {cmd}: not written yet"),
        None => bail!("usage: cargo xtask demo|test|lab|bench"),
    }
}
