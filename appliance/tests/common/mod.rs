//! Shared test fixtures: real servers, real XFS loop mounts, real HTTP.
//! Anything missing (root, a tool) panics with what to install: no skips.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Panics unless running as root (loop devices and mounts need it).
pub fn require_root() {
    let uid = rustix::process::geteuid();
    assert!(
        uid.is_root(),
        "these tests need root (loop devices, mounts); run them as root"
    );
}

/// Panics with the Debian package name unless `tool` runs.
pub fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(ok, "{tool} is missing: apt-get install {package}");
}

/// Runs a command and panics with its stderr if it fails.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch directory under /tmp (ext4 here), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        Self::new_in(Path::new("/tmp"), tag)
    }
    pub fn new_in(parent: &Path, tag: &str) -> Self {
        let p = parent.join(format!(
            "gm-appl-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_u32() as u128
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u32() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_ne_bytes(b)
}

/// An XFS file system made with `-m reflink=1` on a loop device, mounted on
/// a scratch directory; unmounted and detached on drop, even after a panic.
pub struct XfsMount {
    pub dir: PathBuf,
    image: PathBuf,
    device: Option<String>,
    mounted: bool,
}

impl XfsMount {
    pub fn new(size_gib: u64) -> Self {
        require_root();
        require_tool("mkfs.xfs", "xfsprogs");
        require_tool("losetup", "mount");
        let base =
            std::env::temp_dir().join(format!("gm-appl-xfs-{}-{}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(&base).unwrap();
        let image = base.join("fs.img");
        let dir = base.join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = XfsMount {
            dir,
            image,
            device: None,
            mounted: false,
        };
        std::fs::File::create(&m.image)
            .unwrap()
            .set_len(size_gib << 30)
            .unwrap();
        run(
            "mkfs.xfs",
            &["-q", "-m", "reflink=1", m.image.to_str().unwrap()],
        );
        let dev = run("losetup", &["--find", "--show", m.image.to_str().unwrap()]);
        m.device = Some(dev.trim().to_string());
        run("mount", &[dev.trim(), m.dir.to_str().unwrap()]);
        m.mounted = true;
        m
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
        if let Some(d) = &self.device {
            let _ = Command::new("losetup").args(["-d", d]).status();
        }
        if let Some(base) = self.image.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// A running `goldmount-appliance serve` on a free loopback port; killed on
/// drop. It imports from the data directory's parent (`--import-from`) and
/// generates its API token into the data directory; [`Server::token`].
pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    backend: String,
    extra: Vec<String>,
    child: Option<Child>,
    pub log: PathBuf,
    pub token: String,
    /// Set for an HTTPS server: the CA its certificate chains to.
    ca: Option<PathBuf>,
    agent: ureq::Agent,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start(data_dir: &Path, backend: &str) -> Self {
        Self::start_with(data_dir, backend, &[])
    }

    /// Like [`Server::start`] with extra `serve` arguments.
    pub fn start_with(data_dir: &Path, backend: &str, extra: &[&str]) -> Self {
        let mut s = Server {
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            backend: backend.to_string(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            log: data_dir.with_extension("log"),
            token: String::new(),
            ca: None,
            agent: ureq::Agent::new(),
        };
        s.spawn();
        s
    }

    /// Like [`Server::start_with`], serving HTTPS; `ca` verifies it.
    pub fn start_tls(data_dir: &Path, backend: &str, extra: &[&str], ca: &Path) -> Self {
        let roots = appliance::tls::certs_from_file("ca", ca).unwrap();
        let cfg = appliance::tls::client_config(roots, None, "ca").unwrap();
        let mut s = Server {
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            backend: backend.to_string(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            log: data_dir.with_extension("log"),
            token: String::new(),
            ca: Some(ca.to_path_buf()),
            agent: ureq::AgentBuilder::new()
                .tls_connector(std::sync::Arc::new(appliance::tls::UreqTls(cfg)))
                .build(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port = free_port();
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        self.url = format!("{scheme}://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_goldmount-appliance"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                self.data_dir.to_str().unwrap(),
                "--backend",
                &self.backend,
                "--import-from",
                self.data_dir.parent().unwrap().to_str().unwrap(),
            ])
            .args(&self.extra)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.agent.get(&format!("{}/healthz", self.url)).call() {
                assert_eq!(r.status(), 200);
                self.token = std::fs::read_to_string(self.token_file())
                    .unwrap()
                    .trim()
                    .to_string();
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({st}); log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in 20 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the server's API token is: `--token-file`, else generated
    /// into the data directory.
    pub fn token_file(&self) -> PathBuf {
        match self.extra.iter().position(|a| a == "--token-file") {
            Some(i) => PathBuf::from(&self.extra[i + 1]),
            None => self.data_dir.join("api-token"),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash, not a clean stop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn client(&self) -> appliance::client::Client {
        let c = appliance::client::Client::new(&self.url).with_token(&self.token);
        match &self.ca {
            Some(ca) => c.with_ca_file(ca).unwrap(),
            None => c,
        }
    }

    /// Raw request with the right token: status and JSON body (Null for an
    /// empty body).
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        self.req_auth(method, path, body, Some(&auth))
    }

    /// Raw request with `authorization` as the Authorization header (none
    /// when `None`).
    pub fn req_auth(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        authorization: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .agent
            .request(method, &format!("{}{}", self.url, path))
            .set("Content-Type", "application/json");
        if let Some(a) = authorization {
            r = r.set("Authorization", a);
        }
        let res = match body {
            Some(b) => r.send_string(b),
            None => r.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        let v = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: non-JSON body {text:?}: {e}"))
        };
        (status, v)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Take presentations down so no loop device outlives the test.
        if self.child.is_some() {
            if let Ok(ps) = self.client().list_presentations() {
                for p in ps {
                    let _ = self.client().unpresent_forced(&p.clone);
                }
            }
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!("server log {}:\n{}", self.log.display(), self.log_text());
        }
    }
}

/// Writes a sparse image of `size` bytes with `marker` at a few offsets.
pub fn make_image(path: &Path, size: u64, marker: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for off in [0, size / 3, size - marker.len() as u64] {
        f.write_all_at(marker, off).unwrap();
    }
    f.sync_all().unwrap();
}
