//! Benchmark, not a test (ignored; run by hand, figures in BENCHMARKS.md):
//! `cargo test -p csi --release --test bench_lifecycle -- --ignored --nocapture`.
//!
//! 1. CreateVolume → ControllerPublishVolume → NodeStageVolume →
//!    NodePublishVolume, each stage timed, over the reference appliance's
//!    loop backend and the sample gold disk (GPT, XFS root with an fstab,
//!    two ext4), `ROUNDS` times; medians printed.
//! 2. 8 volumes of one gold taken through the same calls at once on one
//!    node, against 1 volume alone: all must succeed; the ratio of the
//!    concurrent total to 8 × the single time says whether it is at most
//!    linear.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{rw_cap, ControllerProc, Driver, NODE_ID};
use goldmount_csi::proto::{
    controller_client::ControllerClient, node_client::NodeClient, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest,
};
use goldmount_tests::appliance_proc::ApplianceProc;
use goldmount_tests::golddisk;
use tonic::transport::Channel;

const GOLD: &str = "pg-gold";
const ROUNDS: usize = 5;
const CONCURRENT: usize = 8;

#[derive(Debug, Default, Clone)]
struct Stages {
    create: Duration,
    cpublish: Duration,
    stage: Duration,
    publish: Duration,
}

impl Stages {
    fn total(&self) -> Duration {
        self.create + self.cpublish + self.stage + self.publish
    }
}

async fn up(
    ctrl: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    dir: &Path,
    name: &str,
) -> (Stages, String) {
    let mut s = Stages::default();
    let t = Instant::now();
    let v = ctrl
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            volume_capabilities: vec![rw_cap().unwrap()],
            parameters: HashMap::from([("gold".to_string(), GOLD.to_string())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    s.create = t.elapsed();
    let id = v.volume_id;
    let t = Instant::now();
    let ctx = ctrl
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE_ID.into(),
            volume_capability: rw_cap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    s.cpublish = t.elapsed();
    let staging = dir.join(format!("stage/{id}"));
    let target = dir.join(format!("pods/{id}/mount"));
    let t = Instant::now();
    node.node_stage_volume(NodeStageVolumeRequest {
        volume_id: id.clone(),
        publish_context: ctx,
        staging_target_path: staging.display().to_string(),
        volume_capability: rw_cap(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.stage = t.elapsed();
    let t = Instant::now();
    node.node_publish_volume(NodePublishVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: rw_cap(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.publish = t.elapsed();
    assert!(target.join("etc/hostname").exists());
    (s, id)
}

async fn down(
    ctrl: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    dir: &Path,
    id: &str,
) {
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: dir.join(format!("pods/{id}/mount")).display().to_string(),
    })
    .await
    .unwrap();
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: dir.join(format!("stage/{id}")).display().to_string(),
    })
    .await
    .unwrap();
    ctrl.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
        volume_id: id.into(),
        node_id: NODE_ID.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    ctrl.delete_volume(DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
async fn bench_create_to_publish_per_stage_and_eight_concurrent() {
    let d = Driver::start().await;
    let golds = d.path("golds");
    std::fs::create_dir_all(&golds).unwrap();
    let disk = golddisk::build(&golds, "gold.img").unwrap();
    let appl = ApplianceProc::start(d.dir.path(), &disk, NODE_ID, GOLD);
    let c = ControllerProc::start(d.dir.path(), &appl.url, &appl.token).await;
    let mut ctrl = c.client().await;
    let mut node = d.node().await;

    let mut rounds = vec![];
    for i in 0..ROUNDS {
        let (s, id) = up(&mut ctrl, &mut node, d.dir.path(), &format!("pvc-seq-{i}")).await;
        down(&mut ctrl, &mut node, d.dir.path(), &id).await;
        rounds.push(s);
    }
    let med = |f: fn(&Stages) -> Duration| median(rounds.iter().map(f).collect());
    println!(
        "CreateVolume→NodePublish, median of {ROUNDS}: CreateVolume {}, ControllerPublish {}, NodeStage {}, NodePublish {}, total {}",
        ms(med(|s| s.create)),
        ms(med(|s| s.cpublish)),
        ms(med(|s| s.stage)),
        ms(med(|s| s.publish)),
        ms(med(Stages::total))
    );
    let single = med(Stages::total);

    let t = Instant::now();
    let mut tasks = vec![];
    for i in 0..CONCURRENT {
        let mut ctrl = c.client().await;
        let mut node = d.node().await;
        let name = format!("pvc-par-{i}");
        let dd = d.dir.path().to_path_buf();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let (_, id) = up(&mut ctrl, &mut node, &dd, &name).await;
            (id, t.elapsed())
        }));
    }
    let mut ids = vec![];
    let mut each = vec![];
    for t in tasks {
        let (id, e) = t.await.unwrap();
        ids.push(id);
        each.push(e);
    }
    let total = t.elapsed();
    println!(
        "{CONCURRENT} concurrent, all ready: total {}, per volume median {}, max {}; single alone {}; total / ({CONCURRENT} × single) = {:.2}",
        ms(total),
        ms(median(each.clone())),
        ms(each.iter().copied().max().unwrap_or_default()),
        ms(single),
        total.as_secs_f64() / (CONCURRENT as f64 * single.as_secs_f64())
    );
    for id in ids {
        down(&mut ctrl, &mut node, d.dir.path(), &id).await;
    }
    c.stop().await;
    d.stop().await;
    drop(appl);
}
