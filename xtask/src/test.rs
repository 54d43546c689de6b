//! `cargo xtask test [--no-lab] [--no-lint]`: everything CI runs, in order —
//! install prerequisites, rustfmt, clippy, the workspace tests, then the
//! real-kernel lab suite.

use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::prereqs;

const USAGE: &str = "usage: cargo xtask test [--no-lab] [--no-lint]";

fn cargo(args: &[&str]) -> Result<()> {
    eprintln!("xtask test: cargo {}", args.join(" "));
    let st = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    ensure!(st.success(), "cargo {} failed ({st})", args.join(" "));
    Ok(())
}

/// Entry point of `cargo xtask test`.
pub fn main(args: &[String]) -> Result<()> {
    let mut lab = true;
    let mut lint = true;
    for a in args {
        match a.as_str() {
            "--no-lab" => lab = false,
            "--no-lint" => lint = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    prereqs::ensure_apt(prereqs::HOST_TEST_PACKAGES)?;
    // goldmountd's conformance test runs schemathesis from this venv.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    prereqs::ensure_schemathesis(manifest.parent().unwrap_or(manifest))?;
    if lint {
        cargo(&["fmt", "--all", "--", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    // The ZFS reguid helper's host test loads libzpool (OpenZFS 2.1's
    // userland, from Debian contrib) from the lab's private prefix.
    let zfs_libs = crate::lab::zfs::ensure_userland()?;
    std::env::set_var("GOLDMOUNT_ZFS_LIB_DIR", &zfs_libs);
    // --no-fail-fast: one CI run reports every failing test binary, not the first.
    cargo(&["test", "--workspace", "--no-fail-fast"])?;
    if lab {
        crate::lab::main(&["--install".to_string()])?;
    }
    Ok(())
}
