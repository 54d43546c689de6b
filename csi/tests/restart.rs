//! The node plugin across restarts: SIGKILLed in the middle of
//! NodeStageVolume and NodeUnstageVolume (the real binary), then started
//! again and the call retried; and reconciliation at start of CSI records
//! whose binds were taken away behind the plugin's back (kubelet cleaning
//! up an orphaned pod). Needs root: loop devices, mounts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{device_context, loops_under, mounts_under, rw_cap, Driver};
use connector::engine::Engine;
use goldmount_csi::proto::{
    node_client::NodeClient, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
};
use goldmount_tests::golddisk;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_goldmount-csi");

struct Plugin {
    child: Child,
    socket: PathBuf,
}

impl Plugin {
    async fn start(dir: &Path) -> Self {
        let cfg = common::engine_config_file(dir);
        let socket = dir.join("plugin/csi.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(BIN)
            .args(["node", "--socket"])
            .arg(&socket)
            .args(["--node-id", "n1", "--config"])
            .arg(&cfg)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut p = Plugin { child, socket };
        let t0 = Instant::now();
        while !p.socket.exists() {
            assert!(p.child.try_wait().unwrap().is_none(), "the plugin exited");
            assert!(t0.elapsed() < Duration::from_secs(30), "no socket in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p
    }

    async fn client(&self) -> NodeClient<Channel> {
        NodeClient::new(common::channel_to(&self.socket).await)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        assert!(self.child.wait().unwrap().success());
    }
}

fn stage_req(vol: &str, staging: &Path, image: &Path) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: vol.into(),
        publish_context: device_context(image),
        staging_target_path: staging.display().to_string(),
        volume_capability: rw_cap(),
        ..Default::default()
    }
}

fn unstage_req(vol: &str, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.display().to_string(),
    }
}

fn publish_req(vol: &str, staging: &Path, target: &Path) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: rw_cap(),
        ..Default::default()
    }
}

/// The engine's volumes, read with the plugin stopped.
fn engine_volumes(dir: &Path) -> Vec<String> {
    let engine = Engine::open(connector::config::Config {
        volumes_root: dir.join("volumes"),
        state_path: dir.join("state.redb"),
        run_dir: dir.join("run"),
    })
    .unwrap();
    engine
        .list()
        .unwrap()
        .into_iter()
        .map(|v| v.volume)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn node_plugin_killed_during_stage_and_unstage_should_finish_on_retry_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = golddisk::build(d, "clone.img").unwrap();
    let staging = d.join("kubelet/globalmount/pvc-k");
    let target = d.join("kubelet/pods/p/mount");
    let vol = "pvc-k";
    // Kill points spread over the stage (attach, probe, mount, bind) and
    // the unstage (unbind, unmount, detach).
    for delay_ms in [20u64, 120, 350, 900] {
        let p = Plugin::start(d).await;
        let mut c = p.client().await;
        let (s2, i2) = (staging.clone(), image.clone());
        let call = tokio::spawn(async move { c.node_stage_volume(stage_req(vol, &s2, &i2)).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        p.kill();
        let _ = call.await;
        let p = Plugin::start(d).await;
        let mut c = p.client().await;
        c.node_stage_volume(stage_req(vol, &staging, &image))
            .await
            .unwrap_or_else(|e| panic!("stage retried after a kill at {delay_ms} ms: {e:?}"));
        c.node_publish_volume(publish_req(vol, &staging, &target))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("etc/hostname")).unwrap(),
            "gold-host\n"
        );
        c.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: vol.into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
        let s2 = staging.clone();
        let call = tokio::spawn(async move { c.node_unstage_volume(unstage_req(vol, &s2)).await });
        tokio::time::sleep(Duration::from_millis(delay_ms / 2)).await;
        p.kill();
        let _ = call.await;
        let p = Plugin::start(d).await;
        let mut c = p.client().await;
        c.node_unstage_volume(unstage_req(vol, &staging))
            .await
            .unwrap_or_else(|e| {
                panic!("unstage retried after a kill at {} ms: {e:?}", delay_ms / 2)
            });
        p.stop();
        assert_eq!(
            mounts_under(d),
            Vec::<String>::new(),
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            loops_under(d),
            Vec::<String>::new(),
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            engine_volumes(d),
            Vec::<String>::new(),
            "kill at {delay_ms} ms"
        );
    }
}

fn umount_recursive(p: &Path) {
    let st = Command::new("umount").arg("-R").arg(p).status().unwrap();
    assert!(st.success(), "umount -R {}", p.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_should_take_down_volumes_whose_binds_are_gone_and_keep_live_ones() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    let mut vols = vec![];
    for v in ["pvc-gone", "pvc-live"] {
        let image = golddisk::build(d.dir.path(), &format!("{v}.img")).unwrap();
        let staging = d.path(&format!("globalmount/{v}"));
        let target = d.path(&format!("pods/{v}/mount"));
        node.node_stage_volume(stage_req(v, &staging, &image))
            .await
            .unwrap();
        node.node_publish_volume(publish_req(v, &staging, &target))
            .await
            .unwrap();
        vols.push((v, staging, target));
    }
    // Behind the plugin's back: pvc-gone loses both binds (its pod and its
    // staging path cleaned up), pvc-live only its pod's.
    umount_recursive(&vols[0].2);
    umount_recursive(&vols[0].1);
    umount_recursive(&vols[1].2);
    let r = goldmount_csi::reconcile::reconcile(&d.engine);
    assert_eq!(r.torn_down, vec!["pvc-gone".to_string()], "{r:?}");
    assert_eq!(r.left, vec![], "{r:?}");
    assert_eq!(r.dropped.len(), 3, "{r:?}");
    let live = d
        .engine
        .get(&connector::engine::VolumeName::parse("pvc-live").unwrap())
        .unwrap();
    assert_eq!(
        live.publications
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        vec!["csi-stage"]
    );
    assert!(
        vols[1].1.join("etc/hostname").exists(),
        "the live staging bind stays"
    );
    assert!(loops_under(&d.path("pvc-gone.img")).is_empty());
    // A second pass changes nothing; the live volume unstages normally.
    assert_eq!(
        goldmount_csi::reconcile::reconcile(&d.engine),
        goldmount_csi::reconcile::Reconciled::default()
    );
    node.node_unstage_volume(unstage_req("pvc-live", &vols[1].1))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    d.stop().await;
}
