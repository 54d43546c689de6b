//! `cargo xtask lab --install`: every host prerequisite of the lab, idempotent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::proc;

/// Debian packages the lab host and the guest (which shares the host's root
/// filesystem) need.
pub const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "linux-image-amd64",
    "busybox-static",
    "kmod",
    "udev",
    "iproute2",
    "python3-venv",
    "open-iscsi",
    "multipath-tools",
    "lvm2",
    // lvm2 checks a thin pool with thin_check before activating it (lab_layouts).
    "thin-provisioning-tools",
    "lsscsi",
    "sg3-utils",
    "xfsprogs",
    "util-linux",
    "coreutils",
    // lab_docker runs a private dockerd in the guest (shared/DOCKER.md).
    "docker.io",
];

/// The venv that holds virtme-ng (from PyPI).
pub const VENV: &str = "/opt/goldmount-lab/venv";

/// Installs what is missing; running it twice changes nothing the second time.
pub fn install() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("lab --install: apt packages already present");
    } else {
        eprintln!("lab --install: apt-get install {}", missing.join(" "));
        proc::run("apt-get", &["update", "-q"], Duration::from_secs(600))
            .context("apt-get update")?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        let mut cmd = std::process::Command::new("apt-get");
        cmd.args(&args).env("DEBIAN_FRONTEND", "noninteractive");
        let out = proc::capture_cmd(cmd, Duration::from_secs(1200))?;
        anyhow::ensure!(
            out.status.success(),
            "apt-get install {} failed: {}",
            missing.join(" "),
            out.stderr.trim()
        );
    }
    let venv = Path::new(VENV);
    if !venv.join("bin/python3").exists() {
        std::fs::create_dir_all(venv.parent().unwrap_or(Path::new("/")))
            .with_context(|| format!("creating parent of {VENV}"))?;
        // Debian's python3 (python3-venv) is the one that is always there.
        let py = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        proc::run(py, &["-m", "venv", VENV], Duration::from_secs(300))
            .context("creating the virtme-ng venv")?;
    }
    if !venv.join("bin/vng").exists() {
        let pip = venv.join("bin/pip");
        let pip = pip.to_string_lossy();
        proc::run(
            &pip,
            &["install", "-q", "virtme-ng"],
            Duration::from_secs(600),
        )
        .context("pip install virtme-ng")?;
    }
    eprintln!("lab --install: done ({VENV}/bin/vng)");
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    proc::capture(
        "dpkg-query",
        &["-W", "-f=${Status}", pkg],
        Duration::from_secs(30),
    )
    .map(|c| c.status.success() && c.stdout.contains("install ok installed"))
    .unwrap_or(false)
}
