//! Host packages the build and the test suite need, installed idempotently
//! with apt-get.
//!
//! The workspace build needs C headers and libclang (`BUILD_PACKAGES`); the
//! fixture images are made at test time by the real tools (mkfs.*, sgdisk,
//! cryptsetup, xorriso, zfs-fuse…) and compared against blkid, so a fresh
//! Debian 12 machine needs these before `cargo test` means anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{ensure, Context, Result};

/// Debian packages a `cargo build` of the workspace needs, installed by
/// every command that builds it (see `main.rs`) before the first build:
/// the iscsi crate's build script runs bindgen (which loads libclang and
/// needs clang's own headers, both from `libclang-dev`) over
/// `/usr/include/libopeniscsiusr.h` (`libopeniscsiusr-dev`); a C compiler
/// and linker come with `build-essential`. xtask itself needs none of them.
pub const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libopeniscsiusr-dev",
    "libclang-dev",
];

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
    // lvm2 runs thin_check before it activates a clone's thin pool (issue 12).
    "thin-provisioning-tools",
    "xorriso",
    "squashfs-tools",
    "zfs-fuse",
    "strace",
    "procps",
    // The iscsi crate's host test loads libopeniscsiusr and compares it with `iscsiadm -m node`.
    "open-iscsi",
    "iproute2",
    // The Docker volume plugin's tests run a private dockerd (../shared/DOCKER.md)
    // and build their image offline from busybox.
    "docker.io",
    "busybox-static",
    // schemathesis (PyPI) runs in a venv against goldmountd's OpenAPI document.
    "python3-venv",
    // The CSI driver's manifest check (deploy/kubernetes/check.py) reads YAML.
    "python3-yaml",
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

/// Set once this process has run `apt-get update`: one command may install
/// in several steps (build prerequisites, then test tools), and the package
/// lists do not go stale in between.
static UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs the packages that are missing (apt-get update first, once per
/// process); does nothing, and needs no root, when all are installed.
pub fn ensure_apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install {}", missing.join(" "));
    if !UPDATED.load(Ordering::Relaxed) {
        let st = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("running apt-get update")?;
        ensure!(st.success(), "apt-get update failed ({st})");
        UPDATED.store(true, Ordering::Relaxed);
    }
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

/// The schemathesis release (PyPI) that goldmountd's conformance test
/// (`daemon/tests/schemathesis.rs`) runs: pinned, so that a new release's
/// checks cannot turn CI red on their own.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The virtualenv that holds it, relative to the workspace root: under
/// `target/` it is out of git and kept between runs (`cargo clean` drops
/// it; the next `cargo xtask test` makes it again). The test looks here
/// unless `GOLDMOUNT_SCHEMATHESIS` names the executable.
pub const SCHEMATHESIS_VENV: &str = "target/venv-schemathesis";

/// The interpreter the venv is made from: Debian's own (`python3-venv` in
/// HOST_TEST_PACKAGES), not whatever `python3` comes first in PATH.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Whether `exe --version` runs and names `version`.
fn schemathesis_is(exe: &Path, version: &str) -> bool {
    Command::new(exe)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false)
}

/// Makes `<workspace>/target/venv-schemathesis` with schemathesis
/// SCHEMATHESIS_VERSION in it, only when that version is not there yet
/// (pip needs the network then: PyPI, or the index in `PIP_INDEX_URL`).
/// Returns the `schemathesis` executable.
pub fn ensure_schemathesis(workspace: &Path) -> Result<PathBuf> {
    ensure_schemathesis_with(workspace, &[])
}

/// [`ensure_schemathesis`] with more environment for pip (the tests point
/// it at an index that does not answer).
fn ensure_schemathesis_with(workspace: &Path, pip_env: &[(&str, &str)]) -> Result<PathBuf> {
    let venv = workspace.join(SCHEMATHESIS_VENV);
    let exe = venv.join("bin/schemathesis");
    if schemathesis_is(&exe, SCHEMATHESIS_VERSION) {
        return Ok(exe);
    }
    let spec = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    eprintln!("xtask: pip install {spec} into {}", venv.display());
    let python = venv.join("bin/python");
    if !python.exists() {
        let out = Command::new(SYSTEM_PYTHON)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .output()
            .with_context(|| format!("running {SYSTEM_PYTHON} -m venv (package python3-venv)"))?;
        ensure!(
            out.status.success(),
            "{SYSTEM_PYTHON} -m venv {} failed ({}): {}\nexpected Debian's python3-venv (in HOST_TEST_PACKAGES) to be installed",
            venv.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(["--retries", "2", "--timeout", "20"])
        .arg(&spec)
        .envs(pip_env.iter().copied())
        .output()
        .with_context(|| format!("running {} -m pip", python.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // pip's own message is long; its last lines say what went wrong.
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    ensure!(
        out.status.success(),
        "pip install {spec} into {} failed ({}): {}\n\
         the control API's conformance test (daemon/tests/schemathesis.rs) needs it; \
         pip needs network access to PyPI (or an index in PIP_INDEX_URL): check the network and run `cargo xtask test` again",
        venv.display(),
        out.status,
        tail.join("\n")
    );
    ensure!(
        schemathesis_is(&exe, SCHEMATHESIS_VERSION),
        "pip installed {spec}, but `{} --version` does not name {SCHEMATHESIS_VERSION}; remove {} and run again",
        exe.display(),
        venv.display()
    );
    Ok(exe)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::path::Path;

    /// Every `*-sys` crate the workspace can build, with the Debian packages
    /// its build needs. A new `-sys` crate in Cargo.lock fails the test
    /// below until it is listed here (and its packages in BUILD_PACKAGES).
    const SYS_CRATES: &[(&str, &[&str])] = &[
        // bindgen's libclang (loaded at build time) and clang's headers.
        ("clang-sys", &["libclang-dev"]),
        // Pure Rust: the Linux syscall numbers and structs.
        ("linux-raw-sys", &[]),
        // Windows only, never built here.
        ("windows-sys", &[]),
        // WebAssembly only (reqwest's wasm backend), never built here.
        ("js-sys", &[]),
        ("web-sys", &[]),
    ];

    fn workspace_file(rel: &str) -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn every_sys_crate_in_the_lock_file_has_its_packages_installed() {
        let lock = workspace_file("Cargo.lock");
        let sys: Vec<&str> = lock
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| n.ends_with("-sys"))
            .collect();
        assert!(sys.contains(&"clang-sys"), "Cargo.lock: {sys:?}");
        for name in sys {
            let (_, pkgs) = SYS_CRATES
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| {
                    panic!("{name} is new in Cargo.lock: list its Debian build packages in SYS_CRATES and BUILD_PACKAGES")
                });
            for p in *pkgs {
                assert!(BUILD_PACKAGES.contains(p), "{name} needs {p}");
            }
        }
    }

    /// The iscsi build script names the packages it needs in its panic
    /// message; each of them must be in BUILD_PACKAGES.
    #[test]
    fn the_iscsi_build_script_needs_only_listed_packages() {
        let build_rs = workspace_file("iscsi/build.rs");
        let named: Vec<&str> = build_rs
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("lib") && w.ends_with("-dev"))
            .collect();
        assert!(named.contains(&"libopeniscsiusr-dev"), "{named:?}");
        assert!(named.contains(&"libclang-dev"), "{named:?}");
        for p in named {
            assert!(BUILD_PACKAGES.contains(&p), "iscsi/build.rs needs {p}");
        }
    }

    /// Offline, the install fails with an error that names the package,
    /// the network and what to run again (CI must not skip the test).
    #[test]
    fn schemathesis_without_an_index_is_a_clear_error() {
        let ws = std::env::temp_dir().join(format!("xtask-venv-test-{}", std::process::id()));
        let r = ensure_schemathesis_with(
            &ws,
            &[
                ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
                ("PIP_NO_CACHE_DIR", "1"),
                ("PIP_RETRIES", "0"),
            ],
        );
        let _ = std::fs::remove_dir_all(&ws);
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!("schemathesis=={SCHEMATHESIS_VERSION}")),
            "{e}"
        );
        assert!(e.contains("network access to PyPI"), "{e}");
        assert!(e.contains("cargo xtask test"), "{e}");
    }

    /// xtask must build before BUILD_PACKAGES are there: nothing in its
    /// own dependency tree may need a C library or bindgen.
    #[test]
    fn xtask_itself_needs_no_build_package() {
        let out = Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-p", "xtask", "-e", "normal,build"])
            .args(["--prefix", "none", "--format", "{p}"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8(out.stdout).unwrap();
        assert!(tree.contains("serde_json"), "{tree}");
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let needs = SYS_CRATES
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&[][..], |(_, p)| *p);
            assert!(
                needs.is_empty() && !["bindgen", "iscsi", "cc", "pkg-config"].contains(&name),
                "xtask depends on {line}, which needs {needs:?}"
            );
        }
    }
}
