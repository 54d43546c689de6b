//! `cargo xtask bench [mount|probe|all]`: benchmarks that print figures side
//! by side (never timed asserts in tests).
//!
//! * `mount`: time from "device present" (a loop device over a thin clone
//!   already attached) to "all mounted" for the three-filesystem gold disk
//!   (fstab tree: /, /boot, /srv/data), for 1, 8 and 32 concurrent clones of
//!   the same gold copy — each `goldmount mount` a separate process, all
//!   started together.
//! * `probe`: `cargo bench -p fsdetect --bench probe_vs_blkid` (fsdetect vs blkid).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::prereqs::{self, run};

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

fn mount_round(gm: &Path, dir: &Path, gold: &Path, n: usize) -> Result<Row> {
    let mut loops = Vec::new();
    for i in 0..n {
        let clone = dir.join(format!("c{n}-{i}.img"));
        run(
            "cp",
            &[
                "--reflink=always",
                &gold.to_string_lossy(),
                &clone.to_string_lossy(),
            ],
        )?;
        loops.push(PathBuf::from(
            run("losetup", &["--find", "--show", &clone.to_string_lossy()])?.trim(),
        ));
    }
    let env = [
        ("GOLDMOUNT_VOLUMES_ROOT", dir.join("volumes")),
        ("GOLDMOUNT_STATE", dir.join("state.redb")),
        ("GOLDMOUNT_RUN_DIR", dir.join("run")),
    ];
    let start = Instant::now();
    let handles: Vec<_> = loops
        .iter()
        .enumerate()
        .map(|(i, dev)| {
            let mut cmd = Command::new(gm);
            cmd.args([
                "mount",
                "--device",
                &dev.to_string_lossy(),
                "--volume",
                &format!("b{n}-{i}"),
                "--json",
            ]);
            cmd.envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
            std::thread::spawn(move || {
                let t = Instant::now();
                let out = cmd.output();
                (t.elapsed(), out)
            })
        })
        .collect();
    let mut per = Vec::new();
    let mut failures = Vec::new();
    for h in handles {
        let (d, out) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a mount thread panicked"))?;
        match out {
            Ok(o) if o.status.success() => per.push(d.as_secs_f64()),
            Ok(o) => failures.push(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let total = start.elapsed().as_secs_f64();
    for i in 0..n {
        let mut cmd = Command::new(gm);
        cmd.args(["unmount", "--volume", &format!("b{n}-{i}")]);
        cmd.envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
        let _ = cmd.output();
    }
    for l in &loops {
        let _ = Command::new("losetup").arg("-d").arg(l).status();
    }
    for i in 0..n {
        let _ = std::fs::remove_file(dir.join(format!("c{n}-{i}.img")));
    }
    if !failures.is_empty() {
        bail!(
            "{} of {n} concurrent mounts failed: {}",
            failures.len(),
            failures.join(" | ")
        );
    }
    let max = per.iter().cloned().fold(0.0, f64::max);
    Ok(Row {
        n,
        total,
        median: median(&mut per),
        max,
    })
}

fn bench_mount() -> Result<()> {
    prereqs::ensure_apt(&["gdisk", "e2fsprogs", "xfsprogs", "util-linux"])?;
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "-p", "connector"])
        .status()
        .context("building goldmount")?;
    ensure!(st.success(), "cargo build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let gm = std::fs::canonicalize(target.join("release/goldmount"))?;
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
    let result = (|| -> Result<Vec<Row>> {
        let gold = golddisk::build(&dir, "gold.img").map_err(anyhow::Error::msg)?;
        let mut rows = Vec::new();
        for n in [1usize, 8, 32] {
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
    let base = rows[0].total;
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

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str).unwrap_or("all") {
        "mount" => bench_mount(),
        "probe" => {
            let st = Command::new(env!("CARGO"))
                .args(["bench", "-p", "fsdetect", "--bench", "probe_vs_blkid"])
                .status()?;
            ensure!(st.success(), "fsdetect bench failed");
            Ok(())
        }
        "all" => {
            main(&["probe".to_string()])?;
            bench_mount()
        }
        other => bail!("unknown benchmark {other:?}: mount | probe | all"),
    }
}
