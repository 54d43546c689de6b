//! Helpers of the Docker tests (docker_engine.rs, docker_profiles.rs): a
//! private dockerd per test (../shared/DOCKER.md's recipe), the real
//! appliance binary (loop backend) with a registered host and the gold, the
//! plugin in this process or served by the real goldmountd, and checks that
//! nothing is left (mounts, loop devices, presentations, clones).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::engine::{Engine, VolumeName};
use dockerplugin::{ApplianceAccess, ApplianceLink, DockerConfig, Driver, PluginServer};
use goldmount_tests::appliance_proc::{appliance_bin as shared_appliance_bin, ApplianceProc};
#[allow(unused_imports)]
pub use goldmount_tests::appliance_proc::{free_port, loops_backed_under, workspace_bin};
use goldmount_tests::golddisk;

pub const GOLD: &str = "pg-gold";
pub const HOST: &str = "here";
pub const IMAGE: &str = "gm-busybox:test";

pub static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).exists()
        || Path::new("/sbin").join(tool).exists();
    assert!(
        found,
        "{tool} is missing: apt-get install -y --no-install-recommends {package}"
    );
}

pub fn prerequisites() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root (dockerd, loop devices, mounts)"
    );
    require("dockerd", "docker.io");
    require("containerd", "docker.io");
    require("runc", "docker.io");
    require("docker", "docker.io");
    require("sgdisk", "gdisk");
    require("mkfs.xfs", "xfsprogs");
    require("mkfs.ext4", "e2fsprogs");
    require("losetup", "mount");
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing: apt-get install -y busybox-static"
    );
}

pub fn appliance_bin() -> PathBuf {
    shared_appliance_bin()
}

pub fn goldmountd_bin() -> PathBuf {
    workspace_bin(
        "goldmountd",
        "GOLDMOUNTD_BIN",
        "goldmountd",
        &["daemon/src", "dockerplugin/src"],
    )
}

/// Mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// The plugin in this process: its own runtime, stopped (and the socket
/// removed) on drop or restart.
pub struct Plugin {
    pub rt: tokio::runtime::Runtime,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Plugin {
    pub fn start(
        cfg: &DockerConfig,
        engine_cfg: &connector::config::Config,
        url: &str,
        token: &Path,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // A restarted daemon opens the engine afresh.
        let engine = Arc::new(Engine::open(engine_cfg.clone()).unwrap());
        let link = ApplianceLink::new(
            ApplianceAccess {
                url: url.to_string(),
                ca: None,
                token_file: Some(token.to_path_buf()),
            },
            Arc::new(|| Some(HOST.to_string())),
        );
        let driver = Arc::new(Driver::open(cfg, engine, link).unwrap());
        let server = {
            let _in_rt = rt.enter();
            PluginServer::bind(&cfg.socket_path(), driver).unwrap()
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = rt.spawn(server.run(
            async {
                let _ = rx.await;
            },
            Duration::from_secs(30),
        ));
        Plugin {
            rt,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// goldmountd (the real binary) serving the plugin from a config file.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, socket: &Path, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(goldmountd_bin())
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("GOLDMOUNT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut me = Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(socket).is_err() {
            if let Some(st) = me.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("goldmountd exited ({st}):\n{}", me.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "goldmountd's plugin socket not there in 30 s:\n{}",
                me.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd stops it; waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("goldmountd did not stop in 30 s:\n{}", self.log_text());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("goldmountd log:\n{}", self.log_text());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private dockerd (DOCKER.md's recipe); torn down on drop, on every path.
pub struct Dockerd {
    pub dir: PathBuf,
    pub host: String,
    pub cgroup: String,
    pub child: Option<Child>,
}

impl Dockerd {
    pub fn start(dir: &Path, cgroup: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("daemon.json"),
            format!("{{\"deprecated-key-path\":\"{}/key.json\"}}", dir.display()),
        )
        .unwrap();
        let host = format!("unix://{}/docker.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let d = |s: &str| format!("{}/{s}", dir.display());
        let child = Command::new("dockerd")
            .args([
                "--config-file",
                &d("daemon.json"),
                "--host",
                &host,
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
                &format!("/{cgroup}"),
                "--shutdown-timeout",
                "2",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut me = Dockerd {
            dir: dir.to_path_buf(),
            host,
            cgroup: cgroup.to_string(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if me.docker(&["version"]).status.success() {
                break;
            }
            if let Some(st) = me.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited ({st}):\n{}", me.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready in 30 s:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me.import_busybox();
        me
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .unwrap()
    }

    /// Runs `docker ARGS`, panicking with its stderr unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `docker ARGS`, which must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn import_busybox(&self) {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for l in ["sh", "sleep", "cat", "echo", "ls", "test", "mkdir"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
        }
        let mut tar = Command::new("tar")
            .args(["-C", root.to_str().unwrap(), "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Command::new("docker")
            .args(["import", "-c", "ENV PATH=/bin", "-", IMAGE])
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

    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for base in [PathBuf::from("/sys/fs/cgroup")].into_iter().chain(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        ) {
            let p = base.join(&self.cgroup);
            if p.is_dir() {
                out.push(p);
            }
        }
        out
    }

    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let ids = String::from_utf8_lossy(&self.docker(&["ps", "-aq"]).stdout).into_owned();
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever survived (shims, containers) in the test's cgroups, deepest first.
        for cg in self.cgroup_dirs() {
            let mut dirs = vec![];
            let mut stack = vec![cg];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in &dirs {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.split_whitespace() {
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            for d in &dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        let mut left = mounts_under(&self.dir);
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("dockerd log:\n{}", self.log());
        }
        self.stop();
        if self.cgroup_dirs().is_empty() && mounts_under(&self.dir).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes goldmountd's config (development certificates, the test's
/// engine paths, the appliance, `[docker]`, then `extra` — more tables,
/// such as `[profiles.NAME]`), registers through it and starts it; waits
/// until registration has named this host. The control API is also on the
/// Unix socket [`control_socket`]`(dir)`.
pub fn start_daemon(
    dir: &Path,
    cfg: &DockerConfig,
    engine: &connector::config::Config,
    appl: &ApplianceProc,
    extra: &str,
) -> Daemon {
    let tls = dir.join("tls");
    let out = Command::new(goldmountd_bin())
        .args(["dev-pki", tls.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = |f: &str| tls.join(f).display().to_string();
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nshutdown_grace_secs = 20\nunix_socket = \"{}\"\n\
         [engine]\nvolumes_root = \"{}\"\nstate_path = \"{}\"\nrun_dir = \"{}\"\n\
         [appliance]\nurl = \"{}\"\ntoken_file = \"{}\"\n\
         [docker]\nname = \"{}\"\nmounts_root = \"{}\"\nlun_wait_secs = {}\n{extra}",
        t("server.pem"),
        t("server-key.pem"),
        t("ca.pem"),
        control_socket(dir).display(),
        engine.volumes_root.display(),
        engine.state_path.display(),
        engine.run_dir.display(),
        appl.url,
        appl.token.display(),
        cfg.name,
        cfg.mounts_root().display(),
        cfg.lun_wait_secs,
    );
    let path = dir.join("goldmountd.toml");
    std::fs::write(&path, text).unwrap();
    let d = Daemon::start(&path, &cfg.socket_path(), &dir.join("goldmountd.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !appl
        .client()
        .list_hosts()
        .unwrap()
        .iter()
        .any(|h| h.name != HOST)
    {
        assert!(
            Instant::now() < deadline,
            "goldmountd did not register in 30 s:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

/// goldmountd's control API on its Unix socket (root only, no TLS).
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Everything one test needs.
pub struct Bed {
    pub dir: PathBuf,
    pub cfg: DockerConfig,
    pub engine_cfg: connector::config::Config,
    pub plugin: Option<Plugin>,
    pub daemon: Option<Daemon>,
    pub docker: Dockerd,
    pub appl: ApplianceProc,
}

impl Bed {
    pub fn new(lun_wait_secs: u64) -> Self {
        Self::build(lun_wait_secs, false, "")
    }

    /// The plugin served by goldmountd, this host named by registration.
    pub fn with_daemon() -> Self {
        Self::build(60, true, "")
    }

    /// The plugin served by goldmountd with `extra` appended to its config.
    pub fn with_daemon_config(extra: &str) -> Self {
        Self::build(60, true, extra)
    }

    pub fn build(lun_wait_secs: u64, daemon: bool, extra: &str) -> Self {
        prerequisites();
        // Missing or stale binaries fail before anything is made.
        appliance_bin();
        if daemon {
            goldmountd_bin();
        }
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("gmdp{}x{n}", std::process::id());
        let dir = PathBuf::from("/tmp").join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let gold_dir = dir.join("golds");
        std::fs::create_dir_all(&gold_dir).unwrap();
        let disk = golddisk::build(&gold_dir, "gold.img").unwrap();
        let appl = ApplianceProc::start(&dir, &disk, HOST, GOLD);
        let engine_cfg = connector::config::Config {
            volumes_root: dir.join("volumes"),
            state_path: dir.join("state/state.redb"),
            run_dir: dir.join("run"),
        };
        let cfg = DockerConfig {
            name: tag.clone(),
            mounts_root: Some(dir.join("mnt")),
            host: (!daemon).then(|| HOST.into()),
            lun_wait_secs,
            ..DockerConfig::default()
        };
        cfg.check().unwrap();
        let (plugin, daemon) = if daemon {
            (
                None,
                Some(start_daemon(&dir, &cfg, &engine_cfg, &appl, extra)),
            )
        } else {
            (
                Some(Plugin::start(&cfg, &engine_cfg, &appl.url, &appl.token)),
                None,
            )
        };
        let docker = Dockerd::start(&dir.join("d"), &tag);
        eprintln!("[{tag}] bed ready in {:.1} s", t0.elapsed().as_secs_f64());
        Bed {
            dir,
            cfg,
            engine_cfg,
            plugin,
            daemon,
            docker,
            appl,
        }
    }

    pub fn driver(&self) -> &str {
        &self.cfg.name
    }

    pub fn create(&self, name: &str, opts: &[&str]) -> Output {
        let mut args = vec!["volume", "create", "-d", self.driver()];
        for o in opts {
            args.extend(["-o", o]);
        }
        args.push(name);
        self.docker.docker(&args)
    }

    pub fn mountpoint(&self, base: &str) -> PathBuf {
        self.cfg.mounts_root().join(base)
    }

    pub fn restart_daemon(&mut self) {
        let mut d = self.daemon.take().unwrap();
        d.stop();
        assert!(
            !self.cfg.socket_path().exists(),
            "goldmountd left its plugin socket"
        );
        self.daemon = Some(Daemon::start(
            &self.dir.join("goldmountd.toml"),
            &self.cfg.socket_path(),
            &d.log,
        ));
    }

    pub fn restart_plugin(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop();
        }
        self.plugin = Some(Plugin::start(
            &self.cfg,
            &self.engine_cfg,
            &self.appl.url,
            &self.appl.token,
        ));
    }

    /// A raw plugin request on its socket: (status, body).
    pub fn plugin_call(&self, endpoint: &str, body: &str) -> (u16, serde_json::Value) {
        let mut s = UnixStream::connect(self.cfg.socket_path()).unwrap();
        // One write: `write!` on the stream makes one write per piece, and a
        // handler that ignores the body (Capabilities) may answer and close
        // before the last piece (CI saw EPIPE). A request the server
        // answered before reading all of it is still read back.
        let req = format!(
            "POST /{endpoint} HTTP/1.1\r\nHost: \r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = s.write_all(req.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let json = text.split("\r\n\r\n").nth(1).unwrap();
        (status, serde_json::from_str(json).unwrap())
    }

    /// A request to goldmountd's control API on its Unix socket:
    /// (status, JSON body).
    pub fn control_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut s = UnixStream::connect(control_socket(&self.dir)).unwrap();
        let body = body.unwrap_or("");
        // One write (see plugin_call).
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = s.write_all(req.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let json = text.split("\r\n\r\n").nth(1).unwrap();
        (status, serde_json::from_str(json).unwrap())
    }

    /// The engine's record of volume `base` of this driver.
    pub fn engine_volume(&self, base: &str) -> connector::engine::VolumeStatus {
        let name = VolumeName::parse(&format!("{}-{base}", self.driver())).unwrap();
        Engine::open(self.engine_cfg.clone())
            .unwrap()
            .get(&name)
            .unwrap()
    }

    pub fn engine_volumes(&self) -> Vec<String> {
        Engine::open(self.engine_cfg.clone())
            .unwrap()
            .list()
            .unwrap()
            .into_iter()
            .map(|v| v.volume)
            .collect()
    }

    pub fn docker_volumes(&self) -> Vec<String> {
        self.docker
            .ok(&[
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("driver={}", self.driver()),
            ])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Nothing of the host's: no mount under the test's directories, no
    /// engine volume.
    pub fn assert_host_clean(&self) {
        assert_eq!(mounts_under(&self.cfg.mounts_root()), Vec::<String>::new());
        assert_eq!(
            mounts_under(&self.engine_cfg.volumes_root),
            Vec::<String>::new()
        );
        assert_eq!(self.engine_volumes(), Vec::<String>::new());
    }

    /// Host and appliance clean, Docker lists no volume of the driver.
    pub fn assert_all_clean(&self) {
        self.assert_host_clean();
        self.appl.assert_clean();
        assert_eq!(self.docker_volumes(), Vec::<String>::new());
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.docker.stop();
        if let Some(mut p) = self.plugin.take() {
            p.stop();
        }
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
        // Whatever a failed test left mounted goes, then the directory.
        if let Ok(e) = Engine::open(self.engine_cfg.clone()) {
            for v in e.list().unwrap_or_default() {
                if let Ok(n) = VolumeName::parse(&v.volume) {
                    let _ = e.unmount(&n, true);
                }
            }
        }
        let _ = std::fs::remove_file(self.cfg.socket_path());
        self.appl.stop();
        if mounts_under(&self.dir).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("left mounted: {:?}", mounts_under(&self.dir));
        }
    }
}

pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("{what}: {:.2} s", t0.elapsed().as_secs_f64());
    r
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
