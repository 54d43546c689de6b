//! `cargo xtask lab [--install] [--zfs] [--bench] [--timeout SECS] [SCENARIO…]`: the real-kernel
//! lab. Builds the scenario tests and the appliance on the host, boots Debian's
//! kernel once under QEMU/TCG with the host's root filesystem (virtme-ng), runs
//! the scenarios inside the guest, and reports per-scenario pass/fail and times.
//! Results and logs land in `target/lab/`.
//!
//! The host cannot run these scenarios itself: its kernel has no SCSI, iSCSI,
//! device-mapper nor partition parsing (see shared/LAB.md).
//!
//! `--zfs` also prepares OpenZFS for the guest (userland in a private prefix,
//! modules built once for the guest kernel, see `lab/zfs.rs`) and runs the
//! `lab_zfs` scenarios; without it they are left out, because building the
//! modules takes minutes that the default CI run does not have.

mod bench;
mod boot;
mod build;
mod guest;
mod install;
mod plan;
mod proc;
pub(crate) mod zfs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use plan::{GuestResults, Plan};

const USAGE: &str = "usage: cargo xtask lab [--install] [--zfs] [--bench] [--timeout SECS] [--scenario-timeout SECS] [SCENARIO-SUBSTRING…]";

struct Args {
    install: bool,
    zfs: bool,
    /// Also run the benchmark scenarios (names containing "bench"): they take
    /// many minutes under TCG and are not part of the default (CI) run.
    bench: bool,
    timeout: Duration,
    scenario_timeout: u64,
    filters: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        install: false,
        zfs: false,
        bench: false,
        timeout: Duration::from_secs(3600),
        scenario_timeout: 1200,
        filters: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--install" => a.install = true,
            "--zfs" => a.zfs = true,
            "--bench" => a.bench = true,
            "--timeout" => {
                let v = it.next().context(USAGE)?;
                a.timeout = Duration::from_secs(v.parse().context("--timeout SECS")?);
            }
            "--scenario-timeout" => {
                let v = it.next().context(USAGE)?;
                a.scenario_timeout = v.parse().context("--scenario-timeout SECS")?;
            }
            "-h" | "--help" => bail!(USAGE),
            s if s.starts_with('-') => bail!("unknown option {s}\n{USAGE}"),
            s => a.filters.push(s.to_string()),
        }
    }
    Ok(a)
}

/// Entry point of `cargo xtask lab …` (host) and `xtask lab --guest PLAN` (guest).
pub fn main(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("--guest") {
        let plan = args.get(1).context("--guest needs the plan path")?;
        return guest::main(Path::new(plan));
    }
    let args = parse(args)?;
    if args.install {
        install::install()?;
    }
    let tools = boot::preflight()?;
    if args.zfs {
        zfs::prepare(&kernel_version(&tools.kernel)?)?;
    }
    let ws = workspace_root();
    // GOLDMOUNT_LAB_OUT: a results dir of one's own when several people
    // run the lab from one checkout at the same time.
    let out =
        std::env::var_os("GOLDMOUNT_LAB_OUT").map_or_else(|| ws.join("target/lab"), PathBuf::from);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    eprintln!("lab: building the scenarios and the appliance on the host");
    let art = build::build(&ws)?;
    let mut scenarios = Vec::new();
    for (target, bin) in &art.test_bins {
        if target == ZFS_TARGET && !args.zfs {
            eprintln!("lab: skipping {ZFS_TARGET} scenarios (they need `--zfs`)");
            continue;
        }
        let found = list_scenarios(target, bin, &args.filters)?;
        let (benches, others): (Vec<String>, Vec<String>) =
            found.into_iter().partition(|n| is_bench(n));
        scenarios.extend(others);
        if args.bench || !args.filters.is_empty() {
            scenarios.extend(benches);
        } else if !benches.is_empty() {
            eprintln!(
                "lab: skipping {} benchmark scenario(s) (run them with `--bench`)",
                benches.len()
            );
        }
    }
    if scenarios.is_empty() {
        bail!("no lab scenario matches {:?}", args.filters);
    }
    clean_results(&out)?;
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let bins = art.test_bins.iter().map(|(_, b)| b);
    for p in [
        &xtask,
        &art.appliance_bin,
        &art.goldmount_bin,
        &art.goldmountd_bin,
        &out,
    ]
    .into_iter()
    .chain(bins)
    {
        if p.to_string_lossy().contains(char::is_whitespace) {
            bail!(
                "{}: paths with whitespace cannot be passed to the guest",
                p.display()
            );
        }
    }
    let mut env = vec![
        (
            "GOLDMOUNT_APPLIANCE_BIN".to_string(),
            art.appliance_bin.to_string_lossy().into_owned(),
        ),
        (
            "GOLDMOUNT_BIN".to_string(),
            art.goldmount_bin.to_string_lossy().into_owned(),
        ),
        (
            "GOLDMOUNTD_BIN".to_string(),
            art.goldmountd_bin.to_string_lossy().into_owned(),
        ),
    ];
    if args.zfs {
        env.push((zfs::PLAN_ENV.to_string(), zfs::ZFS_ROOT.to_string()));
    }
    if scenarios.iter().any(|s| is_bench(s)) {
        eprintln!("lab: building release goldmount, goldmountd and appliance for the benchmarks");
        let rel = build::build_release(&ws)?;
        for (key, bin) in [
            ("GOLDMOUNT_RELEASE_BIN", &rel.goldmount),
            ("GOLDMOUNTD_RELEASE_BIN", &rel.goldmountd),
            ("GOLDMOUNT_APPLIANCE_RELEASE_BIN", &rel.appliance),
        ] {
            if bin.to_string_lossy().contains(char::is_whitespace) {
                bail!(
                    "{}: paths with whitespace cannot be passed to the guest",
                    bin.display()
                );
            }
            env.push((key.to_string(), bin.to_string_lossy().into_owned()));
        }
    }
    let plan = Plan {
        test_bins: art.test_bins.clone(),
        env,
        scenarios: scenarios.clone(),
        scenario_timeout_secs: args.scenario_timeout,
        results_dir: out.clone(),
    };
    let plan_path = out.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan)?)
        .with_context(|| format!("writing {}", plan_path.display()))?;

    eprintln!(
        "lab: booting {} with {} scenario(s): {}",
        tools.kernel.display(),
        scenarios.len(),
        scenarios.join(", ")
    );
    let guest_cmd = format!("{} lab --guest {}", xtask.display(), plan_path.display());
    let report = boot::boot(
        &tools,
        &out,
        &guest_cmd,
        &out.join("console.log"),
        args.timeout,
    )?;

    let results: GuestResults = match std::fs::read(out.join("results.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("parsing results.json")?,
        Err(_) => GuestResults::default(),
    };
    let failed = summarize(&scenarios, &results, &report, &out);
    bench::record(&ws, &out, &scenarios, &results, &report, &args.filters)?;
    print_failure_excerpts(&results, &out);
    if failed > 0 {
        bail!("{failed} lab scenario(s) failed; logs in {}", out.display());
    }
    Ok(())
}

/// The test target whose scenarios need `--zfs`.
const ZFS_TARGET: &str = "lab_zfs";

/// Benchmark scenarios (names containing "bench") get release builds as
/// well, in `GOLDMOUNT_RELEASE_BIN`, `GOLDMOUNTD_RELEASE_BIN` and
/// `GOLDMOUNT_APPLIANCE_RELEASE_BIN`; the usual variables keep naming the
/// debug builds, so the other scenarios run exactly what they always ran.
fn is_bench(scenario: &str) -> bool {
    scenario.contains("bench")
}

/// `6.1.0-56-amd64` from `/boot/vmlinuz-6.1.0-56-amd64`.
fn kernel_version(kernel: &Path) -> Result<String> {
    kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .map(str::to_string)
        .with_context(|| format!("kernel version from {}", kernel.display()))
}

/// Prints the summary; returns how many scenarios did not pass (missing ones count).
fn summarize(
    scenarios: &[String],
    results: &GuestResults,
    report: &boot::BootReport,
    out: &Path,
) -> usize {
    let boot = report
        .boot_secs
        .map_or("never reached the guest runner".to_string(), |s| {
            format!("{s:.1}s")
        });
    eprintln!("\nlab summary ({})", out.display());
    eprintln!("  boot (vng start -> guest runner): {boot}; guest setup {:.1}s; total wall {:.1}s; vng exit {}",
        results.setup_secs,
        report.wall_secs,
        report.exit.map_or("killed (timeout)".to_string(), |s| s.to_string()));
    if let Some(e) = &results.setup_error {
        eprintln!("  guest setup FAILED: {e}");
    }
    let mut failed = 0;
    for name in scenarios {
        match results.scenarios.iter().find(|r| &r.name == name) {
            Some(r) if r.passed && r.detail.is_empty() => {
                eprintln!("  PASS {:7.1}s  {name}", r.secs)
            }
            Some(r) if r.passed => eprintln!("  PASS {:7.1}s  {name} ({})", r.secs, r.detail),
            Some(r) => {
                failed += 1;
                eprintln!(
                    "  FAIL {:7.1}s  {name}: {} (log: {})",
                    r.secs, r.detail, r.log
                );
            }
            None => {
                failed += 1;
                eprintln!("  FAIL     -    {name}: did not run (see console.log)");
            }
        }
    }
    failed
}

/// How many lines of a failed scenario's log are repeated on the console.
const EXCERPT_LINES: usize = 30;

/// Repeats, after the summary, the end of each failed scenario's log: the
/// panic message and the commands just before it. CI keeps only the tail of
/// the console, and the logs stay on a machine nobody can open, so the
/// reason for a failure has to be the last thing printed.
fn print_failure_excerpts(results: &GuestResults, out: &Path) {
    for r in results.scenarios.iter().filter(|r| !r.passed) {
        let text = std::fs::read_to_string(out.join(&r.log)).unwrap_or_default();
        eprintln!("\n---- {} failed: {} ----", r.name, r.detail);
        for line in failure_excerpt(&text, EXCERPT_LINES) {
            eprintln!("  | {line}");
        }
    }
}

/// The lines worth showing from a failed test's log: the panic message and
/// what follows it, preceded by as much of the lead-up as fits in `max`.
/// Without a panic (a timeout, a crash) it is simply the last `max` lines.
fn failure_excerpt(log: &str, max: usize) -> Vec<&str> {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let end = lines.len();
    let Some(panic_at) = lines.iter().position(|l| l.contains("panicked at")) else {
        return lines[end.saturating_sub(max)..].to_vec();
    };
    // The message ends where the backtrace (RUST_BACKTRACE=1 in the guest)
    // or the lab's appended diagnostics begin.
    let msg_end = lines[panic_at + 1..]
        .iter()
        .position(|l| l.starts_with("stack backtrace:") || l.starts_with("====="))
        .map_or(end, |i| panic_at + 1 + i);
    let tail_len = (msg_end - panic_at).min(max / 2).max(1);
    let after = &lines[panic_at..panic_at + tail_len];
    let lead = max.saturating_sub(after.len());
    let mut excerpt = lines[panic_at.saturating_sub(lead)..panic_at].to_vec();
    excerpt.extend_from_slice(after);
    excerpt
}

/// Lists the ignored (lab-only) tests of one lab binary as `target::test`,
/// filtered by substring.
fn list_scenarios(target: &str, test_bin: &Path, filters: &[String]) -> Result<Vec<String>> {
    let bin = test_bin.to_string_lossy();
    let listing = proc::run(&bin, &["--list", "--ignored"], Duration::from_secs(60))?;
    Ok(listing
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(|n| format!("{target}::{n}"))
        .filter(|n| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())))
        .collect())
}

fn clean_results(out: &Path) -> Result<()> {
    for e in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let p = e?.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if p.is_file() && (ext == "log" || ext == "json") {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

#[cfg(test)]
mod tests {
    use super::failure_excerpt;

    #[test]
    fn excerpt_keeps_the_panic_and_its_lead_up() {
        let mut log: Vec<String> = (0..100).map(|i| format!("$ step {i}")).collect();
        log.push("thread 'x' panicked at tests/a.rs:1:2:".into());
        log.push("the reason".into());
        log.push("stack backtrace:".into());
        log.extend((0..40).map(|i| format!("teardown {i}")));
        let text = log.join("\n");
        let e = failure_excerpt(&text, 30);
        assert_eq!(e.len(), 30);
        assert!(e.contains(&"the reason"));
        assert!(e.contains(&"$ step 99"));
        assert!(!e.contains(&"$ step 0"));
        assert!(!e.contains(&"stack backtrace:"));
        assert_eq!(e.last(), Some(&"the reason"));
    }

    #[test]
    fn excerpt_without_a_panic_is_the_tail() {
        let text = (0..50)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(failure_excerpt(&text, 3), ["47", "48", "49"]);
        assert!(failure_excerpt("", 3).is_empty());
    }
}
