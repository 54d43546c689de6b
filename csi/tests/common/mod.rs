//! Helpers of the CSI tests: a private engine (volumes root, state and run
//! dir in a tempdir), the driver served on a temporary Unix socket in this
//! process, tonic clients that send `:authority` `localhost` as kubelet
//! does, and the kernel's view of what is left (mounts, loop devices).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::config::Config;
use connector::engine::Engine;
use goldmount_csi::proto::{
    identity_client::IdentityClient, node_client::NodeClient, volume_capability, VolumeCapability,
};
use goldmount_csi::{bind_socket, serve, NodeConfig};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub const NODE_ID: &str = "node-under-test";

/// One driver over a private engine.
pub struct Driver {
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Driver {
    pub async fn start() -> Self {
        assert!(is_root(), "these tests need root (loop devices, mounts)");
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            volumes_root: dir.path().join("volumes"),
            state_path: dir.path().join("state.redb"),
            run_dir: dir.path().join("run"),
        };
        let engine = Arc::new(Engine::open(cfg).unwrap());
        let socket = dir.path().join("plugin/csi.sock");
        let listener = bind_socket(&socket).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let node = NodeConfig {
            node_id: NODE_ID.into(),
            max_volumes_per_node: 16,
        };
        let e = engine.clone();
        let server = tokio::spawn(async move {
            serve(listener, e, node, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            dir,
            engine,
            socket,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// A channel to the plugin, `:authority` `localhost` (what kubelet and
    /// the CSI sidecars send on a Unix socket).
    pub async fn channel(&self) -> Channel {
        channel_to(&self.socket).await
    }

    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel().await)
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Stops the server; whatever the engine still holds is torn down
    /// (forced) so a failed test leaves nothing mounted.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.force_clean();
    }

    fn force_clean(&self) {
        for v in self.engine.list().unwrap_or_default() {
            if let Ok(name) = connector::engine::VolumeName::parse(&v.volume) {
                let _ = self.engine.unmount(&name, true);
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.force_clean();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// A mount volume capability with `mode`.
pub fn mount_cap(mode: volume_capability::access_mode::Mode) -> Option<VolumeCapability> {
    Some(VolumeCapability {
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
    })
}

/// `SINGLE_NODE_WRITER`, mount.
pub fn rw_cap() -> Option<VolumeCapability> {
    mount_cap(volume_capability::access_mode::Mode::SingleNodeWriter)
}

/// A `publish_context` naming `image` as a device the engine attaches.
pub fn device_context(image: &Path) -> HashMap<String, String> {
    HashMap::from([("device".to_string(), image.display().to_string())])
}

/// The loop devices whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim()).starts_with(dir) {
                found.push(format!("{name} -> {}", b.trim()));
            }
        }
    }
    found
}

/// Mount points under `dir` (the kernel's view).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Runs `f`, prints how long it took under `label`.
pub async fn timed<T, F: std::future::Future<Output = T>>(label: &str, f: F) -> T {
    let t = Instant::now();
    let out = f.await;
    eprintln!("{label}: {:?}", t.elapsed());
    out
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The loop devices whose backing file is the block device `dev` (the
/// engine's partition loops over a presented whole-disk device).
pub fn loops_over(dev: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if b.trim() == dev {
                found.push(format!("{name} -> {}", b.trim()));
            }
        }
    }
    found
}

/// The controller service over an appliance, served on its own socket in
/// this process (the Deployment's container).
pub struct ControllerProc {
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl ControllerProc {
    pub async fn start(dir: &Path, url: &str, token_file: &Path) -> Self {
        let socket = dir.join("controller/csi.sock");
        let listener = bind_socket(&socket).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let access = goldmount_csi::ApplianceAccess {
            url: url.to_string(),
            ca: None,
            token_file: Some(token_file.to_path_buf()),
        };
        let server = tokio::spawn(async move {
            goldmount_csi::serve_controller(listener, access, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            socket,
            stop: Some(tx),
            server: Some(server),
        }
    }

    pub async fn client(
        &self,
    ) -> goldmount_csi::proto::controller_client::ControllerClient<Channel> {
        goldmount_csi::proto::controller_client::ControllerClient::new(
            channel_to(&self.socket).await,
        )
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(channel_to(&self.socket).await)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

/// A channel to a plugin's socket with `:authority` `localhost`, as kubelet
/// and the CSI sidecars send on a Unix socket.
pub async fn channel_to(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            UnixStream::connect(path.clone())
        }))
        .await
        .unwrap()
}

/// goldmount's config file for an engine under `dir`.
pub fn engine_config_file(dir: &Path) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nvolumes_root = \"{0}/volumes\"\nstate_path = \"{0}/state.redb\"\nrun_dir = \"{0}/run\"\n",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// The code of a refused call, which must say something.
pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => {
            assert!(!s.message().is_empty(), "{s:?} says nothing");
            s.code()
        }
    }
}
