//! `cargo xtask demo [--direct]`: the main job, end to end on this machine.
//!
//! The default is the product's one-call flow ([`onecall`]): a development
//! PKI, the reference appliance and the real `goldmountd`, which registers
//! this host; then one `goldmount-appliance mount` per clone. `--direct`
//! keeps the older flow ([`direct`]) that runs `goldmount mount` by hand on
//! clones the appliance presented, without the daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

mod direct;
mod host;
mod onecall;
mod procs;

const USAGE: &str = "usage: cargo xtask demo [--direct]
  (default)  the one-call flow: dev certificates, goldmount-appliance serve
             (loop backend, HTTPS) and goldmountd (mutual TLS, registers this
             host), then one `goldmount-appliance mount` per clone, side by
             side, a write kept apart, and everything taken down again
  --direct   the engine alone: the appliance presents three clones and
             `goldmount mount` is run for each, without goldmountd
Needs root (loop devices, mounts). Works in target/demo and removes it.";

/// Entry point of `cargo xtask demo`.
pub fn main(args: &[String]) -> Result<()> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => onecall::run(),
        ["--direct"] => direct::demo(),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unexpected arguments {args:?}\n{USAGE}"),
    }
}

/// The workspace root: xtask's manifest directory's parent, so the demo
/// works from any directory `cargo xtask` is called in.
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Cargo's target directory (absolute): `$CARGO_TARGET_DIR`, else
/// `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => workspace_root().join(t),
        None => workspace_root().join("target"),
    }
}

/// Builds the release binaries of `packages` and returns the release
/// directory they are in.
fn build(packages: &[&str]) -> Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "-q"])
        .current_dir(workspace_root());
    for p in packages {
        cmd.args(["-p", p]);
    }
    let st = cmd
        .status()
        .with_context(|| format!("building {}", packages.join(", ")))?;
    ensure!(st.success(), "cargo build of {packages:?} failed ({st})");
    Ok(target_dir().join("release"))
}

/// The files and directories under `root` down to `depth` levels, sorted,
/// relative, directories with a trailing `/`; `lost+found` left out.
fn tree(root: &Path, depth: usize) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            if rel == "lost+found" || rel.ends_with("/lost+found") {
                continue;
            }
            if p.is_dir() {
                out.push(format!("{rel}/"));
                if depth > 1 {
                    walk(&p, base, depth - 1, out);
                }
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, depth, &mut out);
    out
}
