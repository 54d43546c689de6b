//! `cargo xtask lab --zfs`: OpenZFS for the lab guest, kept out of the host.
//!
//! Debian's OpenZFS (contrib: zfsutils-linux, zfs-dkms 2.1.11) conflicts with
//! the host's `zfs-fuse`, which fsdetect's fixtures use. So nothing is
//! installed on the host's root: the `.deb`s are fetched with a private apt
//! configuration (contrib only, own lists and cache) and extracted under
//! [`ZFS_ROOT`]; the kernel modules are built from zfs-dkms's source for the
//! guest kernel into `modules/<kver>/` and reused until that directory is
//! removed. In the guest, [`guest_setup`] insmods them (after modprobing
//! their in-kernel dependencies) and puts the private userland on `PATH`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::proc;

/// Everything ZFS for the lab lives here.
pub const ZFS_ROOT: &str = "/opt/goldmount-lab/zfs";

/// Environment variable the host puts into the plan to turn ZFS on in the
/// guest; its value is [`ZFS_ROOT`].
pub const PLAN_ENV: &str = "GOLDMOUNT_LAB_ZFS";

/// OpenZFS's version in Debian 12 contrib; its source is in zfs-dkms.
const ZFS_VERSION: &str = "2.1.11";

/// Userland packages (and zfs-dkms for the module source) from contrib.
const DEBS: &[&str] = &[
    "zfs-dkms",
    "zfsutils-linux",
    "libzfs4linux",
    "libzpool5linux",
    "libnvpair3linux",
    "libuutil3linux",
];

/// Where zfsutils-linux's libraries land after extraction.
const LIB_DIR: &str = "root/lib/x86_64-linux-gnu";
/// Where its programs land.
const SBIN_DIRS: &[&str] = &["root/sbin", "root/usr/sbin", "root/usr/bin"];

const SHORT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(ZFS_ROOT)
}

/// The modules directory for one kernel version.
pub fn modules_dir(kver: &str) -> PathBuf {
    root().join("modules").join(kver)
}

/// Host side of `--zfs`: fetches and extracts the userland, installs the
/// guest kernel's headers, and builds the modules unless cached. Idempotent;
/// the second run only checks.
pub fn prepare(kver: &str) -> Result<()> {
    let t0 = Instant::now();
    fetch_userland()?;
    check_userland()?;
    let mods = modules_dir(kver);
    if mods.join("zfs.ko").is_file() && mods.join("spl.ko").is_file() {
        eprintln!("lab --zfs: modules for {kver} cached in {}", mods.display());
    } else {
        install_headers(kver)?;
        build_modules(kver)?;
    }
    eprintln!(
        "lab --zfs: ready in {:.1}s ({ZFS_ROOT})",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `apt-get` with a private sources list (bookworm contrib), lists and cache
/// under [`ZFS_ROOT`]: the host's apt configuration is not changed.
fn apt(args: &[&str], timeout: Duration) -> Result<String> {
    let apt = root().join("apt");
    let opts = [
        format!(
            "Dir::Etc::SourceList={}",
            apt.join("sources.list").display()
        ),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
    ];
    let mut cmd = Command::new("apt-get");
    for o in &opts {
        cmd.args(["-o", o]);
    }
    cmd.args(args).current_dir(root().join("debs"));
    let out = proc::capture_cmd(cmd, timeout)?;
    ensure!(
        out.status.success(),
        "apt-get {} (private contrib sources in {}) failed: {}",
        args.join(" "),
        apt.display(),
        out.stderr.trim()
    );
    Ok(out.stdout)
}

fn have_deb(debs: &Path, pkg: &str) -> Result<bool> {
    let prefix = format!("{pkg}_{ZFS_VERSION}");
    Ok(fs::read_dir(debs)
        .with_context(|| format!("reading {}", debs.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
}

/// For the host tests of goldmount's ZFS reguid helper: OpenZFS 2.1's
/// userland libraries (libzpool) from the same private prefix, fetched and
/// checked as for `--zfs`, nothing installed on the host's root. Returns
/// the directory holding the libraries.
pub fn ensure_userland() -> Result<PathBuf> {
    fetch_userland()?;
    check_userland()?;
    Ok(lib_dir(&root()))
}

fn fetch_userland() -> Result<()> {
    let r = root();
    let apt_dir = r.join("apt");
    for d in [
        apt_dir.join("lists/partial"),
        apt_dir.join("cache/archives/partial"),
        r.join("debs"),
    ] {
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let debs = r.join("debs");
    let mut missing = Vec::new();
    for p in DEBS {
        if !have_deb(&debs, p)? {
            missing.push(*p);
        }
    }
    if !missing.is_empty() {
        fs::write(
            apt_dir.join("sources.list"),
            "deb http://deb.debian.org/debian bookworm contrib\n",
        )
        .context("writing the private contrib sources.list")?;
        eprintln!("lab --zfs: apt-get download {}", missing.join(" "));
        apt(&["update", "-q"], Duration::from_secs(600))?;
        let mut args = vec!["download", "-q"];
        args.extend(&missing);
        apt(&args, Duration::from_secs(600))?;
        for p in DEBS {
            ensure!(
                have_deb(&debs, p)?,
                "apt-get download did not produce {p}_{ZFS_VERSION}*.deb in {}",
                debs.display()
            );
        }
    }
    let src = source_dir();
    if !r.join("root/sbin/zpool").is_file() || !src.join("configure").is_file() {
        let dest = r.join("root");
        fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        for e in fs::read_dir(&debs).with_context(|| format!("reading {}", debs.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "deb") {
                let (p, d) = (p.to_string_lossy(), dest.to_string_lossy());
                proc::run("dpkg-deb", &["-x", &p, &d], SHORT)?;
            }
        }
    }
    Ok(())
}

fn source_dir() -> PathBuf {
    root().join(format!("root/usr/src/zfs-{ZFS_VERSION}"))
}

/// `PATH` entries of the private userland.
pub fn path_dirs(root: &Path) -> Vec<PathBuf> {
    SBIN_DIRS.iter().map(|d| root.join(d)).collect()
}

/// `LD_LIBRARY_PATH` for the private userland.
pub fn lib_dir(root: &Path) -> PathBuf {
    root.join(LIB_DIR)
}

/// Runs the extracted `zpool --version` from the private prefix: proves
/// the libraries resolve without anything installed on the host.
fn check_userland() -> Result<()> {
    let r = root();
    let mut cmd = Command::new(r.join("root/sbin/zpool"));
    cmd.arg("--version").env("LD_LIBRARY_PATH", lib_dir(&r));
    let out = proc::capture_cmd(cmd, SHORT)?;
    // Without the kernel module it still prints the userland version (and
    // exits non-zero), which is what we check here.
    ensure!(
        out.stdout.contains(&format!("zfs-{ZFS_VERSION}")),
        "the extracted zpool does not run from {ZFS_ROOT}: stdout {:?}, stderr {:?}",
        out.stdout.trim(),
        out.stderr.trim()
    );
    Ok(())
}

fn install_headers(kver: &str) -> Result<()> {
    let build = PathBuf::from(format!("/lib/modules/{kver}/build"));
    if build.join("Makefile").is_file() {
        return Ok(());
    }
    let pkg = format!("linux-headers-{kver}");
    eprintln!("lab --zfs: apt-get install {pkg} gcc make");
    let mut cmd = Command::new("apt-get");
    cmd.args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        &pkg,
        "gcc",
        "make",
    ])
    .env("DEBIAN_FRONTEND", "noninteractive");
    let out = proc::capture_cmd(cmd, Duration::from_secs(1200))?;
    ensure!(
        out.status.success(),
        "apt-get install {pkg} failed: {}",
        out.stderr.trim()
    );
    ensure!(
        build.join("Makefile").is_file(),
        "{} has no Makefile after installing {pkg}",
        build.display()
    );
    Ok(())
}

/// configure + make of zfs-dkms's source against the guest kernel's headers,
/// in a scratch copy; the `.ko` files are moved into place only when all are
/// built, so an interrupted build is never mistaken for a cache hit.
fn build_modules(kver: &str) -> Result<()> {
    let r = root();
    let work = r.join("build").join(kver);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(work.parent().unwrap_or(&r)).context("creating the build dir")?;
    let (src, w) = (source_dir(), work.to_string_lossy().into_owned());
    proc::run("cp", &["-a", &src.to_string_lossy(), &w], SHORT)?;
    let build = fs::canonicalize(format!("/lib/modules/{kver}/build"))
        .with_context(|| format!("/lib/modules/{kver}/build (apt: linux-headers-{kver})"))?;
    let source = fs::canonicalize(format!("/lib/modules/{kver}/source")).unwrap_or(build.clone());
    let log = r.join(format!("build-{kver}.log"));
    let _ = fs::remove_file(&log);
    let t0 = Instant::now();
    eprintln!(
        "lab --zfs: building OpenZFS {ZFS_VERSION} modules for {kver} (several minutes; log {})",
        log.display()
    );
    let mut cfg = Command::new("./configure");
    cfg.current_dir(&work).args([
        "--with-config=kernel".to_string(),
        format!("--with-linux={}", source.display()),
        format!("--with-linux-obj={}", build.display()),
    ]);
    let st = proc::run_logged(cfg, &log, Duration::from_secs(1800))?;
    ensure!(
        st.is_some_and(|s| s.success()),
        "OpenZFS configure failed ({st:?}); see {}",
        log.display()
    );
    let t_cfg = t0.elapsed().as_secs_f64();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut make = Command::new("make");
    make.current_dir(&work).arg(format!("-j{jobs}"));
    let st = proc::run_logged(make, &log, Duration::from_secs(3600))?;
    ensure!(
        st.is_some_and(|s| s.success()),
        "OpenZFS make failed ({st:?}); see {}",
        log.display()
    );
    let secs = t0.elapsed().as_secs_f64();
    let kos = find_kos(&work.join("module"))?;
    ensure!(
        kos.iter().any(|k| k.ends_with("zfs.ko")) && kos.iter().any(|k| k.ends_with("spl.ko")),
        "the build produced no zfs.ko/spl.ko under {}",
        work.display()
    );
    let tmp = r.join("modules").join(format!("{kver}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for k in &kos {
        let name = k.file_name().context("module file name")?;
        fs::copy(k, tmp.join(name)).with_context(|| format!("copying {}", k.display()))?;
    }
    fs::write(
        tmp.join("BUILD-INFO"),
        format!("openzfs {ZFS_VERSION} for {kver}: configure {t_cfg:.0}s, configure+make {secs:.0}s with -j{jobs}\n"),
    )
    .context("writing BUILD-INFO")?;
    let dest = modules_dir(kver);
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&tmp, &dest).with_context(|| format!("moving modules to {}", dest.display()))?;
    let _ = fs::remove_dir_all(&work);
    eprintln!(
        "lab --zfs: built {} modules in {secs:.0}s (configure {t_cfg:.0}s) -> {}",
        kos.len(),
        dest.display()
    );
    Ok(())
}

fn find_kos(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(find_kos(&p)?);
        } else if p.extension().is_some_and(|x| x == "ko") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Guest side: loads the cached modules for the running kernel and puts the
/// private userland on `PATH`/`LD_LIBRARY_PATH` (inherited by every
/// scenario). Returns a log.
pub fn guest_setup(root: &Path) -> Result<String> {
    let mut log = String::new();
    let kver = fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel version")?
        .trim()
        .to_string();
    let dir = root.join("modules").join(&kver);
    let kos = find_kos(&dir).with_context(|| {
        format!("no ZFS modules for {kver}: run `cargo xtask lab --zfs` on the host to build them")
    })?;
    // name -> (file, dependencies)
    let mut mods: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    for k in kos {
        let name = k
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("module name")?;
        let deps = proc::run("modinfo", &["-F", "depends", &k.to_string_lossy()], SHORT)?;
        let deps = deps
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
        mods.insert(name, (k, deps));
    }
    let t0 = Instant::now();
    let mut loaded: Vec<String> = Vec::new();
    let mut kernel_deps: Vec<String> = Vec::new();
    for (_, deps) in mods.values() {
        for d in deps {
            if !mods.contains_key(d) && !kernel_deps.contains(d) {
                kernel_deps.push(d.clone());
            }
        }
    }
    for d in &kernel_deps {
        proc::run("modprobe", &[d], SHORT).with_context(|| format!("modprobe {d} (for ZFS)"))?;
    }
    // Dependencies first; a cycle or a missing module ends the loop loudly.
    while loaded.len() < mods.len() {
        let next = mods
            .iter()
            .find(|(n, (_, deps))| {
                !loaded.contains(n)
                    && deps
                        .iter()
                        .all(|d| loaded.contains(d) || !mods.contains_key(d))
            })
            .map(|(n, (k, _))| (n.clone(), k.clone()));
        let Some((name, ko)) = next else {
            bail!("cannot order the ZFS modules by their dependencies: {mods:?}");
        };
        if !Path::new("/sys/module").join(&name).exists() {
            proc::run("insmod", &[&ko.to_string_lossy()], SHORT)
                .with_context(|| format!("insmod {}", ko.display()))?;
        }
        loaded.push(name);
    }
    let _ = writeln!(
        log,
        "zfs: modprobed {}; insmodded {} in {:.1}s",
        kernel_deps.join(" "),
        loaded.join(" "),
        t0.elapsed().as_secs_f64()
    );
    let mut path: Vec<PathBuf> = path_dirs(root);
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::set_var("PATH", std::env::join_paths(path).context("joining PATH")?);
    let mut libs = vec![lib_dir(root)];
    libs.extend(std::env::split_paths(
        &std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default(),
    ));
    std::env::set_var(
        "LD_LIBRARY_PATH",
        std::env::join_paths(libs).context("joining LD_LIBRARY_PATH")?,
    );
    for _ in 0..100 {
        if Path::new("/dev/zfs").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        Path::new("/dev/zfs").exists(),
        "/dev/zfs did not appear after loading zfs.ko"
    );
    let v = proc::run("zpool", &["--version"], SHORT).context("zpool --version in the guest")?;
    let _ = writeln!(log, "zfs: {}", v.trim().replace('\n', ", "));
    Ok(log)
}
