//! Issue 13 in the lab guest — the Kubernetes CSI driver over iSCSI + LVM,
//! beside the live gold: the production host's disk (the three-filesystem
//! LVM gold of `goldmount_tests::lvmgold`) is a LIO disk of this guest with
//! `vg_gold` active and its whole fstab tree mounted, as on the original
//! host; the reference appliance (iSCSI backend on LIO) holds a gold copy
//! of it and knows this guest as host `labhost` by its initiator IQN; the
//! driver's controller (over the appliance) and node plugin (over an
//! engine of its own) are served in this process on Unix sockets and
//! driven by tonic clients as the CSI sidecars and kubelet drive them:
//! CreateVolume → ControllerPublishVolume → NodeStageVolume →
//! NodePublishVolume and back. The clones carry the same VG name, PV/VG
//! UUIDs, XFS UUID and ext4 label as the live disk.
//! Run with `cargo xtask lab csi_lifecycle` and
//! `cargo xtask lab --bench csi_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::client::Client;
use appliance::model::{ImportGold, Presentation, Presented, PutHost};
use connector::engine::{Engine, VolumeName};
use goldmount_csi::proto::{
    controller_client::ControllerClient, node_client::NodeClient, volume_capability,
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, CreateVolumeRequest,
    DeleteVolumeRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use goldmount_csi::{bind_socket, serve, serve_controller, ApplianceAccess, NodeConfig};
use goldmount_tests::dockerd::mounts_under;
use goldmount_tests::lab::*;
use goldmount_tests::livegold::{
    assert_tree_is_the_gold, dm_deps, dm_names, has_session, token_file_beside, ApplianceCleanup,
    LiveGold, ProdTarget, PORTAL,
};
use goldmount_tests::lvmgold;
use tonic::transport::{Channel, Endpoint, Uri};

const APPLIANCE_LISTEN: &str = "127.0.0.1:8493";
/// The appliance's target.
const APPLIANCE_IQN: &str = "iqn.2026-12.io.goldmount.lab:csi";
/// The production storage's target, which exports the live gold's disk.
const PROD_IQN: &str = "iqn.2026-12.io.goldmount.lab:prodcsi";
const PROD: ProdTarget = ProdTarget {
    iqn: PROD_IQN,
    backstore: "labcsi_prod",
    serial: "7e1d5f3b-8c72-4a5f-9b21-3d4c5e6f7a81",
};
const GOLD: &str = "pg-gold";
/// This guest's name on the appliance: the CSI node id.
const HOST: &str = "labhost";
/// Directories of the tree where a volume's writer leaves a file: one per
/// filesystem of the clone (root XFS, /boot, /home, /srv/data).
const WRITE_DIRS: &[&str] = &["", "boot", "home", "srv/data"];
/// EROFS: what a write under a read-only publication must fail with.
const EROFS: i32 = 30;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn require_tools() {
    assert!(
        Path::new("/usr/sbin/sgdisk").exists(),
        "/usr/sbin/sgdisk is missing: apt-get install gdisk"
    );
}

/// The file volume `v`'s writer leaves in each of [`WRITE_DIRS`].
fn marker(v: &str) -> String {
    format!("written-through-{v}")
}

// ---------------------------------------------------------------- the CSI driver

/// A channel to a plugin socket, `:authority` `localhost` (what kubelet
/// and the CSI sidecars send on a Unix socket).
async fn channel(path: PathBuf) -> Channel {
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            tokio::net::UnixStream::connect(path.clone())
        }))
        .await
        .unwrap()
}

/// The controller (over the appliance) and the node plugin (over an engine
/// of its own) served in this process, each on its own socket, and one
/// client of each. On drop: both servers stop, and whatever volume the
/// engine still holds (a failed run) is force-unmounted, so the clones'
/// devices leave this host before the appliance cleanup unpresents them.
struct Csi {
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    ctrl: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Csi {
    fn start(sockets: &Path, engine: connector::config::Config, url: &str, token: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let engine = Arc::new(Engine::open(engine).unwrap());
        let node_sock = sockets.join("node.sock");
        let ctrl_sock = sockets.join("controller.sock");
        let mut stops = vec![];
        let mut servers = vec![];
        {
            let _in_rt = rt.enter();
            let listener = bind_socket(&node_sock).unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let cfg = NodeConfig {
                node_id: HOST.into(),
                max_volumes_per_node: 16,
            };
            let e = engine.clone();
            servers.push(rt.spawn(async move {
                serve(listener, e, cfg, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }));
            stops.push(tx);
            let listener = bind_socket(&ctrl_sock).unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let access = ApplianceAccess {
                url: url.to_string(),
                ca: None,
                token_file: Some(token.to_path_buf()),
            };
            servers.push(rt.spawn(async move {
                serve_controller(listener, access, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }));
            stops.push(tx);
        }
        let node = NodeClient::new(rt.block_on(channel(node_sock)));
        let ctrl = ControllerClient::new(rt.block_on(channel(ctrl_sock)));
        Csi {
            rt,
            engine,
            ctrl,
            node,
            stops,
            servers,
        }
    }

    /// Runs one client call to its end.
    fn call<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    fn engine_volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .engine
            .list()
            .unwrap()
            .into_iter()
            .map(|v| v.volume)
            .collect();
        v.sort();
        v
    }
}

impl Drop for Csi {
    fn drop(&mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for s in self.servers.drain(..) {
            let r = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), s).await });
            if r.is_err() {
                eprintln!("csi teardown: a server did not stop in 30 s");
            }
        }
        for v in self.engine.list().unwrap_or_default() {
            eprintln!("csi teardown: force-unmounting {}", v.volume);
            match VolumeName::parse(&v.volume) {
                Ok(n) => {
                    if let Err(e) = self.engine.unmount(&n, true) {
                        eprintln!("csi teardown: {}: {}", v.volume, e.message);
                    }
                }
                Err(e) => eprintln!("csi teardown: {}: {}", v.volume, e.message),
            }
        }
    }
}

/// A mount volume capability, `SINGLE_NODE_WRITER`.
fn rw_cap() -> Option<VolumeCapability> {
    Some(VolumeCapability {
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
    })
}

fn create_req(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![rw_cap().unwrap()],
        parameters: HashMap::from([
            ("gold".to_string(), GOLD.to_string()),
            ("csi.storage.k8s.io/pvc/name".to_string(), name.to_string()),
        ]),
        ..Default::default()
    }
}

fn cpub_req(volume: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: HOST.into(),
        volume_capability: rw_cap(),
        ..Default::default()
    }
}

fn cunpub_req(volume: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: HOST.into(),
        ..Default::default()
    }
}

fn stage_req(
    volume: &str,
    staging: &Path,
    publish_context: &HashMap<String, String>,
    volume_context: &HashMap<String, String>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: volume.into(),
        publish_context: publish_context.clone(),
        staging_target_path: staging.display().to_string(),
        volume_capability: rw_cap(),
        volume_context: volume_context.clone(),
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

fn unpublish_req(volume: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume.into(),
        target_path: target.display().to_string(),
    }
}

fn unstage_req(volume: &str, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: volume.into(),
        staging_target_path: staging.display().to_string(),
    }
}

fn delete_req(volume: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: volume.into(),
        ..Default::default()
    }
}

/// The iSCSI presentation in a `publish_context`: (target IQN, portals,
/// LUN, WWN). Panics when the context holds anything else.
fn iscsi_of(ctx: &HashMap<String, String>) -> (String, Vec<String>, u32, String) {
    let doc = ctx
        .get("presentation")
        .unwrap_or_else(|| panic!("publish_context without presentation: {ctx:?}"));
    let p: Presentation = serde_json::from_str(doc)
        .unwrap_or_else(|e| panic!("presentation is not the appliance's document ({e}): {doc}"));
    assert_eq!(p.host, HOST, "{p:?}");
    match p.presented {
        Presented::Iscsi {
            target_iqn,
            portals,
            lun,
            wwn,
            ..
        } => (target_iqn, portals, lun, wwn),
        other => panic!("expected an iSCSI presentation, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the bed

/// Everything a scenario stands on, in drop order: the CSI services (their
/// engine force-unmounts what a failed run left), the appliance cleanup,
/// the appliance, the live gold, the XFS the images live on.
struct Bed {
    csi: Csi,
    cleanup: ApplianceCleanup,
    app: ApplianceProc,
    live: LiveGold,
    xfs: ReflinkXfs,
    client: Client,
    /// Socket directory (short path on /mnt's tmpfs).
    short: PathBuf,
    /// Where staging and target paths and the engine's directories are.
    csi_dir: PathBuf,
    live_root: PathBuf,
    dm_before: Vec<String>,
    lio_before: Vec<(String, String)>,
    dm_live: Vec<String>,
    live_lvs: Vec<String>,
    live_deps: Vec<String>,
    live_mounts: Vec<String>,
}

impl Bed {
    /// The live gold built, attached, copied to the appliance and then
    /// mounted; this host registered by its IQN; the driver up.
    fn setup(scratch: &Path) -> Self {
        require_tools();
        std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
        let dm_before = dm_names();
        let lio_before = lio_disks();
        let xfs = ReflinkXfs::create(scratch, 1024);
        let initiator = initiator_iqn();
        // Socket paths stay under 108 bytes: a short directory on /mnt.
        let short = PathBuf::from(format!("/mnt/gmcsi.{}", std::process::id()));
        fs::create_dir_all(&short).unwrap();

        let t = Instant::now();
        let img = xfs.mnt.join("prod.img");
        lvmgold::partition_image(&img);
        let live_root = scratch.join("live");
        let mut live = LiveGold::new(PROD, &img, &initiator, &live_root);
        let disk = live.attach();
        lvmgold::fill(&disk, scratch);
        run("blockdev", &["--flushbufs", disk.to_str().unwrap()]);
        eprintln!(
            "TIMING live gold disk built on {}: {} ms",
            disk.display(),
            ms(t.elapsed())
        );

        let data = xfs.mnt.join("data");
        let app_log = scratch.join("appliance.log");
        let app = ApplianceProc::start(
            APPLIANCE_LISTEN,
            &[
                "--backend",
                "iscsi",
                "--data-dir",
                data.to_str().unwrap(),
                "--import-from",
                xfs.mnt.to_str().unwrap(),
                "--target-iqn",
                APPLIANCE_IQN,
                "--portal",
                PORTAL,
                "--lun-wait-secs",
                "20",
            ],
            &app_log,
        );
        let token_file = token_file_beside(&app_log);
        let token = fs::read_to_string(&token_file).unwrap();
        let client = Client::new(&app.base).with_token(token.trim());
        let cleanup = ApplianceCleanup::new(client.clone(), APPLIANCE_IQN, &initiator, PROD);
        // No callback: the CSI controller unpresents forced, after the CO
        // saw NodeUnstageVolume answer.
        client
            .put_host(
                HOST,
                &PutHost {
                    name: None,
                    iqns: vec![initiator.clone()],
                    wwpns: vec![],
                    callback_url: None,
                    callback_ca_pem: None,
                },
            )
            .unwrap();
        let t = Instant::now();
        client
            .import_gold(&ImportGold {
                name: GOLD.into(),
                source: img.clone(),
                point_in_time: None,
            })
            .unwrap();
        eprintln!("TIMING gold copy import: {} ms", ms(t.elapsed()));

        // The live gold, as its host runs it.
        live.activate_and_mount();
        assert_tree_is_the_gold(&live_root, "live gold");
        let dm_live = dm_names();
        let live_lvs = vec![
            format!("{}-home", lvmgold::VG),
            format!("{}-root", lvmgold::VG),
        ];
        for lv in &live_lvs {
            assert!(dm_live.contains(lv), "{lv} active: {dm_live:?}");
        }
        let live_deps: Vec<String> = live_lvs.iter().map(|lv| dm_deps(lv)).collect();
        let live_pv = live.pv();
        let pv_name = live_pv.file_name().unwrap().to_str().unwrap().to_string();
        for d in &live_deps {
            assert!(d.contains(&format!("({pv_name})")), "{d}");
        }
        let live_mounts = mounts_under(&live_root);
        assert_eq!(live_mounts.len(), 4, "{live_mounts:?}");

        let csi_dir = scratch.join("csi");
        let engine = connector::config::Config {
            volumes_root: csi_dir.join("host/volumes"),
            state_path: csi_dir.join("host/state/state.redb"),
            run_dir: csi_dir.join("host/run"),
        };
        let csi = Csi::start(&short, engine, &app.base, &token_file);
        Bed {
            csi,
            cleanup,
            app,
            live,
            xfs,
            client,
            short,
            csi_dir,
            live_root,
            dm_before,
            lio_before,
            dm_live,
            live_lvs,
            live_deps,
            live_mounts,
        }
    }

    fn staging(&self, vol: &str) -> PathBuf {
        self.csi_dir.join("kubelet/staging").join(vol)
    }

    fn target(&self, vol: &str, pod: &str) -> PathBuf {
        self.csi_dir
            .join("kubelet/pods")
            .join(pod)
            .join(vol)
            .join("mount")
    }

    /// The live gold is as the host runs it: its four mounts, its LVs on
    /// its own PV, its files unchanged.
    fn assert_live_gold_intact(&self, when: &str) {
        assert_eq!(mounts_under(&self.live_root), self.live_mounts, "{when}");
        for (lv, deps) in self.live_lvs.iter().zip(&self.live_deps) {
            assert_eq!(&dm_deps(lv), deps, "{when}: {lv} still on the live PV");
        }
        assert_tree_is_the_gold(&self.live_root, &format!("live gold {when}"));
    }

    /// Nothing of the clones is left in the guest nor on the appliance;
    /// only the live gold's disk, session and dm devices remain.
    fn assert_nothing_left(&self, wwns: &[String], clone_dm: &[String]) {
        assert_eq!(
            mounts_under(&self.csi_dir),
            Vec::<String>::new(),
            "mounts left under {}",
            self.csi_dir.display()
        );
        assert_eq!(self.csi.engine_volumes(), Vec::<String>::new());
        let dm_now = dm_names();
        for d in clone_dm {
            assert!(!dm_now.contains(d), "dm device {d} of a clone left");
        }
        assert_eq!(
            dm_now, self.dm_live,
            "dm devices other than the live gold's"
        );
        for w in wwns {
            assert_eq!(disk_with_wwid(w), None, "a SCSI disk with wwid {w} left");
        }
        let live_disk = self
            .live
            .disk()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lio_now: Vec<String> = lio_disks().into_iter().map(|(d, _)| d).collect();
        let mut lio_want: Vec<String> = self.lio_before.iter().map(|(d, _)| d.clone()).collect();
        lio_want.push(live_disk);
        lio_want.sort();
        assert_eq!(lio_now, lio_want, "SCSI disks other than the live gold's");
        assert!(
            !has_session(APPLIANCE_IQN),
            "a session to the appliance's target is left: {:?}",
            session_scsi_addresses(APPLIANCE_IQN)
        );
        assert!(has_session(PROD_IQN), "the live gold's session stays");
        assert_eq!(self.client.list_presentations().unwrap(), vec![]);
        assert_eq!(
            self.client
                .list_clones()
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            Vec::<String>::new()
        );
        self.assert_live_gold_intact("after everything went down");
    }

    /// Takes everything down in order; then the guest is as before.
    fn finish(self) {
        let Bed {
            csi,
            cleanup,
            app,
            live,
            xfs,
            short,
            dm_before,
            lio_before,
            ..
        } = self;
        drop(csi);
        drop(cleanup);
        drop(app);
        drop(live);
        assert_eq!(dm_names(), dm_before, "dm devices left");
        assert_eq!(lio_disks(), lio_before, "SCSI disks left");
        assert!(!has_session(PROD_IQN));
        let _ = fs::remove_dir_all(&short);
        drop(xfs);
    }
}

/// dm devices now that are not the live gold's (the clones' LVs).
fn clone_dm(bed: &Bed) -> Vec<String> {
    dm_names()
        .into_iter()
        .filter(|d| !bed.dm_live.contains(d))
        .collect()
}

// ---------------------------------------------------------------- scenario 1

/// One volume through the driver, for the lifecycle scenario.
struct Up {
    id: String,
    wwn: String,
    staging: PathBuf,
    target: PathBuf,
}

/// Scenario: two volumes of the LVM gold through the whole CSI lifecycle,
/// every call repeated once, both trees mounted at once beside the live
/// gold (vg_gold active, its fstab tree mounted): CreateVolume (same
/// volume twice), ControllerPublishVolume (an iSCSI presentation to this
/// host, the same twice), NodeStageVolume and NodePublishVolume; each
/// target shows the gold's files on all four filesystems of its clone; a
/// write through one is neither in the other nor in the live gold; a
/// read-only NodePublishVolume refuses writes with EROFS;
/// NodeGetVolumeStats is not abnormal. Then NodeUnpublish, NodeUnstage,
/// ControllerUnpublish, DeleteVolume (each twice) leave nothing: no
/// session to the appliance's target, no SCSI disk with a clone's WWID,
/// no dm device of the clones' VGs, no mount under the driver's
/// directories, no presentation or clone on the appliance — and the live
/// gold still active, mounted and unchanged.
#[test]
#[ignore = "needs the lab kernel"]
fn csi_lifecycle_two_lvm_clones_beside_the_live_gold() {
    let scratch = require_lab();
    let t_all = Instant::now();
    let bed = Bed::setup(&scratch);
    let csi = &bed.csi;
    let mut ctrl = csi.ctrl.clone();
    let mut node = csi.node.clone();
    let gold_size = fs::metadata(bed.xfs.mnt.join("prod.img")).unwrap().len() as i64;

    let mut ups: Vec<Up> = vec![];
    for name in ["pvc-lab-a", "pvc-lab-b"] {
        // CreateVolume, twice: the same volume.
        let t = Instant::now();
        let v1 = csi
            .call(ctrl.create_volume(create_req(name)))
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        eprintln!("TIMING CreateVolume {name}: {} ms", ms(t.elapsed()));
        let v2 = csi
            .call(ctrl.create_volume(create_req(name)))
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(v1, v2, "CreateVolume repeated gives the same volume");
        assert_eq!(v1.volume_id, format!("csi-{name}"));
        assert_eq!(v1.capacity_bytes, gold_size);
        assert_eq!(
            v1.volume_context.get("gold").map(String::as_str),
            Some(GOLD)
        );
        let id = v1.volume_id.clone();

        // ControllerPublishVolume, twice: one iSCSI presentation.
        let t = Instant::now();
        let c1 = csi
            .call(ctrl.controller_publish_volume(cpub_req(&id)))
            .unwrap()
            .into_inner()
            .publish_context;
        eprintln!(
            "TIMING ControllerPublishVolume {id}: {} ms",
            ms(t.elapsed())
        );
        let c2 = csi
            .call(ctrl.controller_publish_volume(cpub_req(&id)))
            .unwrap()
            .into_inner()
            .publish_context;
        assert_eq!(c1, c2, "ControllerPublishVolume repeated");
        eprintln!("publish_context of {id}: {c1:?}");
        let (iqn, portals, lun, wwn) = iscsi_of(&c1);
        assert_eq!(iqn, APPLIANCE_IQN);
        assert_eq!(portals, vec![PORTAL.to_string()]);
        assert!(wwn.starts_with("naa.6001405"), "{wwn}");
        assert_eq!(c1.get("transport").map(String::as_str), Some("iscsi"));
        assert_eq!(c1.get("wwn"), Some(&wwn));
        assert_eq!(c1.get("lun"), Some(&lun.to_string()));
        assert!(
            ups.iter().all(|u| u.wwn != wwn),
            "two volumes with one WWN {wwn}"
        );

        // NodeStageVolume, twice.
        let staging = bed.staging(&id);
        let target = bed.target(&id, &format!("pod-{name}"));
        let t = Instant::now();
        csi.call(node.node_stage_volume(stage_req(&id, &staging, &c1, &v1.volume_context)))
            .unwrap_or_else(|s| panic!("NodeStageVolume {id}: {s:?}"));
        eprintln!(
            "TIMING NodeStageVolume {id} (login/scan + LVM import + 4 mounts): {} ms",
            ms(t.elapsed())
        );
        let t = Instant::now();
        csi.call(node.node_stage_volume(stage_req(&id, &staging, &c1, &v1.volume_context)))
            .unwrap_or_else(|s| panic!("NodeStageVolume {id} repeated: {s:?}"));
        eprintln!(
            "TIMING NodeStageVolume {id} repeated: {} ms",
            ms(t.elapsed())
        );
        let disk = disk_with_wwid(&wwn).unwrap_or_else(|| panic!("a disk with wwid {wwn}"));
        eprintln!("{id}: LUN {lun} is /dev/{disk}");

        // NodePublishVolume, twice.
        let t = Instant::now();
        csi.call(node.node_publish_volume(publish_req(&id, &staging, &target, false)))
            .unwrap_or_else(|s| panic!("NodePublishVolume {id}: {s:?}"));
        eprintln!("TIMING NodePublishVolume {id}: {} ms", ms(t.elapsed()));
        csi.call(node.node_publish_volume(publish_req(&id, &staging, &target, false)))
            .unwrap_or_else(|s| panic!("NodePublishVolume {id} repeated: {s:?}"));
        ups.push(Up {
            id,
            wwn,
            staging,
            target,
        });
    }

    // Both up at once, beside the live gold.
    assert!(has_session(APPLIANCE_IQN), "the engine logged in");
    assert_eq!(
        csi.engine_volumes(),
        ups.iter().map(|u| u.id.clone()).collect::<Vec<_>>()
    );
    let presented = bed.client.list_presentations().unwrap();
    assert_eq!(presented.len(), 2, "{presented:?}");
    let clone_dm = clone_dm(&bed);
    eprintln!("dm devices of the clones: {clone_dm:?}");
    assert!(clone_dm.len() >= 4, "two LVs per clone: {clone_dm:?}");
    assert!(
        clone_dm
            .iter()
            .all(|d| !d.starts_with(&format!("{}-", lvmgold::VG))),
        "a clone's LV under the live VG's name: {clone_dm:?}"
    );
    bed.assert_live_gold_intact("with both clones staged");
    for u in &ups {
        let m = mounts_under(&u.target);
        eprintln!("{}: mounts under its target: {m:?}", u.id);
        assert_eq!(m.len(), 4, "the whole tree at the target: {m:?}");
        assert_tree_is_the_gold(&u.target, &u.id);
    }

    // Writes through each target, on each filesystem: isolated.
    for u in &ups {
        for d in WRITE_DIRS {
            fs::write(u.target.join(d).join(marker(&u.id)), &u.id).unwrap();
        }
    }
    run("sync", &[]);
    for (u, other) in [(&ups[0], &ups[1]), (&ups[1], &ups[0])] {
        for d in WRITE_DIRS {
            assert_eq!(
                fs::read_to_string(u.target.join(d).join(marker(&u.id))).unwrap(),
                u.id,
                "{}: /{d}",
                u.id
            );
            assert!(
                !u.target.join(d).join(marker(&other.id)).exists(),
                "{}'s write is in {}'s /{d}",
                other.id,
                u.id
            );
            assert!(
                !bed.live_root.join(d).join(marker(&u.id)).exists(),
                "{}'s write reached the live gold's /{d}",
                u.id
            );
        }
    }
    bed.assert_live_gold_intact("after writes through both clones");

    // A read-only publication of the first volume: readable, writes EROFS.
    let a = &ups[0];
    let ro = bed.target(&a.id, "pod-readonly");
    for _ in 0..2 {
        csi.call(node.node_publish_volume(publish_req(&a.id, &a.staging, &ro, true)))
            .unwrap_or_else(|s| panic!("read-only NodePublishVolume {}: {s:?}", a.id));
    }
    assert_eq!(
        fs::read_to_string(ro.join("etc/fstab")).unwrap(),
        lvmgold::fstab()
    );
    for d in WRITE_DIRS {
        assert_eq!(
            fs::read_to_string(ro.join(d).join(marker(&a.id))).unwrap(),
            a.id,
            "the read-only publication shows the staged tree's /{d}"
        );
        let e = fs::write(ro.join(d).join("ro-probe"), "x")
            .expect_err("a write under a read-only publication");
        assert_eq!(
            e.raw_os_error(),
            Some(EROFS),
            "write under {}/{d}: {e}",
            ro.display()
        );
    }
    for _ in 0..2 {
        csi.call(node.node_unpublish_volume(unpublish_req(&a.id, &ro)))
            .unwrap_or_else(|s| panic!("NodeUnpublishVolume read-only {}: {s:?}", a.id));
    }
    assert_eq!(mounts_under(&ro), Vec::<String>::new());
    assert_tree_is_the_gold(&a.target, "rw target after the read-only one went");

    // NodeGetVolumeStats on each target: live, not abnormal.
    for u in &ups {
        let st = csi
            .call(node.node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: u.id.clone(),
                volume_path: u.target.display().to_string(),
                staging_target_path: u.staging.display().to_string(),
            }))
            .unwrap_or_else(|s| panic!("NodeGetVolumeStats {}: {s:?}", u.id))
            .into_inner();
        eprintln!("NodeGetVolumeStats {}: {st:?}", u.id);
        let cond = st.volume_condition.expect("a volume condition");
        assert!(!cond.abnormal, "{}: {}", u.id, cond.message);
        assert!(!st.usage.is_empty(), "{}: usage", u.id);
    }

    // Everything down, each call twice.
    for u in &ups {
        let t = Instant::now();
        for _ in 0..2 {
            csi.call(node.node_unpublish_volume(unpublish_req(&u.id, &u.target)))
                .unwrap_or_else(|s| panic!("NodeUnpublishVolume {}: {s:?}", u.id));
        }
        assert_eq!(mounts_under(&u.target), Vec::<String>::new());
        for _ in 0..2 {
            csi.call(node.node_unstage_volume(unstage_req(&u.id, &u.staging)))
                .unwrap_or_else(|s| panic!("NodeUnstageVolume {}: {s:?}", u.id));
        }
        eprintln!(
            "TIMING NodeUnpublish + NodeUnstage {} (x2 each): {} ms; after it: disk {:?}, session {}",
            u.id,
            ms(t.elapsed()),
            disk_with_wwid(&u.wwn),
            has_session(APPLIANCE_IQN)
        );
        assert_eq!(mounts_under(&u.staging), Vec::<String>::new());
        let t = Instant::now();
        for _ in 0..2 {
            csi.call(ctrl.controller_unpublish_volume(cunpub_req(&u.id)))
                .unwrap_or_else(|s| panic!("ControllerUnpublishVolume {}: {s:?}", u.id));
        }
        for _ in 0..2 {
            csi.call(ctrl.delete_volume(delete_req(&u.id)))
                .unwrap_or_else(|s| panic!("DeleteVolume {}: {s:?}", u.id));
        }
        eprintln!(
            "TIMING ControllerUnpublish + DeleteVolume {} (x2 each): {} ms",
            u.id,
            ms(t.elapsed())
        );
    }
    for u in &ups {
        for d in WRITE_DIRS {
            assert!(!bed.live_root.join(d).join(marker(&u.id)).exists());
        }
    }
    let wwns: Vec<String> = ups.iter().map(|u| u.wwn.clone()).collect();
    bed.assert_nothing_left(&wwns, &clone_dm);
    bed.finish();
    eprintln!("TIMING scenario total: {} ms", ms(t_all.elapsed()));
}

// ---------------------------------------------------------------- scenario 2

const ROUNDS: usize = 3;
const CONCURRENT: usize = 8;

/// Per-call times of one volume brought up.
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

/// Where a volume is staged and published (what kubelet would choose).
#[derive(Clone)]
struct Paths {
    csi_dir: PathBuf,
}

impl Paths {
    fn staging(&self, vol: &str) -> PathBuf {
        self.csi_dir.join("kubelet/staging").join(vol)
    }
    fn target(&self, vol: &str) -> PathBuf {
        self.csi_dir
            .join("kubelet/pods/bench")
            .join(vol)
            .join("mount")
    }
}

/// A volume brought up: its id, its WWN, its call times; or which call
/// failed and how.
type UpResult = Result<(String, String, Stages), String>;

/// CreateVolume → ControllerPublish → NodeStage → NodePublish, timed per
/// call; `Err` names the call that failed and its status.
async fn up(
    mut ctrl: ControllerClient<Channel>,
    mut node: NodeClient<Channel>,
    paths: Paths,
    name: String,
) -> UpResult {
    let mut s = Stages::default();
    let t = Instant::now();
    let v = ctrl
        .create_volume(create_req(&name))
        .await
        .map_err(|e| format!("CreateVolume {name}: {e:?}"))?
        .into_inner()
        .volume
        .ok_or_else(|| format!("CreateVolume {name}: no volume"))?;
    s.create = t.elapsed();
    let id = v.volume_id.clone();
    let t = Instant::now();
    let ctx = ctrl
        .controller_publish_volume(cpub_req(&id))
        .await
        .map_err(|e| format!("ControllerPublishVolume {id}: {e:?}"))?
        .into_inner()
        .publish_context;
    s.cpublish = t.elapsed();
    let wwn = ctx.get("wwn").cloned().unwrap_or_default();
    let staging = paths.staging(&id);
    let target = paths.target(&id);
    let t = Instant::now();
    node.node_stage_volume(stage_req(&id, &staging, &ctx, &v.volume_context))
        .await
        .map_err(|e| format!("NodeStageVolume {id}: {e:?}"))?;
    s.stage = t.elapsed();
    let t = Instant::now();
    node.node_publish_volume(publish_req(&id, &staging, &target, false))
        .await
        .map_err(|e| format!("NodePublishVolume {id}: {e:?}"))?;
    s.publish = t.elapsed();
    Ok((id, wwn, s))
}

/// NodeUnpublish → NodeUnstage → ControllerUnpublish → DeleteVolume.
async fn down(
    mut ctrl: ControllerClient<Channel>,
    mut node: NodeClient<Channel>,
    paths: Paths,
    id: String,
) -> Result<Duration, String> {
    let t = Instant::now();
    node.node_unpublish_volume(unpublish_req(&id, &paths.target(&id)))
        .await
        .map_err(|e| format!("NodeUnpublishVolume {id}: {e:?}"))?;
    node.node_unstage_volume(unstage_req(&id, &paths.staging(&id)))
        .await
        .map_err(|e| format!("NodeUnstageVolume {id}: {e:?}"))?;
    ctrl.controller_unpublish_volume(cunpub_req(&id))
        .await
        .map_err(|e| format!("ControllerUnpublishVolume {id}: {e:?}"))?;
    ctrl.delete_volume(delete_req(&id))
        .await
        .map_err(|e| format!("DeleteVolume {id}: {e:?}"))?;
    Ok(t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn runs(v: &[Duration]) -> String {
    v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(" ; ")
}

/// Points the appliance helper at the release build (`cargo xtask lab
/// --bench` sets `GOLDMOUNT_APPLIANCE_RELEASE_BIN`). The driver and its
/// engine run in this (debug) test binary.
fn use_release_appliance() {
    let bin = std::env::var("GOLDMOUNT_APPLIANCE_RELEASE_BIN")
        .expect("GOLDMOUNT_APPLIANCE_RELEASE_BIN unset: run with `cargo xtask lab --bench`");
    assert!(bin.contains("/release/"), "{bin} is not a release build");
    std::env::set_var("GOLDMOUNT_APPLIANCE_BIN", bin);
}

/// Benchmark: CreateVolume → ControllerPublishVolume → NodeStageVolume →
/// NodePublishVolume over LIO iSCSI and the LVM gold, beside the live
/// gold, each call timed: one warm-up round (cold caches, not counted),
/// then the median of `ROUNDS` rounds, each torn down completely before
/// the next; then `CONCURRENT` volumes through the same calls at once on
/// this node — all must succeed — against `CONCURRENT` × the single time.
/// Figures as `BENCH` lines in the scenario log.
#[test]
#[ignore = "needs the lab kernel"]
fn csi_bench_create_to_publish_lvm_gold() {
    let scratch = require_lab();
    use_release_appliance();
    let t_all = Instant::now();
    let bed = Bed::setup(&scratch);
    let csi = &bed.csi;
    let paths = Paths {
        csi_dir: bed.csi_dir.clone(),
    };
    let mut wwns_seen = vec![];
    let mut dm_seen = vec![];

    let mut rounds: Vec<Stages> = vec![];
    let mut downs: Vec<Duration> = vec![];
    for i in 0..=ROUNDS {
        let (id, wwn, s) = csi
            .call(up(
                csi.ctrl.clone(),
                csi.node.clone(),
                paths.clone(),
                format!("pvc-seq-{i}"),
            ))
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        assert_tree_is_the_gold(&paths.target(&id), &id);
        dm_seen.extend(clone_dm(&bed));
        wwns_seen.push(wwn);
        let d = csi
            .call(down(csi.ctrl.clone(), csi.node.clone(), paths.clone(), id))
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        eprintln!(
            "BENCH round {i}{}: CreateVolume {} s, ControllerPublish {} s, NodeStage {} s, NodePublish {} s, total {} s; teardown {} s",
            if i == 0 { " (warm-up, not in the medians)" } else { "" },
            secs(s.create),
            secs(s.cpublish),
            secs(s.stage),
            secs(s.publish),
            secs(s.total()),
            secs(d)
        );
        assert!(
            !has_session(APPLIANCE_IQN) && clone_dm(&bed).is_empty(),
            "round {i} left a session or dm devices"
        );
        if i > 0 {
            rounds.push(s);
            downs.push(d);
        }
    }
    let col = |f: fn(&Stages) -> Duration| -> Vec<Duration> { rounds.iter().map(f).collect() };
    eprintln!("BENCH | CSI call (LVM gold over LIO iSCSI) | runs (s) | median s |");
    for (label, v) in [
        ("CreateVolume", col(|s| s.create)),
        ("ControllerPublishVolume", col(|s| s.cpublish)),
        ("NodeStageVolume", col(|s| s.stage)),
        ("NodePublishVolume", col(|s| s.publish)),
        ("total CreateVolume → NodePublishVolume", col(Stages::total)),
        ("teardown NodeUnpublish → DeleteVolume", downs.clone()),
    ] {
        eprintln!(
            "BENCH | {label} | {} | {} |",
            runs(&v),
            secs(median(v.clone()))
        );
    }
    let single = median(col(Stages::total));

    // CONCURRENT at once, each with its own connections.
    let t = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let ctrl = csi.ctrl.clone();
            let node = csi.node.clone();
            let p = paths.clone();
            csi.rt.spawn(async move {
                let t = Instant::now();
                let r = up(ctrl, node, p, format!("pvc-par-{i}")).await;
                (r, t.elapsed())
            })
        })
        .collect();
    let results: Vec<(UpResult, Duration)> =
        tasks.into_iter().map(|h| csi.call(h).unwrap()).collect();
    let total = t.elapsed();
    let mut ids = vec![];
    let mut each = vec![];
    let mut failures = vec![];
    for (i, (r, e)) in results.into_iter().enumerate() {
        match r {
            Ok((id, wwn, s)) => {
                eprintln!(
                    "BENCH concurrent c{i}: {id} ready in {} s (CreateVolume {}, ControllerPublish {}, NodeStage {}, NodePublish {})",
                    secs(e),
                    secs(s.create),
                    secs(s.cpublish),
                    secs(s.stage),
                    secs(s.publish)
                );
                wwns_seen.push(wwn);
                ids.push(id);
                each.push(e);
            }
            Err(msg) => {
                eprintln!("BENCH concurrent c{i}: FAILED after {} s: {msg}", secs(e));
                failures.push(msg);
            }
        }
    }
    eprintln!(
        "BENCH | {CONCURRENT} concurrent | ok {}/{CONCURRENT} | total {} s | median per volume {} s | max {} s | single {} s | total / ({CONCURRENT} x single) = {:.2} |",
        ids.len(),
        secs(total),
        secs(median(if each.is_empty() { vec![Duration::ZERO] } else { each.clone() })),
        secs(each.iter().copied().max().unwrap_or_default()),
        secs(single),
        total.as_secs_f64() / (CONCURRENT as f64 * single.as_secs_f64())
    );
    // All up at once beside the live gold, each its own clone's tree.
    let dm_all = clone_dm(&bed);
    eprintln!(
        "BENCH {} volumes up at once: {} dm devices of clones, {} LIO disks, live gold mounts {}",
        ids.len(),
        dm_all.len(),
        lio_disks().len(),
        mounts_under(&bed.live_root).len()
    );
    dm_seen.extend(dm_all);
    for id in &ids {
        assert_tree_is_the_gold(&paths.target(id), id);
    }
    bed.assert_live_gold_intact(&format!("with {} clones published", ids.len()));

    let t = Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            csi.rt.spawn(down(
                csi.ctrl.clone(),
                csi.node.clone(),
                paths.clone(),
                id.clone(),
            ))
        })
        .collect();
    let mut down_failures = vec![];
    for h in tasks {
        if let Err(e) = csi.call(h).unwrap() {
            eprintln!("BENCH concurrent teardown FAILED: {e}");
            down_failures.push(e);
        }
    }
    eprintln!(
        "BENCH {} concurrent teardowns (NodeUnpublish → DeleteVolume): {} s",
        ids.len(),
        secs(t.elapsed())
    );
    assert!(
        failures.is_empty(),
        "{} of {CONCURRENT} concurrent volumes failed: {failures:#?}",
        failures.len()
    );
    assert!(down_failures.is_empty(), "{down_failures:#?}");
    dm_seen.sort();
    dm_seen.dedup();
    bed.assert_nothing_left(&wwns_seen, &dm_seen);
    bed.finish();
    eprintln!("TIMING scenario total: {} ms", ms(t_all.elapsed()));
}
