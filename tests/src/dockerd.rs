//! A private Docker engine for a test (../shared/DOCKER.md's recipe, as
//! dockerplugin's host tests run it): its own socket, data-root and
//! exec-root under one short directory, no iptables, no bridge, its own
//! cgroup parent, and an image built offline from the host's static
//! busybox (no registry is reachable). Everything it started is torn down
//! on drop, on every path: containers, the engine, processes left in its
//! cgroups, mounts left under its directory.
//!
//! Test helper: it panics with docker's stderr and dockerd's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// busybox applets linked into the offline image.
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "ls", "test", "mkdir", "sync", "wc",
];

/// How often [`Dockerd::wait_ready`] starts dockerd.
pub const START_ATTEMPTS: u32 = 3;

/// What dockerd logs when its containerd did not answer in time.
const CONTAINERD_TIMEOUT: &str = "timeout waiting for containerd to start";

/// The engine's binaries, read once so that the page cache holds them: in
/// the lab guest they come over 9p, and a cold containerd can miss
/// dockerd's start timeout.
fn warm_binaries() {
    for b in [
        "/usr/sbin/dockerd",
        "/usr/bin/containerd",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/sbin/runc",
    ] {
        if let Ok(mut f) = fs::File::open(b) {
            let _ = std::io::copy(&mut f, &mut std::io::sink());
        }
    }
}

/// Mount points at or under `dir`, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// The engine; stopped on drop.
pub struct Dockerd {
    /// Its directory (socket, data-root, exec-root, log).
    pub dir: PathBuf,
    /// `unix://<dir>/docker.sock`, for `DOCKER_HOST`.
    pub host: String,
    cgroup: String,
    child: Option<Child>,
    spawned: Instant,
}

impl Dockerd {
    /// Starts dockerd in `dir` (keep it short: socket paths stay under 108
    /// bytes; on a tmpfs, not an overlay, for overlay2) with cgroup parent
    /// `/<cgroup>`, waits up to `ready` for it to answer, and imports the
    /// busybox image as `image`.
    pub fn start(dir: &Path, cgroup: &str, ready: Duration, image: &str) -> Self {
        let mut me = Self::spawn(dir, cgroup);
        me.wait_ready(ready, image);
        me
    }

    /// Starts dockerd as [`start`](Self::start) does without waiting for
    /// it (see [`wait_ready`](Self::wait_ready)).
    pub fn spawn(dir: &Path, cgroup: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        fs::write(
            dir.join("daemon.json"),
            format!("{{\"deprecated-key-path\":\"{}/key.json\"}}", dir.display()),
        )
        .unwrap();
        warm_binaries();
        let mut me = Dockerd {
            dir: dir.to_path_buf(),
            host: format!("unix://{}/docker.sock", dir.display()),
            cgroup: cgroup.to_string(),
            child: None,
            spawned: Instant::now(),
        };
        me.spawn_child();
        me
    }

    fn spawn_child(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let d = |s: &str| format!("{}/{s}", self.dir.display());
        let child = Command::new("dockerd")
            .args([
                "--config-file",
                &d("daemon.json"),
                "--host",
                &self.host,
                "--data-root",
                &d("data"),
                "--exec-root",
                &d("exec"),
                "--pidfile",
                &d("dockerd.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                "--cgroup-parent",
                &format!("/{}", self.cgroup),
                "--shutdown-timeout",
                "2",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning dockerd (apt: docker.io): {e}"));
        self.child = Some(child);
    }

    /// Waits up to `ready` (from the spawn) for the engine to answer, then
    /// imports the busybox image as `image`. dockerd gives the containerd
    /// it starts a fixed time to answer and exits when it does not, which
    /// happens under TCG on a busy host: then dockerd is started again (at
    /// most [`START_ATTEMPTS`] times), and it takes over the containerd
    /// that is still coming up (its pid file is in the exec-root).
    pub fn wait_ready(&mut self, ready: Duration, image: &str) {
        let mut attempts = 1;
        loop {
            if self.docker(&["version"]).status.success() {
                break;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = self.log();
                if attempts < START_ATTEMPTS && log.contains(CONTAINERD_TIMEOUT) {
                    attempts += 1;
                    eprintln!(
                        "dockerd exited ({st}): {CONTAINERD_TIMEOUT}; starting it again ({attempts}/{START_ATTEMPTS})"
                    );
                    self.spawn_child();
                    continue;
                }
                panic!("dockerd exited ({st}):\n{log}");
            }
            assert!(
                self.spawned.elapsed() < ready,
                "dockerd not ready in {ready:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "dockerd ready {:.1} s after its start ({attempts} attempt(s))",
            self.spawned.elapsed().as_secs_f64()
        );
        self.import_busybox(image);
    }

    /// The containerd dockerd started (from its pid file), if it runs.
    fn managed_containerd(&self) -> Option<String> {
        let pid = fs::read_to_string(self.dir.join("exec/containerd/containerd.pid")).ok()?;
        let pid = pid.trim().to_string();
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "containerd").then_some(pid)
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running docker (apt: docker.io): {e}"))
    }

    /// `docker ARGS`, which must succeed: its stdout (logged with the time
    /// it took).
    pub fn ok(&self, args: &[&str]) -> String {
        let t0 = Instant::now();
        let out = self.docker(args);
        eprintln!(
            "$ docker {} -> {} in {:.2} s",
            args.join(" "),
            out.status,
            t0.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports `/bin/busybox` with a few applet links as `image`.
    pub fn import_busybox(&self, image: &str) {
        let root = self.dir.join("rootfs");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::copy("/bin/busybox", root.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("copying /bin/busybox (apt: busybox-static): {e}"));
        for l in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
        }
        let mut tar = Command::new("tar")
            .args(["-C", root.to_str().unwrap(), "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Command::new("docker")
            .args(["import", "-c", "ENV PATH=/bin", "-", image])
            .env("DOCKER_HOST", &self.host)
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            tar.wait().unwrap().success(),
            "tar of the busybox rootfs failed"
        );
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// This engine's cgroup folders (cgroup v2 and any v1 hierarchy).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let bases = std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(
            fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        bases
            .map(|b| b.join(&self.cgroup))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Removes every container, stops the engine (SIGTERM, then SIGKILL
    /// after 20 s), kills what survived in its cgroups and lazily unmounts
    /// what is left under its directory. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ids = String::from_utf8_lossy(&self.docker(&["ps", "-aq"]).stdout).into_owned();
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("dockerd did not stop in 20 s: SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A dockerd that exited abnormally leaves its containerd running.
        if let Some(pid) = self.managed_containerd() {
            eprintln!("dockerd teardown: stopping containerd {pid} it left");
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.managed_containerd().is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.managed_containerd().is_some() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        for cg in self.cgroup_dirs() {
            let mut dirs = vec![];
            let mut stack = vec![cg];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in &dirs {
                if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.split_whitespace() {
                        eprintln!("dockerd teardown: killing {pid} left in {}", d.display());
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            for d in &dirs {
                let _ = fs::remove_dir(d);
            }
        }
        let mut left = mounts_under(&self.dir);
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            eprintln!("dockerd teardown: umount -l {m}");
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- dockerd log -----\n{}", self.log());
        }
        self.stop();
        if self.cgroup_dirs().is_empty() && mounts_under(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "dockerd teardown: {} kept (cgroups {:?}, mounts {:?})",
                self.dir.display(),
                self.cgroup_dirs(),
                mounts_under(&self.dir)
            );
        }
    }
}
