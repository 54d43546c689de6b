//! `cargo xtask bench mount --baseline PATH`: the mount benchmark for two
//! goldmount binaries in one run, so a rewrite is judged against the code it
//! replaces under the same load (these machines are shared and noisy).
//!
//! Per concurrency level: one untimed warm-up run of each binary, then
//! `rounds` timed runs of each, interleaved baseline, new, baseline, new, …
//! Every run gets its own fresh reflink clones of the same gold disk (made
//! before the clock), its binary's own state/run/volumes dirs, and is
//! unmounted and cleaned up before the next. Reported per level: the median
//! wall time of each binary, the ratio new/baseline, their ranges, and the
//! load average and `qemu-system` presence sampled before every run.

use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use super::clones::{mount_all, Clones, Goldmount};
use super::median;
use crate::prereqs::run;

/// The ratio new/baseline above which the new binary counts as slower.
pub const SLOWER_ABOVE: f64 = 1.05;

/// Both binaries' figures at one concurrency level.
pub struct Level {
    /// Concurrent clones.
    pub n: usize,
    /// Wall time of each timed run (all N started → all done), seconds.
    pub old_total: Vec<f64>,
    /// Same for the new binary.
    pub new_total: Vec<f64>,
    /// Per run, the median of the N per-process wall times.
    pub old_per_volume: Vec<f64>,
    /// Same for the new binary.
    pub new_per_volume: Vec<f64>,
    /// 1-minute load average read before each run.
    pub load: Vec<f64>,
    /// Runs during which a `qemu-system` process was running.
    pub qemu_runs: usize,
}

/// Fails unless `bin` looks like a release build: a path with a `release`
/// component and no `.debug_info` section (the dev profile keeps debug info;
/// this workspace's release profile strips).
pub fn ensure_release(bin: &Path) -> Result<()> {
    ensure!(
        bin.components()
            .any(|c| c == Component::Normal("release".as_ref())),
        "{} is not under a target/release dir: build it with `cargo build --release -p connector` \
         and pass target/release/goldmount",
        bin.display()
    );
    let sections = run("readelf", &["-S", "-W", &bin.to_string_lossy()])
        .with_context(|| format!("{} is not an ELF binary readelf can read", bin.display()))?;
    ensure!(
        !sections.contains(".debug_info"),
        "{} has a .debug_info section: expected a stripped release build, found a debug one",
        bin.display()
    );
    Ok(())
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn qemu_running() -> bool {
    Command::new("pgrep")
        .args(["-f", "qemu-system"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs both binaries at every level in `levels`, `rounds` timed runs each.
pub fn compare(
    dir: &Path,
    gold: &Path,
    old: &Path,
    new: &Path,
    levels: &[usize],
    rounds: usize,
) -> Result<Vec<Level>> {
    ensure!(rounds >= 1, "--rounds must be at least 1, found {rounds}");
    let old_gm = Goldmount::new(old, &dir.join("home-old"))?;
    let new_gm = Goldmount::new(new, &dir.join("home-new"))?;
    let one = |gm: &Goldmount, tag: &str, n: usize| -> Result<(f64, f64)> {
        let clones = Clones::make(dir, gold, tag, n)?;
        let t = mount_all(gm, &clones, tag)?;
        clones.release()?;
        std::thread::sleep(Duration::from_millis(300));
        let mut per = t.per_volume;
        Ok((t.total, median(&mut per)))
    };
    let mut out = Vec::new();
    for &n in levels {
        one(&old_gm, &format!("w{n}o"), n)?;
        one(&new_gm, &format!("w{n}n"), n)?;
        let mut level = Level {
            n,
            old_total: Vec::new(),
            new_total: Vec::new(),
            old_per_volume: Vec::new(),
            new_per_volume: Vec::new(),
            load: Vec::new(),
            qemu_runs: 0,
        };
        for r in 0..rounds {
            for (is_new, gm) in [(false, &old_gm), (true, &new_gm)] {
                level.load.push(load1());
                level.qemu_runs += usize::from(qemu_running());
                let tag = format!("r{n}{}{r}", if is_new { 'n' } else { 'o' });
                let (total, per) = one(gm, &tag, n)?;
                eprintln!(
                    "  N={n:>2} round {} {}: total {total:.3} s, median per volume {per:.3} s, load {:.2}",
                    r + 1,
                    if is_new { "new     " } else { "baseline" },
                    level.load.last().copied().unwrap_or(f64::NAN)
                );
                if is_new {
                    level.new_total.push(total);
                    level.new_per_volume.push(per);
                } else {
                    level.old_total.push(total);
                    level.old_per_volume.push(per);
                }
            }
        }
        out.push(level);
    }
    Ok(out)
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Prints the comparison table (markdown, for BENCHMARKS.md) and whether
/// any level is slower than [`SLOWER_ABOVE`].
pub fn print(levels: &[Level], old: &Path, new: &Path, rounds: usize) {
    println!("goldmount mount, three-filesystem clone, device present -> all mounted; baseline vs new in one run");
    println!("baseline: {}", old.display());
    println!("new:      {}", new.display());
    println!(
        "{rounds} timed runs per binary per level, interleaved baseline/new, after one warm-up run each; \
         fresh clones every run"
    );
    println!();
    println!(
        "| concurrent | baseline median s | new median s | new/baseline | baseline min–max s | new min–max s \
         | per-volume median s (baseline / new) | load avg 1 min | runs with qemu |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut slower = Vec::new();
    for l in levels {
        let mut o = l.old_total.clone();
        let mut n = l.new_total.clone();
        let (om, nm) = (median(&mut o), median(&mut n));
        let ratio = nm / om;
        if ratio > SLOWER_ABOVE {
            slower.push(format!("N={} ({ratio:.3})", l.n));
        }
        let (olo, ohi) = range(&l.old_total);
        let (nlo, nhi) = range(&l.new_total);
        let mut opv = l.old_per_volume.clone();
        let mut npv = l.new_per_volume.clone();
        let (llo, lhi) = range(&l.load);
        println!(
            "| {} | {om:.3} | {nm:.3} | {ratio:.3} | {olo:.3}–{ohi:.3} | {nlo:.3}–{nhi:.3} | {:.3} / {:.3} \
             | {llo:.2}–{lhi:.2} | {} of {} |",
            l.n,
            median(&mut opv),
            median(&mut npv),
            l.qemu_runs,
            l.load.len()
        );
    }
    println!();
    if slower.is_empty() {
        println!("new/baseline <= {SLOWER_ABOVE} at every level");
    } else {
        println!(
            "SLOWER than {SLOWER_ABOVE}x the baseline at: {}",
            slower.join(", ")
        );
    }
}

/// Parsed `bench mount` flags.
pub struct MountArgs {
    /// `--baseline PATH`: the goldmount to compare against.
    pub baseline: Option<PathBuf>,
    /// `--rounds N`: timed runs per binary per level (default 5).
    pub rounds: usize,
    /// `--levels 1,8,32`: concurrency levels (default 1, 8, 32).
    pub levels: Vec<usize>,
}

impl MountArgs {
    /// Parses the flags after `mount`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut parsed = Self {
            baseline: None,
            rounds: 5,
            levels: vec![1, 8, 32],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .with_context(|| format!("{flag} needs a value"))
                    .cloned()
            };
            match a.as_str() {
                "--baseline" => parsed.baseline = Some(PathBuf::from(value("--baseline")?)),
                "--rounds" => {
                    let v = value("--rounds")?;
                    parsed.rounds = v
                        .parse()
                        .with_context(|| format!("--rounds expects a number, found {v:?}"))?;
                }
                "--levels" => {
                    let v = value("--levels")?;
                    parsed.levels = v
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .with_context(|| {
                            format!("--levels expects numbers like 1,8,32, found {v:?}")
                        })?;
                    ensure!(
                        parsed.levels.iter().all(|&n| n > 0),
                        "--levels must be positive, found {v:?}"
                    );
                }
                other => bail!(
                    "unknown flag {other:?} for bench mount: [--baseline PATH] [--rounds N] [--levels 1,8,32]"
                ),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_parse_and_default() {
        let d = MountArgs::parse(&[]).unwrap();
        assert!(d.baseline.is_none());
        assert_eq!((d.rounds, d.levels), (5, vec![1, 8, 32]));
        let p = MountArgs::parse(&args(
            "--baseline /x/release/goldmount --rounds 7 --levels 2,4",
        ))
        .unwrap();
        assert_eq!(p.baseline.unwrap(), PathBuf::from("/x/release/goldmount"));
        assert_eq!((p.rounds, p.levels), (7, vec![2, 4]));
        assert!(MountArgs::parse(&args("--rounds x")).is_err());
        assert!(MountArgs::parse(&args("--baseline")).is_err());
        assert!(MountArgs::parse(&args("--levels 0")).is_err());
        assert!(MountArgs::parse(&args("--bogus")).is_err());
    }

    #[test]
    fn a_debug_build_is_refused() {
        // xtask's own test binary is a dev build with debug info.
        let me = std::env::current_exe().unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-release-check-{}", std::process::id()));
        let fake = dir.join("release/goldmount");
        std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
        std::fs::copy(&me, &fake).unwrap();
        let err = ensure_release(&fake).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains(".debug_info"), "{err}");
        let err = ensure_release(Path::new("/bin/true"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("target/release"), "{err}");
    }
}
