//! Host packages the test suite needs, installed idempotently with apt-get.
//!
//! The fixture images are made at test time by the real tools (mkfs.*,
//! sgdisk, cryptsetup, xorriso, zfs-fuse…) and compared against blkid, so a
//! fresh Debian 12 machine needs these before `cargo test` means anything.

use std::process::Command;

use anyhow::{ensure, Context, Result};

/// Debian packages for the host (non-lab) tests.
pub const HOST_TEST_PACKAGES: &[&str] = &[
    "util-linux",
    "fdisk",
    "gdisk",
    "e2fsprogs",
    "xfsprogs",
    "btrfs-progs",
    "dosfstools",
    "ntfs-3g",
    "cryptsetup-bin",
    "mdadm",
    "lvm2",
    "xorriso",
    "squashfs-tools",
    "zfs-fuse",
    "strace",
    "procps",
    // The iscsi crate's host test loads libopeniscsiusr and compares it with `iscsiadm -m node`.
    "open-iscsi",
    "iproute2",
];

/// Runs `prog args…` and returns its stdout; a failure carries the exit
/// status and stderr (used by the demo and the benchmarks).
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog}"))?;
    ensure!(
        out.status.success(),
        "{prog} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

/// Installs the packages that are missing (apt-get update first, once).
pub fn ensure_apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install {}", missing.join(" "));
    let st = Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .context("running apt-get update")?;
    ensure!(st.success(), "apt-get update failed ({st})");
    let st = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    ensure!(
        st.success(),
        "apt-get install {} failed ({st})",
        missing.join(" ")
    );
    Ok(())
}
