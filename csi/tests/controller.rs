//! The Controller service against the real reference appliance (its
//! binary, loop backend), and the whole CSI lifecycle through the Controller
//! and Node services together, as Kubernetes drives them: CreateVolume →
//! ControllerPublishVolume → NodeStageVolume → NodePublishVolume →
//! NodeUnpublishVolume → NodeUnstageVolume → ControllerUnpublishVolume →
//! DeleteVolume, every call repeated. Test names follow the CSI sanity
//! suite's behaviours. Needs root: loop devices, mounts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::code;

use std::collections::HashMap;
use std::path::Path;

use common::{mounts_under, rw_cap, ControllerProc, Driver, NODE_ID};
use goldmount_csi::proto::{
    controller_service_capability, volume_capability, volume_content_source, CapacityRange,
    ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest,
    ListSnapshotsRequest, ListVolumesRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest,
    ValidateVolumeCapabilitiesRequest, VolumeCapability, VolumeContentSource,
};
use goldmount_tests::appliance_proc::{loops_backed_under, ApplianceProc};
use goldmount_tests::golddisk;
use tonic::Code;

const GOLD: &str = "pg-gold";

/// An appliance with the sample gold registered for this node, the node
/// plugin and the controller.
struct Bed {
    appl: ApplianceProc,
    node: Driver,
    ctrl: ControllerProc,
}

impl Bed {
    async fn start() -> Self {
        let node = Driver::start().await;
        let golds = node.path("golds");
        std::fs::create_dir_all(&golds).unwrap();
        let disk = golddisk::build(&golds, "gold.img").unwrap();
        let appl = ApplianceProc::start(node.dir.path(), &disk, NODE_ID, GOLD);
        let ctrl = ControllerProc::start(node.dir.path(), &appl.url, &appl.token).await;
        Self { appl, node, ctrl }
    }

    /// Nothing of any volume is left: no mount under the test's dir, no
    /// loop device of a clone, no engine record, no presentation or clone.
    fn assert_clean(&self) {
        assert_eq!(mounts_under(self.node.dir.path()), Vec::<String>::new());
        assert_eq!(loops_backed_under(&self.appl.data), Vec::<String>::new());
        assert_eq!(
            self.node
                .engine
                .list()
                .unwrap()
                .into_iter()
                .map(|v| v.volume)
                .collect::<Vec<_>>(),
            Vec::<String>::new()
        );
        self.appl.assert_clean();
    }

    async fn stop(self) {
        self.ctrl.stop().await;
        self.node.stop().await;
        drop(self.appl);
    }
}

fn create_req(name: &str, params: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![rw_cap().unwrap()],
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn cpub_req(volume: &str, node: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        volume_capability: rw_cap(),
        ..Default::default()
    }
}

fn cunpub_req(volume: &str, node: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    }
}

fn stage_req(
    volume: &str,
    staging: &Path,
    publish_context: HashMap<String, String>,
    volume_context: HashMap<String, String>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: volume.into(),
        publish_context,
        staging_target_path: staging.display().to_string(),
        volume_capability: rw_cap(),
        volume_context,
        ..Default::default()
    }
}

fn publish_req(
    volume: &str,
    staging: &Path,
    target: &Path,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: rw_cap(),
        readonly,
        ..Default::default()
    }
}

/// NodeUnpublish at each target, NodeUnstage, ControllerUnpublish and
/// DeleteVolume, each call `times` times.
async fn tear_down(
    ctrl: &mut goldmount_csi::proto::controller_client::ControllerClient<tonic::transport::Channel>,
    node: &mut goldmount_csi::proto::node_client::NodeClient<tonic::transport::Channel>,
    vol: &str,
    staging: &Path,
    targets: &[&Path],
    times: usize,
) {
    for _ in 0..times {
        for t in targets {
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: t.display().to_string(),
            })
            .await
            .unwrap();
        }
    }
    for _ in 0..times {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .unwrap();
    }
    for _ in 0..times {
        ctrl.controller_unpublish_volume(cunpub_req(vol, NODE_ID))
            .await
            .unwrap();
    }
    for _ in 0..times {
        ctrl.delete_volume(DeleteVolumeRequest {
            volume_id: vol.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_lifecycle_should_work_with_every_call_repeated_and_leave_nothing_behind() {
    let bed = Bed::start().await;
    let mut ctrl = bed.ctrl.client().await;
    let mut node = bed.node.node().await;
    let gold_size = std::fs::metadata(bed.node.path("golds/gold.img"))
        .unwrap()
        .len() as i64;

    // CreateVolume, twice: the same volume.
    let req = create_req(
        "pvc-0001",
        &[("gold", GOLD), ("csi.storage.k8s.io/pvc/name", "data")],
    );
    let v1 = ctrl
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let v2 = ctrl
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v1, v2);
    assert_eq!(v1.volume_id, "csi-pvc-0001");
    assert_eq!(v1.capacity_bytes, gold_size);
    assert_eq!(
        v1.volume_context.get("gold").map(String::as_str),
        Some(GOLD)
    );
    assert_eq!(
        v1.volume_context.get("readOnly").map(String::as_str),
        Some("false")
    );
    let vol = v1.volume_id.clone();

    // ControllerPublishVolume, twice: the same presentation.
    let p1 = ctrl
        .controller_publish_volume(cpub_req(&vol, NODE_ID))
        .await
        .unwrap()
        .into_inner();
    let p2 = ctrl
        .controller_publish_volume(cpub_req(&vol, NODE_ID))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.publish_context, p2.publish_context);
    assert_eq!(
        p1.publish_context.get("transport").map(String::as_str),
        Some("loop")
    );
    let ctx = p1.publish_context;

    // NodeStageVolume, twice.
    let staging = bed.node.path("kubelet/plugins/globalmount/csi-pvc-0001");
    for _ in 0..2 {
        node.node_stage_volume(stage_req(
            &vol,
            &staging,
            ctx.clone(),
            v1.volume_context.clone(),
        ))
        .await
        .unwrap();
    }
    // NodePublishVolume read-write and read-only, each twice.
    let rw = bed.node.path("kubelet/pods/a/volumes/mount");
    let ro = bed.node.path("kubelet/pods/b/volumes/mount");
    for _ in 0..2 {
        node.node_publish_volume(publish_req(&vol, &staging, &rw, false))
            .await
            .unwrap();
        node.node_publish_volume(publish_req(&vol, &staging, &ro, true))
            .await
            .unwrap();
    }
    // The gold's files under the assembled tree, through the target path.
    for (rel, content) in golddisk::FILES {
        assert_eq!(
            std::fs::read_to_string(rw.join(rel)).unwrap(),
            *content,
            "{rel}"
        );
    }
    std::fs::write(rw.join("srv/data/from-the-pod"), "written by the pod\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(ro.join("srv/data/from-the-pod")).unwrap(),
        "written by the pod\n"
    );
    let e = std::fs::write(ro.join("srv/data/no"), "no").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(30),
        "EROFS on the read-only target: {e}"
    );

    // NodeGetVolumeStats: the sums over the tree's filesystems.
    let stats = node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: vol.clone(),
            volume_path: rw.display().to_string(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let cond = stats.volume_condition.unwrap();
    assert!(!cond.abnormal, "{cond:?}");
    assert!(cond.message.starts_with("3 filesystem(s)"), "{cond:?}");
    assert_eq!(stats.usage.len(), 2);
    assert!(
        stats.usage[0].total > 0 && stats.usage[0].used > 0,
        "{:?}",
        stats.usage
    );
    assert!(stats.usage[0].total <= gold_size, "{:?}", stats.usage);
    assert_eq!(
        code(
            node.node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: vol.clone(),
                volume_path: bed.node.path("elsewhere").display().to_string(),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );

    // ListVolumes: the volume and its node.
    let l = ctrl
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.entries[0].volume.as_ref().unwrap().volume_id, vol);
    assert_eq!(
        l.entries[0].status.as_ref().unwrap().published_node_ids,
        vec![NODE_ID.to_string()]
    );

    // Deleting a published volume is refused and changes nothing.
    assert_eq!(
        code(
            ctrl.delete_volume(DeleteVolumeRequest {
                volume_id: vol.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::FailedPrecondition
    );
    assert!(rw.join("etc/hostname").exists());

    // Down again, every call twice.
    tear_down(&mut ctrl, &mut node, &vol, &staging, &[&rw, &ro], 2).await;
    assert!(!rw.exists() && !ro.exists(), "the target paths are removed");
    bed.assert_clean();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_volumes_from_one_gold_should_stage_side_by_side_with_writes_isolated() {
    let bed = Bed::start().await;
    let mut ctrl = bed.ctrl.client().await;
    let mut node = bed.node.node().await;
    let mut up = vec![];
    for name in ["pvc-a", "pvc-b"] {
        let v = ctrl
            .create_volume(create_req(name, &[("gold", GOLD)]))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let ctx = ctrl
            .controller_publish_volume(cpub_req(&v.volume_id, NODE_ID))
            .await
            .unwrap()
            .into_inner()
            .publish_context;
        let staging = bed.node.path(&format!("stage/{}", v.volume_id));
        let target = bed.node.path(&format!("pods/{name}/mount"));
        node.node_stage_volume(stage_req(
            &v.volume_id,
            &staging,
            ctx,
            v.volume_context.clone(),
        ))
        .await
        .unwrap();
        node.node_publish_volume(publish_req(&v.volume_id, &staging, &target, false))
            .await
            .unwrap();
        up.push((v.volume_id, staging, target));
    }
    // Both trees up at once, each its own clone: a write to one is not in
    // the other, and the gold's own file is unchanged in both.
    std::fs::write(up[0].2.join("srv/data/records.csv"), "changed in a\n").unwrap();
    std::fs::write(up[1].2.join("etc/only-in-b"), "b\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(up[1].2.join("srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );
    assert!(!up[0].2.join("etc/only-in-b").exists());
    assert_eq!(
        std::fs::read_to_string(up[0].2.join("srv/data/records.csv")).unwrap(),
        "changed in a\n"
    );
    for (vol, staging, target) in &up {
        tear_down(&mut ctrl, &mut node, vol, staging, &[target], 1).await;
    }
    bed.assert_clean();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_calls_should_fail_with_the_spec_codes_and_change_nothing() {
    let bed = Bed::start().await;
    let mut ctrl = bed.ctrl.client().await;
    let mut id = bed.ctrl.identity().await;
    assert_eq!(
        id.probe(ProbeRequest {}).await.unwrap().into_inner().ready,
        Some(true)
    );
    let caps = ctrl
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let rpcs: Vec<i32> = caps
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    use controller_service_capability::rpc::Type;
    for t in [
        Type::CreateDeleteVolume,
        Type::PublishUnpublishVolume,
        Type::ListVolumes,
        Type::ListSnapshots,
    ] {
        assert!(rpcs.contains(&(t as i32)), "{t:?} in {rpcs:?}");
    }

    // CreateVolume: missing name, capabilities, gold; unknown key; block.
    let mut r = create_req("", &[("gold", GOLD)]);
    assert_eq!(
        code(ctrl.create_volume(r.clone()).await),
        Code::InvalidArgument
    );
    r.name = "pvc-e".into();
    r.volume_capabilities.clear();
    assert_eq!(code(ctrl.create_volume(r).await), Code::InvalidArgument);
    assert_eq!(
        code(ctrl.create_volume(create_req("pvc-e", &[])).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.create_volume(create_req("pvc-e", &[("gold", GOLD), ("glod", "x")]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.create_volume(create_req("pvc-e", &[("gold", "no-such-gold")]))
                .await
        ),
        Code::InvalidArgument
    );
    let mut block = create_req("pvc-e", &[("gold", GOLD)]);
    block.volume_capabilities = vec![VolumeCapability {
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(volume_capability::AccessType::Block(
            volume_capability::BlockVolume {},
        )),
    }];
    assert_eq!(code(ctrl.create_volume(block).await), Code::InvalidArgument);
    // A capacity the gold cannot meet.
    let mut big = create_req("pvc-e", &[("gold", GOLD)]);
    big.capacity_range = Some(CapacityRange {
        required_bytes: i64::MAX / 2,
        limit_bytes: 0,
    });
    assert_eq!(code(ctrl.create_volume(big).await), Code::OutOfRange);
    // A snapshot source that does not exist; a volume source (no cloning).
    let mut snap = create_req("pvc-e", &[]);
    snap.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "no-such-gold".into(),
            },
        )),
    });
    assert_eq!(code(ctrl.create_volume(snap).await), Code::NotFound);
    let mut from_vol = create_req("pvc-e", &[("gold", GOLD)]);
    from_vol.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "csi-x".into(),
            },
        )),
    });
    assert_eq!(
        code(ctrl.create_volume(from_vol).await),
        Code::InvalidArgument
    );
    assert!(
        bed.appl.client().list_clones().unwrap().is_empty(),
        "no refused request made a clone"
    );

    // The same name with other parameters: ALREADY_EXISTS.
    let v = ctrl
        .create_volume(create_req("pvc-e", &[("gold", GOLD)]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        code(
            ctrl.create_volume(create_req("pvc-e", &[("gold", GOLD), ("profile", "fast")]))
                .await
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code(
            ctrl.create_volume(create_req(
                "pvc-e",
                &[("gold", GOLD), ("pointInTime", "yesterday")]
            ))
            .await
        ),
        Code::AlreadyExists
    );
    // A gold copy as a snapshot dataSource gives a volume too.
    let snaps = ctrl
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(snaps.len(), 1);
    let s = snaps[0].snapshot.as_ref().unwrap();
    assert!(s.ready_to_use && s.snapshot_id == GOLD && s.size_bytes > 0);
    let mut from_snap = create_req("pvc-s", &[]);
    from_snap.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: GOLD.into(),
            },
        )),
    });
    let vs = ctrl
        .create_volume(from_snap)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(vs.content_source.is_some());
    assert_eq!(
        vs.volume_context.get("gold").map(String::as_str),
        Some(GOLD)
    );

    // DeleteVolume: missing id; unknown id and a clone not made by the
    // driver answer OK and delete nothing.
    assert_eq!(
        code(ctrl.delete_volume(DeleteVolumeRequest::default()).await),
        Code::InvalidArgument
    );
    ctrl.delete_volume(DeleteVolumeRequest {
        volume_id: "csi-no-such".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    bed.appl
        .client()
        .create_clone(&appliance::model::CreateClone {
            name: "docker-pg1".into(),
            gold: GOLD.into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
    ctrl.delete_volume(DeleteVolumeRequest {
        volume_id: "docker-pg1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        bed.appl.client().get_clone("docker-pg1").is_ok(),
        "a clone the driver did not make stays"
    );

    // ControllerPublishVolume: missing fields, unknown volume, unknown node,
    // published elsewhere.
    assert_eq!(
        code(ctrl.controller_publish_volume(cpub_req("", NODE_ID)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.controller_publish_volume(cpub_req(&v.volume_id, ""))
                .await
        ),
        Code::InvalidArgument
    );
    let mut nocap = cpub_req(&v.volume_id, NODE_ID);
    nocap.volume_capability = None;
    assert_eq!(
        code(ctrl.controller_publish_volume(nocap).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.controller_publish_volume(cpub_req("csi-no-such", NODE_ID))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            ctrl.controller_publish_volume(cpub_req(&v.volume_id, "no-such-node"))
                .await
        ),
        Code::NotFound
    );
    ctrl.controller_publish_volume(cpub_req(&v.volume_id, NODE_ID))
        .await
        .unwrap();
    assert_eq!(
        code(
            ctrl.controller_publish_volume(cpub_req(&v.volume_id, "other-node"))
                .await
        ),
        Code::FailedPrecondition
    );
    // ControllerUnpublishVolume: missing id; unknown volume, another node: OK.
    assert_eq!(
        code(
            ctrl.controller_unpublish_volume(cunpub_req("", NODE_ID))
                .await
        ),
        Code::InvalidArgument
    );
    ctrl.controller_unpublish_volume(cunpub_req("csi-no-such", NODE_ID))
        .await
        .unwrap();
    ctrl.controller_unpublish_volume(cunpub_req(&v.volume_id, "other-node"))
        .await
        .unwrap();
    assert_eq!(
        bed.appl.client().list_presentations().unwrap().len(),
        1,
        "still presented to {NODE_ID}"
    );
    ctrl.controller_unpublish_volume(cunpub_req(&v.volume_id, NODE_ID))
        .await
        .unwrap();

    // ValidateVolumeCapabilities.
    let val = |id: &str, caps: Vec<VolumeCapability>, params: &[(&str, &str)]| {
        ValidateVolumeCapabilitiesRequest {
            volume_id: id.into(),
            volume_capabilities: caps,
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    };
    assert_eq!(
        code(
            ctrl.validate_volume_capabilities(val("", vec![rw_cap().unwrap()], &[]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.validate_volume_capabilities(val(&v.volume_id, vec![], &[]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            ctrl.validate_volume_capabilities(val("csi-no-such", vec![rw_cap().unwrap()], &[]))
                .await
        ),
        Code::NotFound
    );
    let ok = ctrl
        .validate_volume_capabilities(val(
            &v.volume_id,
            vec![rw_cap().unwrap()],
            &[("gold", GOLD)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some(), "{ok:?}");
    let multi =
        common::mount_cap(volume_capability::access_mode::Mode::MultiNodeMultiWriter).unwrap();
    let no = ctrl
        .validate_volume_capabilities(val(&v.volume_id, vec![multi], &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none() && !no.message.is_empty(), "{no:?}");
    let other_gold = ctrl
        .validate_volume_capabilities(val(
            &v.volume_id,
            vec![rw_cap().unwrap()],
            &[("gold", "other")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other_gold.confirmed.is_none(), "{other_gold:?}");

    // ListVolumes: pages of one, only the driver's volumes; a foreign
    // token is ABORTED, a negative count INVALID_ARGUMENT.
    let mut seen = vec![];
    let mut token = String::new();
    loop {
        let page = ctrl
            .list_volumes(ListVolumesRequest {
                max_entries: 1,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 1);
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, vec!["csi-pvc-e".to_string(), "csi-pvc-s".to_string()]);
    assert_eq!(
        code(
            ctrl.list_volumes(ListVolumesRequest {
                max_entries: 1,
                starting_token: "invalid-token".into()
            })
            .await
        ),
        Code::Aborted
    );
    assert_eq!(
        code(
            ctrl.list_volumes(ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new()
            })
            .await
        ),
        Code::InvalidArgument
    );

    for id in [&v.volume_id, &vs.volume_id] {
        ctrl.delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    bed.appl.client().delete_clone("docker-pg1").unwrap();
    bed.assert_clean();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_should_fail_when_the_appliance_is_down_and_calls_answer_unavailable() {
    let mut bed = Bed::start().await;
    let mut ctrl = bed.ctrl.client().await;
    let mut id = bed.ctrl.identity().await;
    bed.appl.stop();
    let e = id.probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("cannot reach the appliance"), "{e:?}");
    assert_eq!(
        code(
            ctrl.create_volume(create_req("pvc-x", &[("gold", GOLD)]))
                .await
        ),
        Code::Unavailable
    );
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_volume_with_read_only_parameter_should_stage_every_filesystem_read_only() {
    let bed = Bed::start().await;
    let mut ctrl = bed.ctrl.client().await;
    let mut node = bed.node.node().await;
    let v = ctrl
        .create_volume(create_req(
            "pvc-ro",
            &[("gold", GOLD), ("readOnly", "true")],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.volume_context.get("readOnly").map(String::as_str),
        Some("true")
    );
    let ctx = ctrl
        .controller_publish_volume(cpub_req(&v.volume_id, NODE_ID))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let staging = bed.node.path("stage/ro");
    let target = bed.node.path("pods/ro/mount");
    node.node_stage_volume(stage_req(
        &v.volume_id,
        &staging,
        ctx,
        v.volume_context.clone(),
    ))
    .await
    .unwrap();
    // A read-write publish of a read-only volume is read-only too.
    node.node_publish_volume(publish_req(&v.volume_id, &staging, &target, false))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("etc/hostname")).unwrap(),
        "gold-host\n"
    );
    for rel in ["x", "boot/x", "srv/data/x"] {
        let e = std::fs::write(target.join(rel), "no").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{rel}: {e}");
    }
    tear_down(&mut ctrl, &mut node, &v.volume_id, &staging, &[&target], 1).await;
    bed.assert_clean();
    bed.stop().await;
}
