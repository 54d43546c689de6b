//! The Node and Identity services over a real engine, through the
//! generated tonic client on a temporary Unix socket. Test names follow
//! the behaviours of the CSI sanity suite (csi-test's `sanity` package) so
//! a reader can match them. Needs root: loop devices, mounts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::code;

use std::collections::HashMap;
use std::time::Instant;

use common::{device_context, loops_under, mount_cap, mounts_under, rw_cap, timed, Driver};
use goldmount_csi::proto::{
    node_service_capability, plugin_capability, volume_capability, GetPluginCapabilitiesRequest,
    GetPluginInfoRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest,
    VolumeCapability,
};
use goldmount_tests::golddisk;
use tonic::Code;

fn stage_req(
    volume: &str,
    staging: &std::path::Path,
    ctx: HashMap<String, String>,
    cap: Option<VolumeCapability>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: volume.into(),
        publish_context: ctx,
        staging_target_path: staging.display().to_string(),
        volume_capability: cap,
        ..Default::default()
    }
}

fn publish_req(
    volume: &str,
    staging: &std::path::Path,
    target: &std::path::Path,
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

fn unpublish_req(volume: &str, target: &std::path::Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume.into(),
        target_path: target.display().to_string(),
    }
}

fn unstage_req(volume: &str, staging: &std::path::Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: volume.into(),
        staging_target_path: staging.display().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_get_plugin_info_should_return_name_and_version_over_authority_localhost() {
    let d = Driver::start().await;
    let mut id = d.identity().await;
    let info = id
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "goldmount.csi.dev");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let caps = id
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(caps.len(), 1);
    assert_eq!(
        caps[0].r#type,
        Some(plugin_capability::Type::Service(
            plugin_capability::Service {
                r#type: plugin_capability::service::Type::ControllerService as i32
            }
        ))
    );
    let probe = id.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_get_capabilities_and_info_should_return_stage_unstage_stats_and_node_id() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    let caps = node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let rpcs: Vec<_> = caps
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(node_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    use node_service_capability::rpc::Type;
    assert_eq!(
        rpcs,
        vec![
            Type::StageUnstageVolume as i32,
            Type::GetVolumeStats as i32,
            Type::VolumeCondition as i32
        ]
    );
    let info = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, common::NODE_ID);
    assert_eq!(info.max_volumes_per_node, 16);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_should_be_0600_and_a_stale_one_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let d = Driver::start().await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A socket left by a killed run: a new server takes the path over.
    let stale = d.path("stale.sock");
    let old = std::os::unix::net::UnixListener::bind(&stale).unwrap();
    drop(old);
    let l = goldmount_csi::bind_socket(&stale).unwrap();
    drop(l);
    // Anything that is not a socket is never removed.
    let file = d.path("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let err = goldmount_csi::bind_socket(&file).unwrap_err();
    assert!(
        matches!(err, goldmount_csi::ServeError::NotASocket { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_fail_when_required_fields_are_missing_or_invalid() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    let staging = d.path("staging/v");
    let ctx = device_context(&d.path("nothing.img"));
    let cases = [
        (
            "no volume id",
            stage_req("", &staging, ctx.clone(), rw_cap()),
        ),
        (
            "invalid volume id",
            stage_req("../etc", &staging, ctx.clone(), rw_cap()),
        ),
        (
            "no staging target path",
            stage_req("v1", std::path::Path::new(""), ctx.clone(), rw_cap()),
        ),
        (
            "no volume capability",
            stage_req("v1", &staging, ctx.clone(), None),
        ),
        (
            "block access",
            stage_req(
                "v1",
                &staging,
                ctx.clone(),
                Some(VolumeCapability {
                    access_mode: Some(volume_capability::AccessMode {
                        mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
                    }),
                    access_type: Some(volume_capability::AccessType::Block(
                        volume_capability::BlockVolume {},
                    )),
                }),
            ),
        ),
        (
            "multi-node writer",
            stage_req(
                "v1",
                &staging,
                ctx.clone(),
                mount_cap(volume_capability::access_mode::Mode::MultiNodeMultiWriter),
            ),
        ),
        (
            "no publish context",
            stage_req("v1", &staging, HashMap::new(), rw_cap()),
        ),
    ];
    for (what, req) in cases {
        let c = code(node.node_stage_volume(req).await);
        assert_eq!(c, Code::InvalidArgument, "{what}");
    }
    assert!(d.engine.list().unwrap().is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_publish_and_unpublish_and_unstage_should_fail_when_required_fields_are_missing() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    let staging = d.path("staging/v");
    let target = d.path("pods/p/mount");
    let none = std::path::Path::new("");
    let mut no_cap = publish_req("v1", &staging, &target, false);
    no_cap.volume_capability = None;
    for (what, req) in [
        ("no volume id", publish_req("", &staging, &target, false)),
        ("no staging path", publish_req("v1", none, &target, false)),
        ("no target path", publish_req("v1", &staging, none, false)),
        ("no volume capability", no_cap),
    ] {
        assert_eq!(
            code(node.node_publish_volume(req).await),
            Code::InvalidArgument,
            "publish: {what}"
        );
    }
    for (what, req) in [
        ("no volume id", unpublish_req("", &target)),
        ("no target path", unpublish_req("v1", none)),
    ] {
        assert_eq!(
            code(node.node_unpublish_volume(req).await),
            Code::InvalidArgument,
            "unpublish: {what}"
        );
    }
    for (what, req) in [
        ("no volume id", unstage_req("", &staging)),
        ("no staging path", unstage_req("v1", none)),
    ] {
        assert_eq!(
            code(node.node_unstage_volume(req).await),
            Code::InvalidArgument,
            "unstage: {what}"
        );
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_publish_volume_should_fail_with_failed_precondition_when_not_staged() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    let c = code(
        node.node_publish_volume(publish_req(
            "never-staged",
            &d.path("staging/v"),
            &d.path("pods/p/mount"),
            false,
        ))
        .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    assert!(!d.path("pods/p/mount").exists());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_unpublish_and_unstage_should_succeed_when_the_volume_is_unknown() {
    let d = Driver::start().await;
    let mut node = d.node().await;
    for _ in 0..2 {
        node.node_unpublish_volume(unpublish_req("unknown", &d.path("pods/p/mount")))
            .await
            .unwrap();
        node.node_unstage_volume(unstage_req("unknown", &d.path("staging/v")))
            .await
            .unwrap();
    }
    d.stop().await;
}

/// The whole node lifecycle on the sample gold disk (GPT: /boot ext4, /
/// XFS with an fstab, /srv/data ext4), each call repeated.
#[tokio::test(flavor = "multi_thread")]
async fn node_publish_volume_should_work_with_repeated_calls() {
    let d = Driver::start().await;
    let t0 = Instant::now();
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    eprintln!("gold disk built: {:?}", t0.elapsed());
    let mut node = d.node().await;
    let vol = "pvc-0001";
    let staging = d.path("kubelet/plugins/goldmount.csi.dev/staging/pvc-0001");
    std::fs::create_dir_all(&staging).unwrap(); // kubelet makes it
    let rw = d.path("kubelet/pods/a/volumes/pvc-0001/mount");
    let ro = d.path("kubelet/pods/b/volumes/pvc-0001/mount");

    for i in 0..2 {
        timed(&format!("NodeStageVolume #{i}"), async {
            node.node_stage_volume(stage_req(vol, &staging, device_context(&image), rw_cap()))
                .await
                .unwrap()
        })
        .await;
    }
    let st = d
        .engine
        .get(&connector::engine::VolumeName::parse(vol).unwrap())
        .unwrap();
    assert_eq!(st.publications.len(), 1, "{:?}", st.publications);
    assert_eq!(st.publications[0].refs, 1, "a repeat adds no reference");
    for (rel, content) in golddisk::FILES {
        assert_eq!(
            std::fs::read_to_string(staging.join(rel)).unwrap(),
            *content,
            "{rel} at the staging path"
        );
    }

    for i in 0..2 {
        timed(&format!("NodePublishVolume rw #{i}"), async {
            node.node_publish_volume(publish_req(vol, &staging, &rw, false))
                .await
                .unwrap()
        })
        .await;
    }
    for rel in [
        "srv/data/written.txt",
        "boot/written.txt",
        "etc/written.txt",
    ] {
        std::fs::write(rw.join(rel), "from the pod\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(staging.join(rel)).unwrap(),
            "from the pod\n",
            "{rel} is the same tree at the staging path"
        );
    }

    for i in 0..2 {
        timed(&format!("NodePublishVolume ro #{i}"), async {
            node.node_publish_volume(publish_req(vol, &staging, &ro, true))
                .await
                .unwrap()
        })
        .await;
    }
    let st = d
        .engine
        .get(&connector::engine::VolumeName::parse(vol).unwrap())
        .unwrap();
    assert_eq!(st.publications.len(), 3, "{:?}", st.publications);
    for p in &st.publications {
        assert_eq!(p.refs, 1, "repeats add no reference: {p:?}");
        assert_eq!(p.read_only, p.target == ro, "{p:?}");
    }
    for rel in [
        "srv/data/refused.txt",
        "boot/refused.txt",
        "etc/refused.txt",
    ] {
        let e = std::fs::write(ro.join(rel), "no").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{rel}: {e}"); // EROFS
    }
    assert_eq!(
        std::fs::read_to_string(ro.join("srv/data/written.txt")).unwrap(),
        "from the pod\n"
    );
    // The same target with another read-only flag is incompatible.
    assert_eq!(
        code(
            node.node_publish_volume(publish_req(vol, &staging, &ro, false))
                .await
        ),
        Code::AlreadyExists
    );
    // Unstage while published: refused, nothing changes.
    assert_eq!(
        code(node.node_unstage_volume(unstage_req(vol, &staging)).await),
        Code::FailedPrecondition
    );
    assert!(rw.join("etc/hostname").exists());

    for target in [&rw, &ro] {
        for i in 0..2 {
            timed(
                &format!("NodeUnpublishVolume {} #{i}", target.display()),
                async {
                    node.node_unpublish_volume(unpublish_req(vol, target))
                        .await
                        .unwrap()
                },
            )
            .await;
        }
        assert!(!target.exists(), "{} removed", target.display());
    }
    for i in 0..2 {
        timed(&format!("NodeUnstageVolume #{i}"), async {
            node.node_unstage_volume(unstage_req(vol, &staging))
                .await
                .unwrap()
        })
        .await;
    }

    assert!(d.engine.list().unwrap().is_empty());
    let root = d.path("volumes");
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left under the volumes root: {left:?}");
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    assert!(staging.is_dir(), "the staging dir kubelet made stays");
    assert!(std::fs::read_dir(&staging).unwrap().next().is_none());
    eprintln!("lifecycle total: {:?}", t0.elapsed());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_fail_with_already_exists_when_incompatible() {
    let d = Driver::start().await;
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    let other = d.path("other.img");
    std::fs::File::create(&other)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut node = d.node().await;
    let vol = "pvc-0002";
    let staging = d.path("staging/pvc-0002");
    node.node_stage_volume(stage_req(vol, &staging, device_context(&image), rw_cap()))
        .await
        .unwrap();
    let ro_cap = mount_cap(volume_capability::access_mode::Mode::SingleNodeReaderOnly);
    for (what, req) in [
        (
            "read-only capability",
            stage_req(vol, &staging, device_context(&image), ro_cap),
        ),
        (
            "another device",
            stage_req(vol, &staging, device_context(&other), rw_cap()),
        ),
        (
            "another staging path",
            stage_req(
                vol,
                &d.path("staging/elsewhere"),
                device_context(&image),
                rw_cap(),
            ),
        ),
    ] {
        assert_eq!(
            code(node.node_stage_volume(req).await),
            Code::AlreadyExists,
            "{what}"
        );
    }
    assert!(!d.path("staging/elsewhere").exists());
    // The staged volume is untouched and goes away cleanly.
    assert!(staging.join("etc/hostname").exists());
    node.node_unstage_volume(unstage_req(vol, &staging))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_abort_a_second_call_on_the_same_volume_in_flight() {
    let d = Driver::start().await;
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    let node = d.node().await;
    let vol = "pvc-0003";
    let staging = d.path("staging/pvc-0003");
    let req = stage_req(vol, &staging, device_context(&image), rw_cap());
    let (mut a, mut b) = (node.clone(), node.clone());
    let (ra, rb) = tokio::join!(
        a.node_stage_volume(req.clone()),
        b.node_stage_volume(req.clone())
    );
    let mut codes: Vec<Code> = [ra.map(|_| Code::Ok), rb.map(|_| Code::Ok)]
        .into_iter()
        .map(|r| r.unwrap_or_else(|s| s.code()))
        .collect();
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(codes, vec![Code::Ok, Code::Aborted]);
    // Retried after the first finished: OK, still one reference.
    a.node_stage_volume(req).await.unwrap();
    let st = d
        .engine
        .get(&connector::engine::VolumeName::parse(vol).unwrap())
        .unwrap();
    assert_eq!(st.publications.len(), 1);
    assert_eq!(st.publications[0].refs, 1);
    a.node_unstage_volume(unstage_req(vol, &staging))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    d.stop().await;
}

/// What `ControllerPublishVolume` will hand over with the appliance's loop
/// backend: its presentation document; the appliance (here: the test)
/// attached the clone file as one whole-file loop device.
#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_work_with_the_appliance_loop_presentation() {
    let d = Driver::start().await;
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    let out = std::process::Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let presented = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut node = d.node().await;
    let vol = "pvc-0004";
    let staging = d.path("staging/pvc-0004");
    let target = d.path("pods/c/mount");
    let ctx = HashMap::from([(
        "presentation".to_string(),
        format!(
            r#"{{"transport":"loop","backing_file":"{}"}}"#,
            image.display()
        ),
    )]);
    let staged = node
        .node_stage_volume(stage_req(vol, &staging, ctx.clone(), rw_cap()))
        .await;
    let ours = |presented: &str| -> Vec<String> {
        let mut l = loops_under(d.dir.path());
        l.retain(|x| !x.starts_with(&format!("{} ", presented.trim_start_matches("/dev/"))));
        l.extend(common::loops_over(presented));
        l
    };
    if let Err(e) = staged {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &presented])
            .status();
        panic!("stage over {presented}: {e:?}");
    }
    node.node_stage_volume(stage_req(vol, &staging, ctx, rw_cap()))
        .await
        .unwrap();
    node.node_publish_volume(publish_req(vol, &staging, &target, false))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("etc/hostname")).unwrap(),
        "gold-host\n"
    );
    assert!(!ours(&presented).is_empty(), "the engine's partition loops");
    node.node_unpublish_volume(unpublish_req(vol, &target))
        .await
        .unwrap();
    node.node_unstage_volume(unstage_req(vol, &staging))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(ours(&presented), Vec::<String>::new());
    // The appliance's loop device is the appliance's: still there.
    let name = presented.trim_start_matches("/dev/");
    let backing = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).unwrap();
    assert_eq!(backing.trim(), image.display().to_string());
    let st = std::process::Command::new("losetup")
        .args(["-d", &presented])
        .status()
        .unwrap();
    assert!(st.success());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_mount_read_only_for_a_reader_only_access_mode() {
    let d = Driver::start().await;
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    let mut node = d.node().await;
    let vol = "pvc-0005";
    let staging = d.path("staging/pvc-0005");
    let target = d.path("pods/r/mount");
    let ro_cap = mount_cap(volume_capability::access_mode::Mode::SingleNodeReaderOnly);
    node.node_stage_volume(stage_req(vol, &staging, device_context(&image), ro_cap))
        .await
        .unwrap();
    // readonly=false on a read-only volume: the publication is read-only too.
    node.node_publish_volume(publish_req(vol, &staging, &target, false))
        .await
        .unwrap();
    for base in [&staging, &target] {
        for rel in ["srv/data/x", "boot/x", "etc/x"] {
            let e = std::fs::write(base.join(rel), "no").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(30), "{}/{rel}: {e}", base.display());
        }
    }
    assert_eq!(
        std::fs::read_to_string(target.join("srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );
    node.node_unpublish_volume(unpublish_req(vol, &target))
        .await
        .unwrap();
    node.node_unstage_volume(unstage_req(vol, &staging))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    d.stop().await;
}

fn run(prog: &str, args: &[&str]) {
    let out = std::process::Command::new(prog)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stage_volume_should_refuse_a_repeat_when_the_live_tree_is_not_whole() {
    let d = Driver::start().await;
    let image = golddisk::build(d.dir.path(), "clone.img").unwrap();
    let mut node = d.node().await;
    let vol = "pvc-0006";
    let staging = d.path("staging/pvc-0006");
    let stage = || stage_req(vol, &staging, device_context(&image), rw_cap());
    node.node_stage_volume(stage()).await.unwrap();
    node.node_stage_volume(stage()).await.unwrap();
    let stats = |node: &mut goldmount_csi::proto::node_client::NodeClient<_>| {
        let req = goldmount_csi::proto::NodeGetVolumeStatsRequest {
            volume_id: vol.into(),
            volume_path: staging.display().to_string(),
            staging_target_path: String::new(),
        };
        let mut n: goldmount_csi::proto::node_client::NodeClient<tonic::transport::Channel> =
            node.clone();
        async move {
            n.node_get_volume_stats(req)
                .await
                .unwrap()
                .into_inner()
                .volume_condition
                .unwrap()
        }
    };
    assert!(!stats(&mut node).await.abnormal);

    // A filesystem of the tree turned read-only (as errors=remount-ro
    // does): the repeat is refused and says which; stats say abnormal.
    let data = d.engine.config().volumes_root.join(vol).join("srv/data");
    let data_s = data.to_str().unwrap();
    run("mount", &["-o", "remount,ro", data_s]);
    let e = node.node_stage_volume(stage()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("/srv/data") && e.message().contains("read-only now"),
        "{e:?}"
    );
    let c = stats(&mut node).await;
    assert!(c.abnormal && c.message.contains("read-only now"), "{c:?}");
    run("mount", &["-o", "remount,rw", data_s]);
    node.node_stage_volume(stage()).await.unwrap();

    // A filesystem of the tree unmounted behind the plugin's back.
    run("umount", &[data_s]);
    let e = node.node_stage_volume(stage()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("no longer mounted"), "{e:?}");

    // Unstage still takes everything down.
    node.node_unstage_volume(unstage_req(vol, &staging))
        .await
        .unwrap();
    assert_eq!(mounts_under(d.dir.path()), Vec::<String>::new());
    assert_eq!(loops_under(d.dir.path()), Vec::<String>::new());
    d.stop().await;
}
