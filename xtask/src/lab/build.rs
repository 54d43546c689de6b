//! Building, on the host, everything the guest will run: the scenario test
//! binary, the appliance, the `goldmount` CLI, `goldmountd` and the ZFS
//! reguid helper.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Test targets named `lab*` (tests/tests/lab*.rs) hold the lab scenarios.
pub const LAB_TEST_PREFIX: &str = "lab";

/// Host-built artifacts the guest needs.
pub struct Artifacts {
    /// The `lab*` integration-test executables of `goldmount-tests`, by
    /// target name, sorted.
    pub test_bins: Vec<(String, PathBuf)>,
    /// `goldmount-appliance`.
    pub appliance_bin: PathBuf,
    /// `goldmount` (the connector CLI the end-to-end scenarios drive).
    pub goldmount_bin: PathBuf,
    /// `goldmountd` (the connector's control API, for the one-call flow).
    pub goldmountd_bin: PathBuf,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs a cargo build with JSON messages and returns the executables it reports.
fn cargo_executables(ws: &Path, args: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(ws)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let mut exes = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            let name = msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            exes.push((name, PathBuf::from(exe)));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(exes)
}

/// Builds the appliance, the `goldmount` CLI and the lab test binaries
/// (debug profile).
pub fn build(ws: &Path) -> Result<Artifacts> {
    let exes = cargo_executables(
        ws,
        &[
            "build",
            "-p",
            "appliance",
            "--bin",
            "goldmount-appliance",
            "-p",
            "connector",
            "--bin",
            "goldmount",
            "-p",
            "goldmountd",
            "--bin",
            "goldmountd",
            // Found next to `goldmount` (and the test binaries' parent
            // directory) by the ZFS stage.
            "-p",
            "zfs",
            "--bin",
            "goldmount-zfs-reguid",
        ],
    )?;
    let find = |name: &str| {
        exes.iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("cargo did not report the {name} executable"))
    };
    let appliance_bin = find("goldmount-appliance")?;
    let goldmount_bin = find("goldmount")?;
    let goldmountd_bin = find("goldmountd")?;
    let exes = cargo_executables(
        ws,
        &[
            "test",
            "-p",
            "goldmount-tests",
            "--test",
            &format!("{LAB_TEST_PREFIX}*"),
            "--no-run",
        ],
    )?;
    let mut test_bins: Vec<(String, PathBuf)> = exes
        .into_iter()
        .filter(|(n, _)| n.starts_with(LAB_TEST_PREFIX))
        .collect();
    test_bins.sort();
    if test_bins.is_empty() {
        bail!("cargo did not report any {LAB_TEST_PREFIX}* test executable");
    }
    Ok(Artifacts {
        test_bins,
        appliance_bin,
        goldmount_bin,
        goldmountd_bin,
    })
}

/// Release builds of the three binaries the benchmark scenarios time.
pub struct ReleaseBins {
    /// `goldmount`.
    pub goldmount: PathBuf,
    /// `goldmountd`.
    pub goldmountd: PathBuf,
    /// `goldmount-appliance`.
    pub appliance: PathBuf,
}

/// `goldmount`, `goldmountd` and the appliance with the release profile,
/// for the benchmark scenarios: under TCG a debug build's CPU time (about a
/// second per process) would hide the round trips and kernel steps the
/// benchmarks are about. The other scenarios keep the debug builds.
pub fn build_release(ws: &Path) -> Result<ReleaseBins> {
    let exes = cargo_executables(
        ws,
        &[
            "build",
            "--release",
            "-p",
            "connector",
            "--bin",
            "goldmount",
            "-p",
            "goldmountd",
            "--bin",
            "goldmountd",
            "-p",
            "appliance",
            "--bin",
            "goldmount-appliance",
        ],
    )?;
    let find = |name: &str| {
        exes.iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("cargo did not report the release {name} executable"))
    };
    Ok(ReleaseBins {
        goldmount: find("goldmount")?,
        goldmountd: find("goldmountd")?,
        appliance: find("goldmount-appliance")?,
    })
}
