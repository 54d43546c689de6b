//! Issue 11 in the lab guest — the Docker volume plugin over iSCSI + LVM,
//! beside the live gold: the production host's disk (the three-filesystem
//! LVM gold of `goldmount_tests::lvmgold`) is a LIO disk of this guest with
//! `vg_gold` active and its whole fstab tree mounted, as on the original
//! host; the reference appliance (iSCSI backend on LIO) holds a gold copy
//! of it; goldmountd serves the Docker plugin (`[docker]`); a private
//! dockerd runs two containers at once on two clones of that gold, which
//! carry the same VG name, PV/VG UUIDs, XFS UUID and ext4 label as the live
//! disk. Run with `cargo xtask lab lab_docker`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance::client::Client;
use appliance::model::{ImportGold, PutHost};
use connector::engine::{Engine, VolumeName};
use goldmount_tests::dockerd::{mounts_under, Dockerd};
use goldmount_tests::lab::*;
use goldmount_tests::livegold::{
    assert_tree_is_the_gold, dm_deps, dm_names, has_session, token_file_beside, ApplianceCleanup,
    LiveGold, ProdTarget, PORTAL,
};
use goldmount_tests::lvmgold;

const APPLIANCE_LISTEN: &str = "127.0.0.1:8491";
const CONNECTOR_LISTEN: &str = "127.0.0.1:8492";
/// The appliance's target.
const APPLIANCE_IQN: &str = "iqn.2026-12.io.goldmount.lab:docker";
/// The production storage's target, which exports the live gold's disk.
const PROD_IQN: &str = "iqn.2026-12.io.goldmount.lab:prodhost";
const PROD: ProdTarget = ProdTarget {
    iqn: PROD_IQN,
    backstore: "labdocker_prod",
    serial: "5d0c4e2a-7b61-4f3e-9a10-2c3b4d5e6f70",
};
const GOLD: &str = "pg-gold";
const HOST: &str = "labhost";
const DRIVER: &str = "gmlab";
const IMAGE: &str = "gm-busybox:lab";
/// Directories of the tree where each container writes a file: one per
/// filesystem of the clone (root XFS, /boot, /home, /srv/data).
const WRITE_DIRS: &[&str] = &["", "boot", "home", "srv/data"];

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn require_tools() {
    for (tool, pkg) in [
        ("/usr/sbin/dockerd", "docker.io"),
        ("/usr/bin/docker", "docker.io"),
        ("/usr/bin/containerd", "docker.io"),
        ("/bin/busybox", "busybox-static"),
        ("/usr/sbin/sgdisk", "gdisk"),
    ] {
        let found = Path::new(tool).exists()
            || Path::new("/usr/local/bin")
                .join(Path::new(tool).file_name().unwrap())
                .exists();
        assert!(found, "{tool} is missing: apt-get install {pkg}");
    }
}

/// What the gold's files are, in the order [`CAT_GOLD`] prints them.
fn gold_bytes() -> Vec<u8> {
    let mut all = lvmgold::fstab().into_bytes();
    for (_, data) in lvmgold::files() {
        all.extend(data);
    }
    all
}

/// A shell command printing the fstab and every gold file under `/data`.
fn cat_gold() -> String {
    let mut cmd = String::from("cat /data/etc/fstab");
    for (rel, _) in lvmgold::files() {
        cmd.push_str(&format!(" /data/{rel}"));
    }
    cmd
}

/// Where two byte strings first differ, as a readable message naming the
/// gold file at that offset.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mut off = lvmgold::fstab().len();
    let mut which = "etc/fstab".to_string();
    for (rel, data) in lvmgold::files() {
        if at < off {
            break;
        }
        which = rel.to_string();
        off += data.len();
    }
    format!(
        "{} bytes read, {} expected; first difference at byte {at} (in {which})",
        got.len(),
        want.len()
    )
}

/// The file container `c` writes in `dir` of its tree.
fn marker(c: &str) -> String {
    format!("written-by-{c}")
}

// ---------------------------------------------------------------- goldmountd

/// `goldmountd --config FILE serve` (binary from `GOLDMOUNTD_BIN`). On drop:
/// SIGTERM (SIGKILL after 30 s), its plugin socket removed, and whatever
/// engine volume a failed run left is force-unmounted through the engine
/// itself (same state files), so the clones' devices leave this host.
struct Goldmountd {
    child: Option<Child>,
    log: PathBuf,
    engine: connector::config::Config,
    plugin_socket: PathBuf,
}

impl Goldmountd {
    fn start(
        config: &Path,
        log: &Path,
        engine: connector::config::Config,
        plugin_socket: &Path,
    ) -> Self {
        let bin = std::env::var("GOLDMOUNTD_BIN").expect("GOLDMOUNTD_BIN (set by cargo xtask lab)");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(&bin)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("GOLDMOUNT_LOG", "debug,ureq=info,rustls=info")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let mut me = Goldmountd {
            child: Some(child),
            log: log.to_path_buf(),
            engine,
            plugin_socket: plugin_socket.to_path_buf(),
        };
        wait_until(
            "goldmountd's plugin socket",
            Duration::from_secs(90),
            || {
                if let Some(Ok(Some(st))) = me.child.as_mut().map(|c| c.try_wait()) {
                    panic!(
                        "goldmountd exited early ({st}); log:\n{}",
                        fs::read_to_string(&me.log).unwrap_or_default()
                    );
                }
                UnixStream::connect(&me.plugin_socket).ok().map(|_| ())
            },
        );
        me
    }
}

impl Drop for Goldmountd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    eprintln!("goldmountd did not stop in 30 s: SIGKILL");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = fs::remove_file(&self.plugin_socket);
        match Engine::open(self.engine.clone()) {
            Ok(e) => {
                for v in e.list().unwrap_or_default() {
                    eprintln!("goldmountd teardown: force-unmounting {}", v.volume);
                    match VolumeName::parse(&v.volume) {
                        Ok(n) => {
                            if let Err(err) = e.unmount(&n, true) {
                                eprintln!("goldmountd teardown: {}: {err}", v.volume);
                            }
                        }
                        Err(err) => eprintln!("goldmountd teardown: {}: {}", v.volume, err.message),
                    }
                }
            }
            Err(e) => eprintln!("goldmountd teardown: opening the engine: {e}"),
        }
        eprintln!(
            "----- goldmountd log ({}) -----\n{}",
            self.log.display(),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// `GET path` on goldmountd's control API over its Unix socket (root only,
/// no TLS): the JSON body, or `None` while it does not answer.
fn control_get(sock: &Path, path: &str) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

// ---------------------------------------------------------------- Docker

/// The scenario's containers and volumes, removed through the engine and
/// the plugin on drop (before dockerd and goldmountd stop), so a failed
/// run gives the plugin its Unmount and Remove calls.
struct DockerObjects<'a> {
    docker: &'a Dockerd,
    containers: &'static [&'static str],
    volumes: &'static [&'static str],
}

impl Drop for DockerObjects<'_> {
    fn drop(&mut self) {
        for c in self.containers {
            let _ = self.docker.docker(&["rm", "-f", c]);
        }
        for v in self.volumes {
            let out = self.docker.docker(&["volume", "rm", "-f", v]);
            if !out.status.success() {
                eprintln!(
                    "docker teardown: volume rm {v}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// `docker exec c sh -c script`: stdout bytes; panics with stderr on failure.
fn exec(docker: &Dockerd, c: &str, script: &str) -> Vec<u8> {
    let t0 = Instant::now();
    let out = docker.docker(&["exec", c, "sh", "-c", script]);
    eprintln!(
        "$ docker exec {c} sh -c {script:?} -> {} in {:.2} s",
        out.status,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "docker exec {c} {script:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Scenario: the live gold (vg_gold active, its fstab tree mounted) stays
/// as it is while `docker volume create -d gmlab -o source=pg-gold pg1` and
/// an implicit create of pg2 by `docker run --mount …,volume-opt=source=…`
/// give two containers, running at the same time, each a clone's whole
/// fstab tree at /data: each reads the gold's files on all four
/// filesystems, writes one file on each, and neither the other container,
/// nor the other clone's tree on the host, nor the live gold sees it. The
/// clones' VGs are active under new names beside vg_gold, whose LVs keep
/// their devices. `docker rm -f` and `docker volume rm` then leave nothing
/// of the clones in the guest (mounts, dm and SCSI devices, the session
/// goldmount opened) nor on the appliance, and the live gold is still
/// mounted and intact.
#[test]
#[ignore = "needs the lab kernel"]
fn docker_two_containers_on_two_lvm_clones_beside_the_live_gold() {
    let scratch = require_lab();
    require_tools();
    std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
    run("modprobe", &["overlay"]);
    let t_all = Instant::now();
    let dm_before = dm_names();
    let lio_before = lio_disks();
    let xfs = ReflinkXfs::create(&scratch, 1024);
    let initiator = initiator_iqn();
    // Socket paths stay under 108 bytes: a short directory on /mnt's tmpfs.
    let short = PathBuf::from(format!("/mnt/gmlab.{}", std::process::id()));
    fs::create_dir_all(&short).unwrap();

    // The production host: its disk on the production target, the gold
    // built on that disk through the kernel's SCSI and LVM.
    let t = Instant::now();
    let img = xfs.mnt.join("prod.img");
    lvmgold::partition_image(&img);
    let live_root = scratch.join("live");
    let mut live = LiveGold::new(PROD, &img, &initiator, &live_root);
    let disk = live.attach();
    lvmgold::fill(&disk, &scratch);
    run("blockdev", &["--flushbufs", disk.to_str().unwrap()]);
    eprintln!(
        "TIMING live gold disk built on {}: {} ms",
        disk.display(),
        ms(t.elapsed())
    );

    // The appliance (iSCSI on LIO) takes its gold copy of that disk while
    // nothing has it mounted.
    let pki = scratch.join("pki");
    eprintln!(
        "{}",
        run(
            &std::env::var("GOLDMOUNT_BIN").expect("GOLDMOUNT_BIN (set by cargo xtask lab)"),
            &["certs", "init", pki.to_str().unwrap()],
        )
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
            "--client-cert",
            pki.join("client.pem").to_str().unwrap(),
            "--client-key",
            pki.join("client-key.pem").to_str().unwrap(),
            "--lun-wait-secs",
            "20",
        ],
        &app_log,
    );
    let token_file = token_file_beside(&app_log);
    let token = fs::read_to_string(&token_file).unwrap();
    let client = Client::new(&app.base).with_token(token.trim());
    let _app_cleanup = ApplianceCleanup::new(client.clone(), APPLIANCE_IQN, &initiator, PROD);
    let ca = fs::read_to_string(pki.join("ca.pem")).unwrap();
    let callback = format!("https://{CONNECTOR_LISTEN}");
    client
        .put_host(
            HOST,
            &PutHost {
                name: None,
                iqns: vec![initiator.clone()],
                wwpns: vec![],
                callback_url: Some(callback.clone()),
                callback_ca_pem: Some(ca),
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
    let live_lvs = [
        format!("{}-home", lvmgold::VG),
        format!("{}-root", lvmgold::VG),
    ];
    for lv in &live_lvs {
        assert!(dm_live.contains(lv), "{lv} active: {dm_live:?}");
    }
    let live_deps: Vec<String> = live_lvs.iter().map(|lv| dm_deps(lv)).collect();
    let live_pv = live.pv();
    let pv_name = live_pv.file_name().unwrap().to_str().unwrap();
    for d in &live_deps {
        assert!(d.contains(&format!("({pv_name})")), "{d}");
    }
    let live_mounts = mounts_under(&live_root);
    assert_eq!(live_mounts.len(), 4, "{live_mounts:?}");

    // goldmountd with the plugin; registration names this host.
    let host_dir = scratch.join("host");
    fs::create_dir_all(&host_dir).unwrap();
    let control_sock = short.join("control.sock");
    let engine_cfg = connector::config::Config {
        volumes_root: host_dir.join("volumes"),
        state_path: host_dir.join("state/state.redb"),
        run_dir: host_dir.join("run"),
    };
    let mounts_root = host_dir.join("docker");
    let plugin_socket = PathBuf::from(format!("/run/docker/plugins/{DRIVER}.sock"));
    let config = scratch.join("goldmountd.toml");
    fs::write(
        &config,
        format!(
            "[control]\nlisten = \"{CONNECTOR_LISTEN}\"\ncert = \"{p}/server.pem\"\n\
             key = \"{p}/server-key.pem\"\nclient_ca = \"{p}/ca.pem\"\n\
             client_subject = \"goldmount-appliance\"\nunix_socket = \"{sock}\"\n\
             shutdown_grace_secs = 20\n\
             [engine]\nvolumes_root = \"{v}\"\nstate_path = \"{s}\"\nrun_dir = \"{r}\"\n\
             [appliance]\nurl = \"http://{APPLIANCE_LISTEN}\"\ntoken_file = \"{tok}\"\n\
             callback_url = \"{callback}\"\nserver_ca = \"{p}/ca.pem\"\n\
             [docker]\nname = \"{DRIVER}\"\nmounts_root = \"{mr}\"\nlun_wait_secs = 120\n\
             [log]\nlevel = \"info\"\n",
            p = pki.display(),
            sock = control_sock.display(),
            v = engine_cfg.volumes_root.display(),
            s = engine_cfg.state_path.display(),
            r = engine_cfg.run_dir.display(),
            tok = token_file.display(),
            mr = mounts_root.display(),
        ),
    )
    .unwrap();
    let t = Instant::now();
    let daemon = Goldmountd::start(
        &config,
        &scratch.join("goldmountd.log"),
        engine_cfg.clone(),
        &plugin_socket,
    );
    let reg = wait_until(
        "goldmountd registered as labhost",
        Duration::from_secs(120),
        || {
            let h = control_get(&control_sock, "/healthz")?;
            (h["registration"]["host"] == HOST).then_some(h)
        },
    );
    eprintln!(
        "TIMING goldmountd up and registered: {} ms; {}",
        ms(t.elapsed()),
        reg["registration"]
    );

    // A private dockerd on /mnt's tmpfs (not the overlaid /tmp). Started
    // only now: spawned during the gold build, its containerd missed
    // dockerd's start timeout under TCG.
    let t = Instant::now();
    let cgroup = format!("gm-lab-{}", std::process::id());
    let docker = Dockerd::start(&short.join("d"), &cgroup, Duration::from_secs(300), IMAGE);
    eprintln!("TIMING dockerd up: {} ms", ms(t.elapsed()));
    let objects = DockerObjects {
        docker: &docker,
        containers: &["c1", "c2"],
        volumes: &["pg1", "pg2"],
    };

    // pg1 by docker volume create, pg2 implicitly by docker run --mount.
    let t = Instant::now();
    docker.ok(&[
        "volume",
        "create",
        "-d",
        DRIVER,
        "-o",
        &format!("source={GOLD}"),
        "pg1",
    ]);
    eprintln!(
        "TIMING docker volume create pg1 (clone + present): {} ms",
        ms(t.elapsed())
    );
    let t = Instant::now();
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "-v",
        "pg1:/data:nocopy",
        IMAGE,
        "sleep",
        "3600",
    ]);
    eprintln!(
        "TIMING docker run c1 (login + scan + LVM import + 4 mounts + publish): {} ms",
        ms(t.elapsed())
    );
    let t = Instant::now();
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--mount",
        &format!(
            "type=volume,source=pg2,target=/data,volume-driver={DRIVER},\
             volume-opt=source={GOLD},volume-nocopy=true"
        ),
        IMAGE,
        "sleep",
        "3600",
    ]);
    eprintln!(
        "TIMING docker run c2 (implicit create + session shared + import + mounts): {} ms",
        ms(t.elapsed())
    );
    let running = docker.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    eprintln!("running:\n{running}");
    for c in ["c1", "c2"] {
        assert!(
            running.lines().any(|l| l.starts_with(&format!("{c} Up"))),
            "{c} is running: {running}"
        );
    }
    let listed = docker.ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    for v in ["pg1", "pg2"] {
        assert!(listed.contains(&format!("{DRIVER} {v}")), "{listed}");
    }
    eprintln!(
        "pg2: {}",
        docker.ok(&["volume", "inspect", "pg2", "--format", "{{json .Status}}"])
    );

    // On the appliance: two clones of the gold, presented to this host.
    let presentations = client.list_presentations().unwrap();
    assert_eq!(presentations.len(), 2, "{presentations:?}");
    let wwns: Vec<String> = presentations
        .iter()
        .map(|p| {
            assert_eq!(p.host, HOST, "{p:?}");
            let v = serde_json::to_value(p).unwrap();
            v["wwn"]
                .as_str()
                .expect("an iSCSI presentation")
                .to_string()
        })
        .collect();
    let clone_disks: Vec<String> = wwns
        .iter()
        .map(|w| disk_with_wwid(w).unwrap_or_else(|| panic!("a disk with wwid {w}")))
        .collect();
    eprintln!("clone disks: {clone_disks:?} ({wwns:?})");
    assert!(has_session(APPLIANCE_IQN), "goldmount logged in");
    let mut vols = engine_volumes(&control_sock);
    vols.sort();
    assert_eq!(vols, [format!("{DRIVER}-pg1"), format!("{DRIVER}-pg2")]);

    // Clone-safe LVM: the clones' VGs are active under new names, the live
    // VG keeps its name and its LVs their devices.
    let dm_now = dm_names();
    let clone_dm: Vec<&String> = dm_now.iter().filter(|d| !dm_live.contains(d)).collect();
    eprintln!("dm devices of the clones: {clone_dm:?}");
    assert!(clone_dm.len() >= 4, "two LVs per clone: {dm_now:?}");
    assert!(
        clone_dm
            .iter()
            .all(|d| !d.starts_with(&format!("{}-", lvmgold::VG))),
        "a clone's LV under the live VG's name: {clone_dm:?}"
    );
    for (lv, deps) in live_lvs.iter().zip(&live_deps) {
        assert_eq!(&dm_deps(lv), deps, "{lv} still on the live PV");
    }

    // Inside each container: the gold's files on all four filesystems of
    // its clone (root, /boot, /home, /srv/data submounts came along).
    // Each then writes one file on each filesystem (same exec).
    let want = gold_bytes();
    for c in ["c1", "c2"] {
        let m = marker(c);
        let writes = WRITE_DIRS
            .iter()
            .map(|d| format!("echo {c} > /data/{d}/{m}"))
            .collect::<Vec<_>>()
            .join(" && ");
        let got = exec(&docker, c, &format!("{} && {writes} && sync", cat_gold()));
        assert!(got == want, "{c}: {}", first_difference(&got, &want));
    }
    // Neither sees the other's files.
    for (c, other) in [("c1", "c2"), ("c2", "c1")] {
        let ls = exec(
            &docker,
            c,
            "for d in /data /data/boot /data/home /data/srv/data; do ls -1 $d; done",
        );
        let ls = String::from_utf8_lossy(&ls);
        let count = |name: &str| ls.lines().filter(|l| *l == name).count();
        assert_eq!(
            count(&marker(c)),
            WRITE_DIRS.len(),
            "{c} sees its own files: {ls}"
        );
        assert_eq!(count(&marker(other)), 0, "{c} sees {other}'s files: {ls}");
    }
    // On the host: each clone's published tree has only its container's
    // files; the live gold has none and is unchanged.
    for (v, c, other) in [("pg1", "c1", "c2"), ("pg2", "c2", "c1")] {
        let tree = mounts_root.join(v);
        for d in WRITE_DIRS {
            assert_eq!(
                fs::read_to_string(tree.join(d).join(marker(c))).unwrap(),
                format!("{c}\n"),
                "{v}: /{d}"
            );
            assert!(!tree.join(d).join(marker(other)).exists(), "{v}: /{d}");
        }
    }
    for d in WRITE_DIRS {
        for c in ["c1", "c2"] {
            assert!(
                !live_root.join(d).join(marker(c)).exists(),
                "{c}'s write reached the live gold's /{d}"
            );
        }
    }
    assert_tree_is_the_gold(&live_root, "live gold with both clones mounted");

    // Containers stop: the plugin's Unmount takes each tree down.
    let t = Instant::now();
    docker.ok(&["rm", "-f", "c1", "c2"]);
    eprintln!(
        "TIMING docker rm -f c1 c2 (2 x Unmount): {} ms",
        ms(t.elapsed())
    );
    assert_eq!(mounts_under(&mounts_root), Vec::<String>::new());
    assert_eq!(mounts_under(&engine_cfg.volumes_root), Vec::<String>::new());
    eprintln!(
        "after the containers: clone disks {:?}, session {}",
        wwns.iter().map(|w| disk_with_wwid(w)).collect::<Vec<_>>(),
        has_session(APPLIANCE_IQN)
    );
    let t = Instant::now();
    docker.ok(&["volume", "rm", "pg1", "pg2"]);
    eprintln!(
        "TIMING docker volume rm pg1 pg2 (unpresent + delete clone): {} ms",
        ms(t.elapsed())
    );

    // Nothing of the clones is left in the guest or on the appliance.
    let listed = docker.ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("driver={DRIVER}"),
    ]);
    assert_eq!(listed.trim(), "", "docker volumes left");
    assert_eq!(mounts_under(&mounts_root), Vec::<String>::new());
    assert_eq!(mounts_under(&engine_cfg.volumes_root), Vec::<String>::new());
    assert_eq!(dm_names(), dm_live, "dm devices of the clones left");
    for (w, d) in wwns.iter().zip(&clone_disks) {
        assert!(disk_with_wwid(w).is_none(), "{w} left behind");
        assert!(!Path::new("/sys/block").join(d).exists(), "{d} left behind");
    }
    let live_disk = disk.file_name().unwrap().to_string_lossy().into_owned();
    let lio_now: Vec<String> = lio_disks().into_iter().map(|(d, _)| d).collect();
    let mut lio_want: Vec<String> = lio_before.iter().map(|(d, _)| d.clone()).collect();
    lio_want.push(live_disk.clone());
    lio_want.sort();
    assert_eq!(lio_now, lio_want, "SCSI disks other than the live gold's");
    assert!(
        !has_session(APPLIANCE_IQN),
        "goldmount logged out of the session it opened"
    );
    assert!(has_session(PROD_IQN), "the live gold's session stays");
    assert_eq!(client.list_presentations().unwrap(), vec![]);
    assert_eq!(
        client
            .list_clones()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    assert_eq!(engine_volumes(&control_sock), Vec::<String>::new());

    // The live gold: still mounted, still on its PV, intact.
    assert_eq!(mounts_under(&live_root), live_mounts);
    for (lv, deps) in live_lvs.iter().zip(&live_deps) {
        assert_eq!(&dm_deps(lv), deps, "{lv}");
    }
    assert_tree_is_the_gold(&live_root, "live gold after docker volume rm");
    for d in WRITE_DIRS {
        for c in ["c1", "c2"] {
            assert!(!live_root.join(d).join(marker(c)).exists());
        }
    }

    // Teardown in order, then the guest is as before.
    drop(objects);
    drop(docker);
    drop(daemon);
    drop(_app_cleanup);
    drop(app);
    drop(live);
    assert_eq!(dm_names(), dm_before, "dm devices left");
    assert_eq!(lio_disks(), lio_before, "SCSI disks left");
    assert!(!has_session(PROD_IQN));
    let _ = fs::remove_dir_all(&short);
    drop(xfs);
    eprintln!("TIMING scenario total: {} ms", ms(t_all.elapsed()));
}

/// The engine's volumes, as goldmountd's control API lists them
/// (`GET /v1/volumes` on its Unix socket).
fn engine_volumes(sock: &Path) -> Vec<String> {
    let v = control_get(sock, "/v1/volumes").expect("GET /v1/volumes on the control socket");
    v.as_array()
        .unwrap_or_else(|| panic!("GET /v1/volumes: expected an array, got {v}"))
        .iter()
        .map(|x| x["volume"].as_str().unwrap_or_default().to_string())
        .collect()
}
