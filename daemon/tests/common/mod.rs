//! The real daemon on 127.0.0.1:0 with development certificates and an
//! engine over a tempdir, clients that present (or do not present) a
//! certificate, and cleanup of mounts and loop devices under the tempdir
//! that holds when a test fails half-way.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use connector::engine::Engine;
use goldmountd::config::Config;
use goldmountd::{Server, ShutdownReport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub pki: pki::DevPki,
    pub cfg: Config,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ShutdownReport>>,
}

/// A config over `dir` with the dev PKI in `dir/tls`.
pub fn config(dir: &Path, pki: &pki::DevPki) -> Config {
    let mut cfg = Config::default();
    cfg.control.listen = "127.0.0.1:0".parse().unwrap();
    cfg.control.cert = pki.server_cert.clone();
    cfg.control.key = pki.server_key.clone();
    cfg.control.client_ca = pki.ca_cert.clone();
    cfg.control.shutdown_grace_secs = 30;
    cfg.engine.volumes_root = dir.join("volumes");
    cfg.engine.state_path = dir.join("state/state.redb");
    cfg.engine.run_dir = dir.join("run");
    cfg
}

pub fn dev_pki(dir: &Path) -> pki::DevPki {
    pki::init_dev_pki(
        &dir.join("tls"),
        &pki::DevPkiOptions {
            hostname: Some("gm-test-host".into()),
            ..Default::default()
        },
    )
    .unwrap()
}

impl Daemon {
    /// Starts a daemon; `tweak` may change the config first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = dev_pki(dir.path());
        let mut cfg = config(dir.path(), &pki);
        tweak(&mut cfg);
        let engine = Arc::new(Engine::open(cfg.engine.clone()).unwrap());
        let server = Server::bind(&cfg, engine).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            dir,
            pki,
            cfg,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// A client presenting the appliance's certificate.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(Some((&self.pki.client_cert, &self.pki.client_key)))
    }

    /// A client presenting `identity` (none: no client certificate),
    /// trusting the dev CA for the server.
    pub fn client_with(&self, identity: Option<(&PathBuf, &PathBuf)>) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.pki.ca_cert).unwrap()).unwrap();
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60));
        if let Some((cert, key)) = identity {
            let mut pem = std::fs::read(cert).unwrap();
            pem.extend(std::fs::read(key).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    /// Stops accepting and waits for the graceful shutdown to end.
    pub async fn stop(&mut self) -> ShutdownReport {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    /// Signals shutdown without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for a shutdown signalled before.
    pub async fn stopped(&mut self) -> ShutdownReport {
        self.task.take().unwrap().await.unwrap()
    }

    /// A raw TLS exchange (one HTTP/1.1 GET) presenting `identity`: the
    /// response text, or the TLS/IO error that ended it.
    pub async fn raw_get(
        &self,
        identity: Option<(&PathBuf, &PathBuf)>,
        path: &str,
    ) -> Result<String, String> {
        raw_get(self.addr, &self.pki.ca_cert, identity, path).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        cleanup_under(self.dir.path());
    }
}

/// One GET over a tokio-rustls client connection.
pub async fn raw_get(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&PathBuf, &PathBuf)>,
    path: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = async {
        let mut s = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(20), io)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Lazily unmounts everything under `dir`, then detaches loop devices
/// backed by files under it (stacked ones first).
pub fn cleanup_under(dir: &Path) {
    for _ in 0..4 {
        let mut targets: Vec<PathBuf> = mounts_under(dir);
        if targets.is_empty() {
            break;
        }
        targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
        for t in targets {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&t)
                .stderr(Stdio::null())
                .status();
        }
    }
    let mut loops = loops_under(dir);
    loops.reverse();
    for l in loops {
        let _ = Command::new("losetup").arg("-d").arg(&l).status();
    }
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .nth(4)
                .map(|t| PathBuf::from(t.replace("\\040", " ")))
        })
        .filter(|t| t.starts_with(dir))
        .collect()
}

/// Loop devices backed by a file under `dir`, then those stacked on them.
pub fn loops_under(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                let b = b.trim_end().trim_end_matches(" (deleted)").to_string();
                all.push((PathBuf::from(format!("/dev/{name}")), PathBuf::from(b)));
            }
        }
    }
    let mut found: Vec<PathBuf> = all
        .iter()
        .filter(|(_, b)| b.starts_with(dir))
        .map(|(d, _)| d.clone())
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].clone();
        for (d, b) in &all {
            if *b == parent && !found.contains(d) {
                found.push(d.clone());
            }
        }
        i += 1;
    }
    found
}

/// A fresh ext4 image of `mib` MiB with one file in it.
pub fn ext4_image(path: &Path, mib: u64) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(mib * 1024 * 1024)
        .unwrap();
    let src = path.with_extension("content");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "from the clone\n").unwrap();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "gmtest", "-d"])
        .arg(&src)
        .arg(path)
        .output()
        .expect("mkfs.ext4 (e2fsprogs) is needed for this test");
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
