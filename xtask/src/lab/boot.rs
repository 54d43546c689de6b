//! Booting Debian's kernel under QEMU (TCG) with the host's root filesystem
//! through virtme-ng, and following the guest's console.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::install::VENV;
use super::plan::MARKER;
use super::proc;

/// Modules for emulated hardware the lab never uses: blacklisting them cuts
/// the TCG boot roughly in half (see shared/LAB.md).
pub const MODULE_BLACKLIST: &[&str] = &[
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "ahci",
    "libahci",
    "sr_mod",
    "cdrom",
    "psmouse",
    "serio_raw",
    "i6300esb",
    "iTCO_wdt",
    "i2c_i801",
    "lpc_ich",
    "pcspkr",
    "evdev",
    "button",
    "joydev",
    "drm",
    "bochs",
    "aesni_intel",
    "sha1_ssse3",
    "sha256_ssse3",
    "sha512_ssse3",
    "crc32_pclmul",
    "crct10dif_pclmul",
    "ghash_clmulni_intel",
    "polyval_clmulni",
];

/// AppArmor off in the guest: Debian's kernel enables it by default, and
/// then `docker run` fails because dockerd cannot load its docker-default
/// profile (there is no `apparmor_parser`; shared/DOCKER.md). Nothing else
/// in the lab uses AppArmor: no scenario loads a profile, and the guest
/// starts no service that would.
pub const NO_APPARMOR: &str = "apparmor=0";

/// Host tools the boot needs, found up front so a missing one is named.
pub struct Tools {
    /// virtme-ng's `vng`.
    pub vng: PathBuf,
    /// `/boot/vmlinuz-<ver>` of Debian's packaged kernel.
    pub kernel: PathBuf,
}

/// Finds vng, the newest Debian kernel with its modules, QEMU and busybox.
pub fn preflight() -> Result<Tools> {
    let vng = Path::new(VENV).join("bin/vng");
    if !vng.exists() {
        bail!(
            "{} missing: run `cargo xtask lab --install` (pip: virtme-ng)",
            vng.display()
        );
    }
    for (tool, pkg) in [
        ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
        ("/bin/busybox", "busybox-static"),
        ("/sbin/iscsid", "open-iscsi"),
        ("/usr/bin/lsscsi", "lsscsi"),
        ("/sbin/mkfs.xfs", "xfsprogs"),
    ] {
        if !Path::new(tool).exists() {
            bail!("{tool} missing: run `cargo xtask lab --install` (apt: {pkg})");
        }
    }
    let mut kernels: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
        .context("reading /boot")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("vmlinuz-")?.to_string();
            (ver.ends_with("-amd64") && Path::new("/lib/modules").join(&ver).is_dir())
                .then(|| (ver, e.path()))
        })
        .collect();
    kernels.sort_by_key(|k| version_key(&k.0));
    let Some((_, kernel)) = kernels.pop() else {
        bail!("no /boot/vmlinuz-*-amd64 with /lib/modules: run `cargo xtask lab --install` (apt: linux-image-amd64)");
    };
    Ok(Tools { vng, kernel })
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What the host saw of one boot.
pub struct BootReport {
    /// vng start → the guest runner's first console line.
    pub boot_secs: Option<f64>,
    /// vng start → vng exit.
    pub wall_secs: f64,
    /// vng's exit status, `None` if we killed it on timeout.
    pub exit: Option<std::process::ExitStatus>,
}

/// Boots once and runs `guest_cmd` as the guest's program; the console goes to
/// `console_log`, marker lines are echoed live. Kills everything after `timeout`.
pub fn boot(
    tools: &Tools,
    results_dir: &Path,
    guest_cmd: &str,
    console_log: &Path,
    timeout: Duration,
) -> Result<BootReport> {
    use std::os::unix::process::CommandExt;
    let path = format!(
        "{}:{}",
        Path::new(VENV).join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&tools.vng);
    cmd.arg("--run")
        .arg(&tools.kernel)
        .args([
            "--disable-kvm",
            "--force-9p",
            "--memory",
            "2G",
            "--cpus",
            "2",
        ])
        .arg(format!("--rwdir={}", results_dir.display()))
        .arg(format!(
            "--append=modprobe.blacklist={}",
            MODULE_BLACKLIST.join(",")
        ))
        .arg(format!("--append={NO_APPARMOR}"))
        .arg("--exec")
        .arg(guest_cmd)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut console =
        File::create(console_log).with_context(|| format!("creating {}", console_log.display()))?;
    let mut boot_secs = None;
    let deadline = start + timeout;
    let mut exit = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((at, line)) => {
                let t = at.duration_since(start).as_secs_f64();
                writeln!(console, "[{t:8.2}] {line}").context("writing console log")?;
                if let Some(rest) = line.trim().strip_prefix(MARKER) {
                    if boot_secs.is_none() {
                        boot_secs = Some(t);
                    }
                    eprintln!("lab [{t:6.1}s]{rest}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                exit = proc::wait_timeout(
                    &mut child,
                    deadline.saturating_duration_since(Instant::now()),
                )?;
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    if exit.is_none() {
        if let Some(status) = child.try_wait().context("waiting for vng")? {
            exit = Some(status);
        } else {
            writeln!(
                console,
                "lab: boot timed out after {timeout:?}; killed vng and QEMU"
            )
            .context("writing console log")?;
            eprintln!("lab: boot timed out after {timeout:?}; killing vng and QEMU");
            proc::kill_group(&mut child);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    Ok(BootReport {
        boot_secs,
        wall_secs: start.elapsed().as_secs_f64(),
        exit,
    })
}
