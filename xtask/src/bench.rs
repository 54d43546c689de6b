//! `cargo xtask bench [mount|probe|daemon|all]`: benchmarks that print figures side
//! by side (never timed asserts in tests).
//!
//! * `mount`: time from "device present" (a loop device over a thin clone
//!   already attached) to "all mounted" for the three-filesystem gold disk
//!   (fstab tree: /, /boot, /srv/data), for 1, 8 and 32 concurrent clones of
//!   the same gold copy — each `goldmount mount` a separate process, all
//!   started together. Flags: `--levels 1,8,32` (the default),
//!   `--baseline PATH` compares another release goldmount with this tree's
//!   in one run (see `bench/compare.rs`), `--rounds N` timed runs per binary
//!   and level with a baseline (default 5).
//! * `probe`: `cargo bench -p fsdetect --bench probe_vs_blkid` (fsdetect vs blkid).
//! * `daemon`: the release goldmountd's idle RSS, RSS after one API call and
//!   start → registered on an appliance (see `bench/daemon.rs`);
//!   `--rounds N` (default 5).
//! * `docker`: the Docker volume plugin vs a local volume (see `bench/docker.rs`).

mod clones;
mod compare;
mod daemon;
mod docker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::prereqs::{self, run};
use clones::{mount_all, Clones, Goldmount};
use compare::MountArgs;

use crate::golddisk;

const MIB: u64 = 1024 * 1024;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

struct Row {
    n: usize,
    total: f64,
    median: f64,
    max: f64,
}

fn mount_round(gm: &Goldmount, dir: &Path, gold: &Path, n: usize) -> Result<Row> {
    let tag = format!("b{n}");
    let clones = Clones::make(dir, gold, &tag, n)?;
    let t = mount_all(gm, &clones, &tag)?;
    clones.release()?;
    let mut per = t.per_volume;
    let max = per.iter().cloned().fold(0.0, f64::max);
    Ok(Row {
        n,
        total: t.total,
        median: median(&mut per),
        max,
    })
}

fn bench_mount(args: &MountArgs) -> Result<()> {
    prereqs::ensure_apt(&["gdisk", "e2fsprogs", "xfsprogs", "util-linux"])?;
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "-p", "connector"])
        .status()
        .context("building goldmount")?;
    ensure!(st.success(), "cargo build failed");
    let target = target_dir();
    let gm = std::fs::canonicalize(target.join("release/goldmount"))?;
    let baseline = match &args.baseline {
        Some(b) => {
            let b = std::fs::canonicalize(b)
                .with_context(|| format!("--baseline {}: no such binary", b.display()))?;
            compare::ensure_release(&b)?;
            compare::ensure_release(&gm)?;
            Some(b)
        }
        None => None,
    };
    let dir = std::fs::canonicalize(".")?
        .join(&target)
        .join("bench-mount");
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Clones are reflink copies on an XFS made with reflink=1, as on the appliance.
    let pool = target.join("bench-mount.xfs");
    std::fs::File::create(&pool)?.set_len(4096 * MIB)?;
    run(
        "mkfs.xfs",
        &["-q", "-f", "-m", "reflink=1", &pool.to_string_lossy()],
    )?;
    run("mount", &[&pool.to_string_lossy(), &dir.to_string_lossy()])?;
    if let Some(old) = baseline {
        let result = (|| -> Result<Vec<compare::Level>> {
            let gold = golddisk::build(&dir, "gold.img").map_err(anyhow::Error::msg)?;
            compare::compare(&dir, &gold, &old, &gm, &args.levels, args.rounds)
        })();
        let _ = Command::new("umount").arg(&dir).status();
        let _ = std::fs::remove_file(&pool);
        compare::print(&result?, &old, &gm, args.rounds);
        return Ok(());
    }
    let result = (|| -> Result<Vec<Row>> {
        let gold = golddisk::build(&dir, "gold.img").map_err(anyhow::Error::msg)?;
        let gm = Goldmount::new(&gm, &dir.join("home"))?;
        let mut rows = Vec::new();
        for &n in &args.levels {
            rows.push(mount_round(&gm, &dir, &gold, n)?);
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(rows)
    })();
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_file(&pool);
    let rows = result?;
    println!("goldmount mount, three-filesystem clone (fstab tree: /, /boot, /srv/data), device present -> all mounted");
    println!(
        "{:>11} {:>10} {:>18} {:>15} {:>14}",
        "concurrent", "total s", "median per vol s", "max per vol s", "total / N s"
    );
    for r in &rows {
        println!(
            "{:>11} {:>10.2} {:>18.2} {:>15.2} {:>14.3}",
            r.n,
            r.total,
            r.median,
            r.max,
            r.total / r.n as f64
        );
    }
    let base = rows.first().map_or(f64::NAN, |r| r.total);
    for r in rows.iter().skip(1) {
        println!(
            "N={}: total is {:.1}x the single-clone time for {}x the clones (linear would be {}x)",
            r.n,
            r.total / base,
            r.n,
            r.n
        );
    }
    Ok(())
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str).unwrap_or("all") {
        "mount" => bench_mount(&MountArgs::parse(&args[1..])?),
        "probe" => {
            let st = Command::new(env!("CARGO"))
                .args(["bench", "-p", "fsdetect", "--bench", "probe_vs_blkid"])
                .status()?;
            ensure!(st.success(), "fsdetect bench failed");
            Ok(())
        }
        "daemon" => daemon::bench_daemon(&daemon::DaemonArgs::parse(&args[1..])?, &target_dir()),
        "docker" => docker::bench_docker(&docker::DockerArgs::parse(&args[1..])?, &target_dir()),
        "all" => {
            main(&["probe".to_string()])?;
            main(&["daemon".to_string()])?;
            bench_mount(&MountArgs::parse(&[])?)
        }
        other => bail!("unknown benchmark {other:?}: mount | probe | daemon | docker | all"),
    }
}
