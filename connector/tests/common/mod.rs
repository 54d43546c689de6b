//! Shared helpers of the goldmount host tests: an isolated goldmount
//! environment in a tempdir (volumes root, state, run dir), running the real
//! binary with a timeout and an address-space cap (a hostile clone must fail
//! a test, never hang CI or eat the machine), reading the kernel's view of
//! mounts and loop devices, and cleanup that holds when a test fails half-way.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;

#[path = "../../../tests/src/golddisk.rs"]
pub mod golddisk;

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// How long one goldmount run may take before the test kills it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Address-space cap of a goldmount run: far above what it needs, far below
/// what the machine has (an fstab that is a link to /dev/zero must not take
/// the host down with the test).
const ADDRESS_SPACE_CAP: &str = "--as=4294967296";

/// Runs a tool that must succeed and returns its stdout.
pub fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test ({e})"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How one goldmount run ended.
#[derive(Debug)]
pub struct Run {
    /// Exit status (a signal when it was killed).
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// True when the test killed it for taking longer than its timeout.
    pub timed_out: bool,
    /// Wall time.
    pub took: Duration,
}

impl Run {
    /// The exit code (None when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// The signal that ended it.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
    /// The manifest it printed with `--json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "goldmount printed no JSON ({e}): exit {:?}, signal {:?}, timed out {}, stdout {:?}, stderr {}",
                self.code(),
                self.signal(),
                self.timed_out,
                self.stdout,
                self.stderr
            )
        })
    }
    /// Panics unless it exited 0.
    pub fn ok(self) -> Self {
        assert!(
            self.status.success() && !self.timed_out,
            "goldmount failed: exit {:?}, signal {:?}, timed out {}: {}",
            self.code(),
            self.signal(),
            self.timed_out,
            self.stderr
        );
        self
    }
}

/// Isolated goldmount paths for one test; everything it leaves is undone on drop.
pub struct Env {
    /// The tempdir holding images, the volumes root, state and run dir.
    pub dir: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh tempdir.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    /// The tempdir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// GOLDMOUNT_VOLUMES_ROOT.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }
    /// GOLDMOUNT_RUN_DIR.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    /// `goldmount ARGS` with this environment, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("prlimit");
        c.arg(ADDRESS_SPACE_CAP)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_goldmount"))
            .args(args)
            .env("GOLDMOUNT_VOLUMES_ROOT", self.root())
            .env("GOLDMOUNT_STATE", self.dir.path().join("state.redb"))
            .env("GOLDMOUNT_RUN_DIR", self.run_dir())
            .env_remove("GOLDMOUNT_TEST_KILL_AT")
            .env_remove("GOLDMOUNT_LOG");
        c
    }
    /// Runs `goldmount ARGS` with extra environment, killing it after `timeout`.
    pub fn run_with(&self, args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Run {
        let mut c = self.command(args);
        c.envs(envs.iter().copied());
        run_timed(c, timeout)
    }
    /// Runs `goldmount ARGS` (killed after [`DEFAULT_TIMEOUT`]).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], DEFAULT_TIMEOUT)
    }
    /// Runs `goldmount ARGS` and returns its output.
    pub fn gm(&self, args: &[&str]) -> Output {
        let r = self.run(args);
        Output {
            status: r.status,
            stdout: r.stdout.into_bytes(),
            stderr: r.stderr.into_bytes(),
        }
    }
    /// Runs `goldmount ARGS`, which must succeed, and returns its stdout.
    pub fn gm_ok(&self, args: &[&str]) -> String {
        let o = self.gm(args);
        assert!(
            o.status.success(),
            "goldmount {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// `goldmount mount --device IMG --volume V --json EXTRA…`, not checked.
    pub fn mount_run(&self, img: &Path, volume: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "mount",
            "--device",
            img.to_str().unwrap(),
            "--volume",
            volume,
            "--json",
        ];
        args.extend(extra);
        self.run(&args)
    }
    /// `goldmount mount … --json`, which must succeed; returns the manifest.
    pub fn mount_json(&self, img: &Path, volume: &str, extra: &[&str]) -> serde_json::Value {
        self.mount_run(img, volume, extra).ok().json()
    }
    /// The volume names `goldmount list --json` reports.
    pub fn listed(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.gm_ok(&["list", "--json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x.get("volume")
                    .or_else(|| x.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        cleanup_under(self.dir.path());
    }
}

/// Lazily unmounts everything mounted under `dir` and detaches every loop
/// device backed by a file under `dir` (and the loop devices stacked on
/// those: offset loops of partitions are backed by the whole-disk loop).
/// Mounts can hide each other (a clone that mounted over a parent of its
/// own tree), so this goes round until nothing is left or nothing changes.
pub fn cleanup_under(dir: &Path) {
    let mut left = usize::MAX;
    for _ in 0..8 {
        let mut targets: Vec<PathBuf> = mount_lines_under(dir)
            .into_iter()
            .map(|m| m.target)
            .collect();
        if targets.is_empty() || targets.len() == left {
            break;
        }
        left = targets.len();
        targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
        for t in targets {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&t)
                .stderr(Stdio::null())
                .status();
        }
    }
    // Stacked loops first: a busy backing loop would only be marked autoclear.
    let mut ours = loops_under(dir);
    ours.reverse();
    for dev in ours {
        let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    }
}

/// Loop devices backed by a file under `dir`, then those backed by them,
/// and so on (parents before the loops stacked on them).
pub fn loops_under(dir: &Path) -> Vec<PathBuf> {
    stacked(&loop_devices(), &|b: &Path| b.starts_with(dir))
}

/// The loops whose backing satisfies `root`, then those backed by any of
/// them, transitively, parents first.
fn stacked(all: &[(PathBuf, PathBuf)], root: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = all
        .iter()
        .filter(|(_, b)| root(b))
        .map(|(d, _)| d.clone())
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].clone();
        for (d, b) in all {
            if *b == parent && !found.contains(d) {
                found.push(d.clone());
            }
        }
        i += 1;
    }
    found
}

/// Runs `c` with piped output, killing it (SIGKILL) after `timeout`.
pub fn run_timed(mut c: Command, timeout: Duration) -> Run {
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let mut stderr = err.join().unwrap();
    if timed_out {
        stderr.push_str(&format!(
            "\n[test: killed after {} s timeout]",
            timeout.as_secs()
        ));
    }
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr,
        timed_out,
        took,
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountLine {
    /// Mount point (field 5).
    pub target: PathBuf,
    /// Per-mount options (field 6): ro/rw, nosuid, nodev…
    pub mount_options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current mount table of this mount namespace.
pub fn mounts() -> Vec<MountLine> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountLine {
                target: PathBuf::from(unescape_octal(f.get(4)?)),
                mount_options: f.get(5)?.to_string(),
                fstype: f.get(sep + 1)?.to_string(),
                source: unescape_octal(f.get(sep + 2)?),
            })
        })
        .collect()
}

/// The mounts whose mount point is `dir` or below it.
pub fn mount_lines_under(dir: &Path) -> Vec<MountLine> {
    mounts()
        .into_iter()
        .filter(|m| m.target.starts_with(dir))
        .collect()
}

/// How many mounts are at or below `dir`.
pub fn mounts_under(dir: &Path) -> usize {
    mount_lines_under(dir).len()
}

/// Every attached loop device with its backing file (sysfs), " (deleted)" cut off.
pub fn loop_devices() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = b.trim_end_matches('\n');
            let b = b.strip_suffix(" (deleted)").unwrap_or(b);
            out.push((PathBuf::from(format!("/dev/{name}")), PathBuf::from(b)));
        }
    }
    out
}

/// How many loop devices have `path` as their backing file, counting the
/// loops stacked on those (a partition's offset loop on the disk's loop).
pub fn loops_backed_by(path: &Path) -> usize {
    stacked(&loop_devices(), &|b: &Path| b == path).len()
}

/// Copies `fs_img` into `disk` at `offset`, skipping zero blocks (stays sparse).
pub fn write_into(disk: &Path, offset: u64, fs_img: &Path) {
    let data = fs::read(fs_img).unwrap();
    let f = fs::OpenOptions::new().write(true).open(disk).unwrap();
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, offset + (i as u64) * MIB).unwrap();
        }
    }
}

/// A sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// The shared gold disk: GPT, /boot ext4, root xfs with an fstab, data ext4.
pub fn gold_disk(dir: &Path) -> PathBuf {
    golddisk::build(dir, "gold.img").unwrap()
}

/// A sparse copy of `src` at `dst`.
pub fn sparse_copy(src: &Path, dst: &Path) {
    tool(
        "cp",
        &[
            "--sparse=always",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
}
