//! The guest half of the lab (`xtask lab --guest <plan>`), run by virtme-ng as
//! the guest's program: prepares the kernel side (modules, configfs, scratch
//! tmpfs, udevd, iscsid), runs each scenario in its own test process with a
//! timeout, and dumps storage diagnostics into the log of a failed scenario.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::{GuestResults, Plan, ScenarioResult, MARKER};
use super::proc;

/// Kernel modules the scenarios rely on.
const MODULES: &[&str] = &[
    "configfs",
    "target_core_mod",
    "target_core_file",
    "iscsi_target_mod",
    "iscsi_tcp",
    "sd_mod",
    "loop",
    "xfs",
];

/// Writable scratch space (a tmpfs mounted over the read-only `/mnt`).
pub const SCRATCH: &str = "/mnt/goldmount-lab";

const SHORT: Duration = Duration::from_secs(60);

fn say(msg: &str) {
    // The console is how the host follows us; stdout is vng's pipe.
    println!("{MARKER} {msg}");
    let _ = std::io::stdout().flush();
}

/// Entry point inside the guest.
pub fn main(plan_path: &Path) -> Result<()> {
    say("guest-start");
    let plan: Plan = serde_json::from_slice(
        &fs::read(plan_path).with_context(|| format!("reading {}", plan_path.display()))?,
    )
    .context("parsing the lab plan")?;
    let mut results = GuestResults::default();
    let t0 = Instant::now();
    let setup = setup().and_then(|mut log| {
        if let Some((_, root)) = plan.env.iter().find(|(k, _)| k == super::zfs::PLAN_ENV) {
            log.push_str(&super::zfs::guest_setup(Path::new(root))?);
        }
        Ok(log)
    });
    results.setup_secs = t0.elapsed().as_secs_f64();
    let setup_log = plan.results_dir.join("guest-setup.log");
    match &setup {
        Ok(log) => fs::write(&setup_log, log).context("writing guest-setup.log")?,
        Err(e) => {
            let msg = format!("{e:#}");
            fs::write(&setup_log, &msg).context("writing guest-setup.log")?;
            say(&format!("setup-failed {msg}"));
            results.setup_error = Some(msg);
        }
    }
    say(&format!("setup-done {:.1}s", results.setup_secs));
    if setup.is_ok() {
        for name in &plan.scenarios {
            let r = run_scenario(&plan, name)?;
            say(&format!(
                "scenario {} {} {:.1}s {}",
                r.name,
                if r.passed { "PASS" } else { "FAIL" },
                r.secs,
                r.detail
            ));
            results.scenarios.push(r);
            write_results(&plan, &results)?;
        }
    }
    write_results(&plan, &results)?;
    say("guest-done");
    Ok(())
}

fn write_results(plan: &Plan, results: &GuestResults) -> Result<()> {
    let path = plan.results_dir.join("results.json");
    fs::write(&path, serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn is_mounted(target: &str, fstype: &str) -> bool {
    fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 2 && f[1] == target && f[2] == fstype
            })
        })
        .unwrap_or(false)
}

fn process_running(comm: &str) -> bool {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == comm)
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// Brings the guest to the state every scenario assumes. Returns a log.
fn setup() -> Result<String> {
    let mut log = String::new();
    std::env::set_var("HOME", "/tmp/goldmount-lab-home");
    fs::create_dir_all("/tmp/goldmount-lab-home").context("creating HOME")?;
    for m in MODULES {
        proc::run("modprobe", &[m], SHORT).with_context(|| format!("modprobe {m}"))?;
    }
    let _ = writeln!(log, "modules loaded: {}", MODULES.join(" "));
    if !is_mounted("/sys/kernel/config", "configfs") {
        proc::run(
            "mount",
            &["-t", "configfs", "configfs", "/sys/kernel/config"],
            SHORT,
        )?;
    }
    if !Path::new("/sys/kernel/config/target").is_dir() {
        bail!("/sys/kernel/config/target missing after loading target_core_mod");
    }
    if !is_mounted("/mnt", "tmpfs") {
        proc::run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1200m", "goldmount-lab", "/mnt"],
            SHORT,
        )?;
    }
    fs::create_dir_all(SCRATCH).context("creating scratch dir")?;
    proc::run("ip", &["link", "set", "lo", "up"], SHORT)?;
    if !process_running("systemd-udevd") {
        proc::run("/lib/systemd/systemd-udevd", &["--daemon"], SHORT)?;
        let _ = writeln!(log, "started systemd-udevd");
    }
    let iname = Path::new("/etc/iscsi/initiatorname.iscsi");
    if !fs::read_to_string(iname).is_ok_and(|s| s.contains("InitiatorName=")) {
        let iqn = proc::run("iscsi-iname", &[], SHORT)?;
        fs::write(iname, format!("InitiatorName={}\n", iqn.trim()))
            .context("writing /etc/iscsi/initiatorname.iscsi")?;
    }
    if !process_running("iscsid") {
        proc::run("iscsid", &[], SHORT).context("starting iscsid (apt: open-iscsi)")?;
    }
    let _ = writeln!(log, "configfs, tmpfs {SCRATCH}, lo, udevd, iscsid ready");
    Ok(log)
}

fn run_scenario(plan: &Plan, name: &str) -> Result<ScenarioResult> {
    say(&format!("scenario-start {name}"));
    let log_name = format!("{}.log", name.replace("::", "__"));
    let log = plan.results_dir.join(&log_name);
    let _ = fs::remove_file(&log);
    let scratch = PathBuf::from(SCRATCH).join(name.replace("::", "__"));
    fs::create_dir_all(&scratch).context("creating scenario scratch")?;
    let (target, test) = name
        .split_once("::")
        .with_context(|| format!("scenario {name:?} is not <target>::<test>"))?;
    let bin = plan
        .test_bins
        .iter()
        .find(|(t, _)| t == target)
        .map(|(_, b)| b)
        .with_context(|| format!("no test binary for target {target} (scenario {name})"))?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "--ignored",
        "--exact",
        test,
        "--test-threads=1",
        "--nocapture",
    ])
    .env("GOLDMOUNT_LAB", "1")
    .env("GOLDMOUNT_LAB_SCRATCH", &scratch)
    .env("RUST_BACKTRACE", "1")
    .env("RUST_LOG", "debug");
    for (k, v) in &plan.env {
        cmd.env(k, v);
    }
    let before = BlockState::now();
    let t0 = Instant::now();
    let status = proc::run_logged(cmd, &log, Duration::from_secs(plan.scenario_timeout_secs))?;
    let secs = t0.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let (passed, detail) = match status {
        None => (
            false,
            format!("timed out after {}s", plan.scenario_timeout_secs),
        ),
        Some(s) if !s.success() => (false, format!("test process exited {s}")),
        // Guard against a filter that matched nothing: that must not pass.
        Some(_) if !text.contains("test result: ok. 1 passed") => (
            false,
            "no test ran (name filter matched nothing?)".to_string(),
        ),
        Some(_) => (true, String::new()),
    };
    if !passed {
        append_diagnostics(&log);
    }
    // Leave nothing behind for the next scenario: dm devices and loop
    // devices a scenario left (its own bug, or the host's udev activating a
    // VG behind its back) would make the next one fail for no reason of its
    // own — that is how a `vgcreate vg_span` once failed in CI.
    let left = BlockState::now().minus(&before);
    let detail = if left.is_empty() {
        detail
    } else {
        let msg = format!("left behind (removed): {}", left.describe());
        say(&format!("leak {name}: {msg}"));
        if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&log) {
            let _ = writeln!(f, "\n===== lab: {msg} =====");
        }
        left.remove();
        if detail.is_empty() {
            msg
        } else {
            format!("{detail}; {msg}")
        }
    };
    let _ = proc::capture("iscsiadm", &["-m", "node", "--logoutall=all"], SHORT);
    let _ = fs::remove_dir_all(&scratch);
    Ok(ScenarioResult {
        name: name.to_string(),
        passed,
        secs,
        detail,
        log: log_name,
    })
}

/// dm devices (by dm name) and attached loop devices (by kernel name).
#[derive(Default)]
struct BlockState {
    dm: Vec<String>,
    loops: Vec<String>,
}

impl BlockState {
    fn now() -> Self {
        let mut st = BlockState::default();
        for e in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(dm) = fs::read_to_string(e.path().join("dm/name")) {
                st.dm.push(dm.trim().to_string());
            } else if name.starts_with("loop") && e.path().join("loop/backing_file").exists() {
                st.loops.push(name);
            }
        }
        st.dm.sort();
        st.loops.sort();
        st
    }

    fn minus(self, before: &BlockState) -> BlockState {
        BlockState {
            dm: self
                .dm
                .into_iter()
                .filter(|d| !before.dm.contains(d))
                .collect(),
            loops: self
                .loops
                .into_iter()
                .filter(|l| !before.loops.contains(l))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.dm.is_empty() && self.loops.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.dm.is_empty() {
            parts.push(format!("dm {}", self.dm.join(", ")));
        }
        if !self.loops.is_empty() {
            parts.push(format!("loop {}", self.loops.join(", ")));
        }
        parts.join("; ")
    }

    /// dm devices top-down (a device is removed once nothing holds it),
    /// then the loop devices.
    fn remove(&self) {
        let mut left = self.dm.clone();
        for _ in 0..4 {
            if left.is_empty() {
                break;
            }
            left.retain(|d| {
                proc::capture("dmsetup", &["remove", "--retry", d], SHORT)
                    .map(|c| !c.status.success())
                    .unwrap_or(true)
            });
        }
        for l in &self.loops {
            let _ = proc::capture("losetup", &["-d", &format!("/dev/{l}")], SHORT);
        }
    }
}

/// What a storage engineer wants to see after a failure.
fn append_diagnostics(log: &Path) {
    let mut out = String::from("\n\n===== lab diagnostics =====\n");
    let cmds: &[(&str, &[&str])] = &[
        ("lsscsi", &["-t", "-i"]),
        ("iscsiadm", &["-m", "session", "-P", "3"]),
        ("ls", &["-l", "/dev/disk/by-id"]),
        ("losetup", &["-a"]),
        ("dmsetup", &["ls", "--tree"]),
        ("df", &["-h", "/mnt", "/tmp", "/run"]),
        ("free", &["-m"]),
        ("dmesg", &[]),
    ];
    for (prog, args) in cmds {
        let _ = writeln!(out, "\n--- {prog} {} ---", args.join(" "));
        match proc::capture(prog, args, SHORT) {
            Ok(c) => {
                let text = if *prog == "dmesg" {
                    let lines: Vec<&str> = c.stdout.lines().collect();
                    lines[lines.len().saturating_sub(80)..].join("\n")
                } else {
                    c.stdout
                };
                let _ = writeln!(out, "{text}{}", c.stderr);
            }
            Err(e) => {
                let _ = writeln!(out, "(failed: {e:#})");
            }
        }
    }
    let _ = writeln!(out, "\n--- configfs /sys/kernel/config/target ---");
    walk_configfs(Path::new("/sys/kernel/config/target"), 0, &mut out);
    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(log) {
        let _ = f.write_all(out.as_bytes());
    }
}

/// Prints the configfs tree: directories, symlinks with their targets and the
/// few attributes that say what is configured.
fn walk_configfs(dir: &Path, depth: usize, out: &mut String) {
    const SKIP: &[&str] = &[
        "statistics",
        "alua",
        "pr",
        "attrib",
        "auth",
        "param",
        "fabric_statistics",
        "discovery_auth",
    ];
    const SHOW: &[&str] = &[
        "enable",
        "control",
        "alias",
        "vpd_unit_serial",
        "info",
        "write_protect",
    ];
    if depth > 8 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let indent = "  ".repeat(depth);
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            let target = fs::read_link(e.path()).unwrap_or_default();
            let _ = writeln!(out, "{indent}{name} -> {}", target.display());
        } else if ft.is_dir() {
            let _ = writeln!(out, "{indent}{name}/");
            if !SKIP.contains(&name.as_str()) {
                walk_configfs(&e.path(), depth + 1, out);
            }
        } else if SHOW.contains(&name.as_str()) {
            let v = fs::read_to_string(e.path()).unwrap_or_default();
            let _ = writeln!(out, "{indent}{name} = {}", v.trim().replace('\n', " | "));
        }
    }
}
