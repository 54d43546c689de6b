//! The reference appliance as a process for integration tests: the real
//! `goldmount-appliance` binary with the loop backend, a registered host
//! and one imported gold copy; and the workspace-binary lookup, free-port
//! and loop-device helpers those tests share (the Docker plugin's and the
//! CSI driver's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use appliance::client::Client;
use appliance::model::{ImportGold, PutHost};

/// A workspace binary: `$ENV`, else `target/debug/NAME`, which must be
/// newer than the sources under `srcs` (relative to the workspace).
pub fn workspace_bin(name: &str, env: &str, package: &str, srcs: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join(name);
    let build = format!("build it first: cargo build -p {package} --bin {name} (cargo test --workspace builds it), or set {env}");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {build}", bin.display()));
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = srcs.iter().map(|s| ws.join(s)).collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                newest = newest.max(m.modified().unwrap());
            }
        }
    }
    assert!(
        built >= newest,
        "{} is older than its sources: {build}",
        bin.display()
    );
    bin
}

/// The appliance binary (`$GOLDMOUNT_APPLIANCE_BIN`, else target/debug).
pub fn appliance_bin() -> PathBuf {
    workspace_bin(
        "goldmount-appliance",
        "GOLDMOUNT_APPLIANCE_BIN",
        "appliance",
        &["appliance/src"],
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Loop devices whose backing file is under `dir`.
pub fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{n} -> {}", b.trim_end()));
            }
        }
    }
    out
}

/// The appliance binary (loop backend) with a registered host and the gold.
pub struct ApplianceProc {
    pub url: String,
    pub data: PathBuf,
    pub token: PathBuf,
    pub child: Option<Child>,
}

impl ApplianceProc {
    /// Starts the appliance (loop backend, data under `dir/appliance`,
    /// gold copies importable from `gold_disk`'s directory), names host
    /// `host` (IQN `iqn.2026-12.test:here`) and imports `gold_disk` as `gold`.
    pub fn start(dir: &Path, gold_disk: &Path, host: &str, gold: &str) -> Self {
        let data = dir.join("appliance");
        let port = free_port();
        let log = std::fs::File::create(dir.join("appliance.log")).unwrap();
        let child = Command::new(appliance_bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data.to_str().unwrap(),
                "--backend",
                "loop",
                "--import-from",
                gold_disk.parent().unwrap().to_str().unwrap(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut me = ApplianceProc {
            url: format!("http://127.0.0.1:{port}"),
            token: data.join("api-token"),
            data,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(me.token.exists() && me.client().list_golds().is_ok()) {
            if let Some(st) = me.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("appliance exited ({st})");
            }
            assert!(Instant::now() < deadline, "appliance not ready in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let c = me.client();
        c.put_host(
            host,
            &PutHost {
                name: None,
                iqns: vec!["iqn.2026-12.test:here".into()],
                wwpns: vec![],
                callback_url: None,
                callback_ca_pem: None,
            },
        )
        .unwrap();
        c.import_gold(&ImportGold {
            name: gold.into(),
            source: gold_disk.to_path_buf(),
            point_in_time: None,
        })
        .unwrap();
        me
    }

    pub fn client(&self) -> Client {
        let t = std::fs::read_to_string(&self.token).unwrap_or_default();
        Client::new(&self.url).with_token(t.trim())
    }

    /// No clone, presentation, clone image or loop device of a clone.
    pub fn assert_clean(&self) {
        let c = self.client();
        assert_eq!(c.list_presentations().unwrap(), vec![]);
        let clones: Vec<String> = c
            .list_clones()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(clones, Vec::<String>::new());
        let dir = self.data.join("clones");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(files.is_empty(), "clone images left: {files:?}");
        assert_eq!(loops_backed_under(&self.data), Vec::<String>::new());
    }
}

impl ApplianceProc {
    pub fn stop(&mut self) {
        if self.child.is_some() {
            if let Ok(ps) = self.client().list_presentations() {
                for p in ps {
                    let _ = self.client().unpresent_forced(&p.clone);
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ApplianceProc {
    fn drop(&mut self) {
        self.stop();
    }
}
