//! Lab scenarios for issue 4 (iSCSI attach, multipath, the rescan
//! benchmark): the `iscsi` crate and the executor library against the
//! appliance's LIO target inside the lab guest. Run with
//! `cargo xtask lab lab_iscsi` (one test process per scenario, as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use appliance::lio::{Lio, LioConfig};
use executor::rescan::ScanTarget;
use executor::wait::{self, MultipathPolicy, WaitSpec};
use executor::Root;
use goldmount_tests::lab::*;
use iscsi::adm::{self, LogoutOutcome};
use iscsi::initiator::{configured_iqn, InitiatorIdentity, INITIATOR_FILE};
use iscsi::sysfs::Sysfs;
use iscsi::{inventory, usr, IscsiError, Portal, Source};

const P1: &str = "127.0.0.1:3260";
const P2: &str = "127.0.0.2:3260";
const IMG: u64 = 16 << 20;
const WAIT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn portal(s: &str) -> Portal {
    s.parse().unwrap()
}

/// Logs out of and wipes the appliance's target even when a scenario panics.
struct Teardown {
    target: String,
    portals: Vec<&'static str>,
    initiator: String,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        for p in &self.portals {
            logout(&self.target, p);
        }
        let lio = Lio::new(LioConfig::new(
            &self.target,
            self.portals.iter().map(|p| p.parse().unwrap()).collect(),
        ));
        wipe_lio(&lio, std::slice::from_ref(&self.initiator));
    }
}

/// An appliance (iscsi backend) with a registered host `labhost` = this guest.
fn appliance(
    scratch: &Path,
    xfs: &ReflinkXfs,
    target: &str,
    portals: &[&'static str],
    listen: &str,
) -> (ApplianceProc, Teardown) {
    let data = xfs.mnt.join("data");
    let mut args = vec![
        "--backend".to_string(),
        "iscsi".into(),
        "--data-dir".into(),
        data.to_string_lossy().into_owned(),
        "--import-from".into(),
        xfs.mnt.to_string_lossy().into_owned(),
        "--target-iqn".into(),
        target.into(),
    ];
    for p in portals {
        args.push("--portal".into());
        args.push(p.to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    // Pull the (large, debug) binary through 9p into the guest's page cache
    // first: under TCG on a loaded host its first exec can outlast the
    // helper's 60 s /healthz wait.
    if let Some(bin) = std::env::var_os("GOLDMOUNT_APPLIANCE_BIN") {
        let _ = fs::read(bin);
    }
    let app = ApplianceProc::start(listen, &argv, &scratch.join("appliance.log"));
    let initiator = initiator_iqn();
    app.post(
        "/v1/hosts",
        serde_json::json!({"name": "labhost", "iqns": [initiator]}),
    );
    let td = Teardown {
        target: target.into(),
        portals: portals.to_vec(),
        initiator,
    };
    (app, td)
}

/// Imports gold `name` (pattern-filled, so content identifies it).
fn gold(app: &ApplianceProc, xfs: &ReflinkXfs, name: &str) {
    let src = xfs.mnt.join(format!("{name}.src"));
    write_pattern(&src, IMG, &format!("GOLD-{name}"));
    app.post(
        "/v1/gold-copies",
        serde_json::json!({"name": name, "source": src}),
    );
}

/// A presented clone: (lun, wwn, serial, file).
struct Lun {
    lun: u64,
    wwn: String,
    serial: String,
    file: PathBuf,
}

fn present(app: &ApplianceProc, clone: &str, gold: &str) -> Lun {
    let c = app.post(
        "/v1/clones",
        serde_json::json!({"name": clone, "gold": gold}),
    );
    let p = app.post(
        "/v1/presentations",
        serde_json::json!({"clone": clone, "host": "labhost"}),
    );
    Lun {
        lun: p["lun"].as_u64().unwrap(),
        wwn: p["wwn"].as_str().unwrap().to_string(),
        serial: c["unit_serial"].as_str().unwrap().to_string(),
        file: PathBuf::from(c["file"].as_str().unwrap()),
    }
}

fn session_for(target: &str, p: &str) -> u32 {
    let want = portal(p);
    let (all, _) = inventory::sessions().unwrap();
    all.iter()
        .find(|s| s.target_iqn == target && s.portal == want)
        .unwrap_or_else(|| panic!("no session to {target} at {p}: {all:?}"))
        .sid
}

fn spec(l: &Lun, location: Option<ScanTarget>, mp: MultipathPolicy) -> WaitSpec {
    WaitSpec {
        wwid: l.wwn.clone(),
        serial: Some(l.serial.clone()),
        location,
        timeout: WAIT,
        multipath: mp,
    }
}

/// A process holding `dev` open (as a tool reading the disk would).
fn hold_open(dev: &Path) -> Child {
    Command::new("sleep")
        .arg("600")
        .stdin(fs::File::open(dev).unwrap())
        .spawn()
        .unwrap()
}

/// Where the guest may write files the host keeps (the lab's `--rwdir`):
/// `GOLDMOUNT_LAB_RESULTS` when set, else the workspace's `target/lab`.
fn results_dir() -> PathBuf {
    std::env::var_os("GOLDMOUNT_LAB_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/lab"))
}

/// Copies the sysfs pieces the `iscsi` crate's readers use for session
/// `sid` (class symlinks verbatim, the attributes of what they point to)
/// under `dest`, as a fixture for host-side unit tests.
fn capture_session_fixture(sid: u32, host: u32, disks: &[String], dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    let mut links: Vec<(String, &[&str])> = vec![
        (
            format!("/sys/class/iscsi_session/session{sid}"),
            &[
                "targetname",
                "tpgt",
                "ifacename",
                "initiatorname",
                "state",
                "target_id",
            ],
        ),
        (
            format!("/sys/class/iscsi_connection/connection{sid}:0"),
            &["address", "port", "persistent_address", "persistent_port"],
        ),
        (format!("/sys/class/scsi_host/host{host}"), &["proc_name"]),
        (
            format!("/sys/class/iscsi_host/host{host}"),
            &["initiatorname"],
        ),
    ];
    for d in disks {
        links.push((format!("/sys/block/{d}"), &["dev", "size"]));
    }
    for (link, attrs) in links {
        let rel = fs::read_link(&link).unwrap();
        let at = dest.join(link.trim_start_matches('/'));
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&rel, &at).unwrap();
        let real = fs::canonicalize(&link).unwrap();
        let real_dest = dest.join(real.strip_prefix("/").unwrap());
        fs::create_dir_all(&real_dest).unwrap();
        for a in attrs.iter() {
            if let Ok(v) = fs::read_to_string(real.join(a)) {
                fs::write(real_dest.join(a), v).unwrap();
            }
        }
    }
    fs::write(
        dest.join("CAPTURED"),
        format!(
            "Captured in the lab guest by `cargo xtask lab lab_iscsi::targeted_scan` \
             (tests/tests/lab_iscsi.rs, capture_session_fixture) from a live open-iscsi \
             session {sid} to the appliance's LIO target; only the attributes the iscsi \
             crate reads are kept.\n"
        ),
    )
    .unwrap();
}

/// Login with manual scan creates no disk; a targeted scan of one LUN of
/// three brings exactly that LUN; libopeniscsiusr and sysfs agree on the
/// live session; the initiator name agrees with the session's; logout is
/// refused while the disk is open or mounted, and works after the executor
/// removed the disk.
#[test]
#[ignore = "needs the lab kernel"]
fn targeted_scan_only_presented_lun_lib_agrees_logout_guarded() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-a";
    let (app, _td) = appliance(&scratch, &xfs, target, &[P1], "127.0.0.1:8471");
    gold(&app, &xfs, "g");
    let luns: Vec<Lun> = ["c0", "c1", "c2"]
        .iter()
        .map(|c| present(&app, c, "g"))
        .collect();
    let pick = &luns[1];

    let found = adm::discover(&portal(P1), None, T).unwrap();
    assert!(
        found
            .iter()
            .any(|d| d.target_iqn == target && d.portal == portal(P1)),
        "{found:?}"
    );
    let before = lio_disks();
    let rep = adm::login(target, &[portal(P1)], None, T).unwrap();
    assert_eq!(rep.logged_in, vec![portal(P1)]);
    let again = adm::login(target, &[portal(P1)], None, T).unwrap();
    assert_eq!(
        again.already,
        vec![portal(P1)],
        "second login must be a no-op"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lio_disks(),
        before,
        "login with node.session.scan=manual created disks"
    );

    // Library vs sysfs on the same live session.
    assert!(
        usr::available(),
        "libopeniscsiusr.so.0 must load in the guest"
    );
    let lib = usr::sessions().unwrap();
    let sys = Sysfs::default().sessions().unwrap();
    eprintln!("library: {lib:#?}\nsysfs: {sys:#?}");
    assert_eq!(lib, sys, "libopeniscsiusr and sysfs disagree");
    assert_eq!(inventory::sessions().unwrap().1, Source::Library);
    let s = lib.iter().find(|s| s.target_iqn == target).unwrap();
    assert_eq!(s.portal, portal(P1));
    assert_eq!(s.transport, "tcp");
    let ident = InitiatorIdentity::new(configured_iqn(Path::new(INITIATOR_FILE)).unwrap(), &lib);
    assert_eq!(ident.configured.as_deref(), Some(initiator_iqn().as_str()));
    assert!(ident.consistent(), "{ident:?}");
    let mut lib_nodes = usr::nodes().unwrap();
    lib_nodes.iter_mut().for_each(|n| n.iface_name = None);
    assert_eq!(lib_nodes, inventory::nodes_from_iscsiadm().unwrap());
    let st = Sysfs::default().session_state(s.sid).unwrap();
    assert_eq!(st.state, "LOGGED_IN");

    // Targeted scan of LUN pick.lun only, through the executor.
    let sid = s.sid;
    let loc = ScanTarget::IscsiSession {
        session: sid,
        lun: pick.lun,
    };
    executor::rescan::scan(&Root::host(), &loc).unwrap();
    let f = wait::wait(
        &Root::host(),
        &spec(pick, Some(loc), MultipathPolicy::Never),
    )
    .unwrap();
    eprintln!("found {f:?}");
    let after: BTreeSet<(String, String)> = lio_disks().into_iter().collect();
    let new: Vec<_> = after
        .difference(&before.iter().cloned().collect())
        .cloned()
        .collect();
    assert_eq!(
        new,
        vec![(f.device.clone(), pick.wwn.clone())],
        "exactly the scanned LUN"
    );
    for other in [&luns[0], &luns[2]] {
        assert_eq!(
            disk_with_wwid(&other.wwn),
            None,
            "LUN {} appeared unscanned",
            other.lun
        );
    }
    let disks = Sysfs::default().session_disks(sid).unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(
        (disks[0].name.as_str(), disks[0].lun),
        (f.device.as_str(), pick.lun)
    );
    let dev = PathBuf::from(format!("/dev/{}", f.device));
    assert_eq!(read_at(&dev, 4096, 4096), read_at(&pick.file, 4096, 4096));
    capture_session_fixture(
        sid,
        st.address.host,
        std::slice::from_ref(&f.device),
        &results_dir().join("fixtures/iscsi-session"),
    );

    // Logout refused while the disk is open, then while mounted.
    let mut holder = hold_open(&dev);
    let e = adm::logout_if_unused(target, &portal(P1), T).unwrap_err();
    let _ = holder.kill();
    let _ = holder.wait();
    eprintln!("refused: {e}");
    match &e {
        IscsiError::InUse {
            device,
            holder,
            sid: s2,
            ..
        } => {
            assert_eq!((device, *s2), (&f.device, sid));
            assert!(
                holder.contains("open by pid") && holder.contains("sleep"),
                "{holder}"
            );
        }
        other => panic!("expected InUse, got {other}"),
    }
    run("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);
    let mnt = scratch.join("m");
    fs::create_dir_all(&mnt).unwrap();
    run("mount", &[dev.to_str().unwrap(), mnt.to_str().unwrap()]);
    let e = adm::logout_if_unused(target, &portal(P1), T).unwrap_err();
    run("umount", &[mnt.to_str().unwrap()]);
    assert!(e.to_string().contains("mounted on"), "{e}");
    assert_eq!(
        session_for(target, P1),
        sid,
        "refused logout must keep the session"
    );

    // remove-device, then the session is free and logs out.
    let r = executor::remove::remove(&Root::host(), dev.to_str().unwrap(), &Default::default())
        .unwrap();
    assert_eq!(r.deleted, vec![f.device.clone()]);
    assert_eq!(lio_disks(), before, "a disk is left after remove-device");
    assert_eq!(
        adm::logout_if_unused(target, &portal(P1), T).unwrap(),
        LogoutOutcome::LoggedOut(vec![sid])
    );
    assert!(adm::find_sessions(target, &portal(P1)).unwrap().is_empty());
    assert_eq!(
        adm::logout_if_unused(target, &portal(P1), T).unwrap(),
        LogoutOutcome::NotLoggedIn
    );
    adm::forget_node(target, &portal(P1), T).unwrap();
}

/// LIO CHAP on the ACL: a login without credentials fails with
/// ISCSI_ERR_LOGIN_AUTH_FAILED (24) naming target and portal; with them it
/// succeeds.
#[test]
#[ignore = "needs the lab kernel"]
fn chap_session_login() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-chap";
    let (app, _td) = appliance(&scratch, &xfs, target, &[P1], "127.0.0.1:8472");
    gold(&app, &xfs, "g");
    present(&app, "c0", "g");
    let lio = Lio::new(LioConfig::new(target, vec![P1.parse().unwrap()]));
    let acl = lio.acl_dir(&initiator_iqn());
    fs::write(acl.join("auth/userid"), "gmuser").unwrap();
    fs::write(acl.join("auth/password"), "gm-secret-12").unwrap();
    fs::write(lio.tpg_dir().join("attrib/authentication"), "1").unwrap();
    adm::discover(&portal(P1), None, T).unwrap();
    let e = adm::login(target, &[portal(P1)], None, T).unwrap_err();
    eprintln!("without CHAP: {e}");
    let s = e.to_string();
    assert!(
        s.contains(target) && s.contains(P1) && s.contains("exit 24"),
        "{s}"
    );
    let chap = adm::Chap::new("gmuser", "gm-secret-12");
    let rep = adm::login(target, &[portal(P1)], Some(&chap), T).unwrap();
    assert_eq!(rep.logged_in, vec![portal(P1)]);
    let sid = session_for(target, P1);
    assert_eq!(
        adm::logout_if_unused(target, &portal(P1), T).unwrap(),
        LogoutOutcome::LoggedOut(vec![sid])
    );
}

/// Clone A at LUN n is unpresented without the host deleting its disk; clone
/// B gets the same LUN number. wait-for-device for B, told where B is,
/// catches the stale disk by its VPD identity, repairs it, and returns a
/// device that reads B's data.
#[test]
#[ignore = "needs the lab kernel"]
fn reused_lun_number_detected_and_repaired() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-reuse";
    let (app, _td) = appliance(&scratch, &xfs, target, &[P1], "127.0.0.1:8473");
    gold(&app, &xfs, "ga");
    gold(&app, &xfs, "gb");
    let a = present(&app, "ca", "ga");
    adm::discover(&portal(P1), None, T).unwrap();
    adm::login(target, &[portal(P1)], None, T).unwrap();
    let sid = session_for(target, P1);
    let loc = ScanTarget::IscsiSession {
        session: sid,
        lun: a.lun,
    };
    executor::rescan::scan(&Root::host(), &loc).unwrap();
    let fa = wait::wait(
        &Root::host(),
        &spec(&a, Some(loc.clone()), MultipathPolicy::Never),
    )
    .unwrap();
    eprintln!("A: {fa:?}");

    let st = app.delete("/v1/presentations/ca?force=true");
    assert!(st == 200 || st == 204, "unpresent -> {st}");
    let b = present(&app, "cb", "gb");
    assert_eq!(
        b.lun, a.lun,
        "the appliance must reuse the LUN number for this scenario"
    );
    assert_ne!(b.wwn, a.wwn);
    assert_eq!(
        disk_with_wwid(&a.wwn).as_deref(),
        Some(fa.device.as_str()),
        "stale disk gone?"
    );

    let fb = wait::wait(&Root::host(), &spec(&b, Some(loc), MultipathPolicy::Never)).unwrap();
    eprintln!("B: {fb:?}");
    assert!(
        !fb.repaired.is_empty(),
        "the stale device was not caught: {fb:?}"
    );
    let dev = PathBuf::from(format!("/dev/{}", fb.device));
    assert_eq!(
        read_at(&dev, 8192, 4096),
        read_at(&b.file, 8192, 4096),
        "not B's data"
    );
    assert_eq!(
        disk_with_wwid(&a.wwn),
        None,
        "a disk with A's WWID survived"
    );
    assert_eq!(Sysfs::default().session_disks(sid).unwrap().len(), 1);
    executor::remove::remove(&Root::host(), dev.to_str().unwrap(), &Default::default()).unwrap();
    assert!(matches!(
        adm::logout_if_unused(target, &portal(P1), T).unwrap(),
        LogoutOutcome::LoggedOut(_)
    ));
}

/// Discovery through the first portal finds the second; one login to both
/// gives two sessions; a targeted scan of `lun` on each makes its two paths.
fn login_both_portals_and_scan(target: &str, lun: u64) {
    let found = adm::discover(&portal(P1), None, T).unwrap();
    assert!(
        found.iter().any(|d| d.portal == portal(P2)),
        "discovery lacks {P2}: {found:?}"
    );
    let rep = adm::login(target, &[portal(P1), portal(P2)], None, T).unwrap();
    assert_eq!(rep.logged_in, vec![portal(P1), portal(P2)]);
    for p in [P1, P2] {
        let loc = ScanTarget::IscsiSession {
            session: session_for(target, p),
            lun,
        };
        executor::rescan::scan(&Root::host(), &loc).unwrap();
    }
}

/// One LUN behind two portals (127.0.0.1 and 127.0.0.2): two sessions, two
/// paths, one multipath map `mpath-<wwid>`; wait-for-device returns the map;
/// logout is refused while the map holds the paths; remove-device flushes the
/// map and deletes both paths; then both sessions log out.
#[test]
#[ignore = "needs the lab kernel"]
fn multipath_two_portals_attach_and_remove() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let _mpd = Multipathd::start();
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-mp";
    let (app, _td) = appliance(&scratch, &xfs, target, &[P1, P2], "127.0.0.1:8474");
    gold(&app, &xfs, "g");
    let l = present(&app, "c0", "g");
    login_both_portals_and_scan(target, l.lun);
    let f = wait::wait(&Root::host(), &spec(&l, None, MultipathPolicy::Require)).unwrap();
    eprintln!("multipath: {f:?}");
    assert_eq!(f.paths.len(), 2, "{f:?}");
    // Debian's find_multipaths strict maps only listed WWIDs: the wait had to
    // list this one and hand multipathd the paths.
    assert!(
        f.claimed
            .first()
            .is_some_and(|c| c.starts_with("multipath -a ")),
        "{:?}",
        f.claimed
    );
    assert!(
        f.claimed.iter().all(|c| !c.contains("failed")),
        "{:?}",
        f.claimed
    );
    let hex = l.wwn.trim_start_matches("naa.");
    let uuid = format!("mpath-3{hex}");
    let dm = dm_with_uuid(&uuid).unwrap_or_else(|| panic!("no dm map with uuid {uuid}"));
    assert_eq!(f.device, dm);
    assert_eq!(
        read_at(Path::new(&f.node), 4096, 4096),
        read_at(&l.file, 4096, 4096)
    );

    // Once udev is done with the new paths (its workers open them briefly,
    // which also counts as in use), the holder is the map itself.
    let _ = try_run("udevadm", &["settle", "-t", "60"], T);
    for p in &f.paths {
        let hs: Vec<_> = fs::read_dir(format!("/sys/block/{}/holders", p.name))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(hs, vec![dm.clone()], "holders of {}", p.name);
    }
    let e = adm::logout_if_unused(target, &portal(P1), T).unwrap_err();
    assert!(e.to_string().contains(&format!("held by {dm}")), "{e}");

    let r = executor::remove::remove(&Root::host(), &f.node, &Default::default()).unwrap();
    eprintln!("removal: {r:?}");
    assert!(r.map_removed.is_some());
    assert_eq!(r.deleted.len(), 2);
    assert_eq!(dm_with_uuid(&uuid), None, "map left behind");
    let mp_wwid = format!("3{hex}");
    assert_eq!(r.wwid_forgotten.as_deref(), Some(mp_wwid.as_str()), "{r:?}");
    // `multipath -w` comments the line out; a listed WWID is `/<wwid>/`.
    let wwids = fs::read_to_string("/etc/multipath/wwids").unwrap_or_default();
    assert!(
        !wwids.lines().any(|l| l.trim() == format!("/{mp_wwid}/")),
        "WWID left in the wwids file: {wwids}"
    );
    assert_eq!(disk_with_wwid(&l.wwn), None, "a path left behind");
    for p in [P1, P2] {
        assert!(matches!(
            adm::logout_if_unused(target, &portal(p), T).unwrap(),
            LogoutOutcome::LoggedOut(_)
        ));
    }
}

/// The host's admin keeps the appliance's LUNs out of multipath (a
/// `blacklist` device section for LIO's vendor/product). multipathd runs and
/// the LUN has two paths, so `Auto` first waits for a map; when multipathd
/// answers "blacklisted" for every path, the wait hands out a path instead
/// of timing out, and the WWID it listed for multipathd is taken out again.
#[test]
#[ignore = "needs the lab kernel"]
fn multipath_blacklisted_lun_uses_the_path() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let _mpd = Multipathd::start_with_blacklist(
        "    device {\n        vendor \"LIO-ORG\"\n        product \".*\"\n    }\n",
    );
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-mpbl";
    let (app, _td) = appliance(&scratch, &xfs, target, &[P1, P2], "127.0.0.1:8475");
    gold(&app, &xfs, "g");
    let l = present(&app, "c0", "g");
    login_both_portals_and_scan(target, l.lun);
    let f = wait::wait(&Root::host(), &spec(&l, None, MultipathPolicy::Auto)).unwrap();
    eprintln!("blacklisted: {f:?}");
    assert!(f.multipath.is_none(), "{f:?}");
    assert!(f.node.starts_with("/dev/sd"), "{f:?}");
    assert!(
        f.claimed.iter().any(|c| c.contains("blacklisted")),
        "{:?}",
        f.claimed
    );
    let hex = l.wwn.trim_start_matches("naa.");
    assert_eq!(dm_with_uuid(&format!("mpath-3{hex}")), None);
    let wwids = fs::read_to_string("/etc/multipath/wwids").unwrap_or_default();
    assert!(
        !wwids.lines().any(|x| x.trim() == format!("/3{hex}/")),
        "WWID left listed: {wwids}"
    );
    // Both paths go; the sessions are free again.
    let _ = try_run("udevadm", &["settle", "-t", "60"], T);
    for p in &f.paths {
        let r = executor::remove::remove(
            &Root::host(),
            &format!("/dev/{}", p.name),
            &Default::default(),
        );
        if let Err(e) = r {
            panic!("remove-device {}: {e}", p.name);
        }
    }
    assert_eq!(disk_with_wwid(&l.wwn), None, "a path left behind");
    for p in [P1, P2] {
        assert!(matches!(
            adm::logout_if_unused(target, &portal(p), T).unwrap(),
            LogoutOutcome::LoggedOut(_)
        ));
    }
}

// ---------------------------------------------------------------- benchmark

/// How the new LUN is brought in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Targeted,
    Wildcard,
    IscsiadmRescan,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Targeted => "targeted `C T L`",
            Method::Wildcard => "wildcard `- - -`",
            Method::IscsiadmRescan => "iscsiadm --rescan",
        }
    }
}

/// What the host's other N LUNs are doing while the new LUN is brought in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Others {
    /// Every other LUN already has its disk: a wildcard scan skips them.
    Attached,
    /// The target presents them but the host has no disk for them: a
    /// goldmount host with `node.session.scan=manual` that attached only
    /// what it mounted. A wildcard scan attaches every one of them.
    Presented,
}

impl Others {
    fn name(self) -> &'static str {
        match self {
            Others::Attached => "attached",
            Others::Presented => "presented, not attached",
        }
    }
}

/// One run: times from the start of the scan (sysfs write or iscsiadm).
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Until the new LUN's block device exists; `None`: it never came.
    dev: Option<f64>,
    /// Until the scan write (or iscsiadm) returned.
    returned: f64,
    /// Until all N LUNs of the host had block devices (presented state,
    /// methods that scan everything); `None` when not applicable or never.
    all: Option<f64>,
}

/// One table row: medians over `runs` samples.
struct Row {
    bus: &'static str,
    n: usize,
    others: Others,
    method: Method,
    runs: usize,
    dev: Option<f64>,
    returned: f64,
    all: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

impl Row {
    fn new(bus: &'static str, n: usize, others: Others, method: Method, samples: &[Sample]) -> Row {
        let opt = |f: fn(&Sample) -> Option<f64>| {
            samples
                .iter()
                .map(f)
                .collect::<Option<Vec<f64>>>()
                .map(median)
        };
        Row {
            bus,
            n,
            others,
            method,
            runs: samples.len(),
            dev: opt(|s| s.dev),
            returned: median(samples.iter().map(|s| s.returned).collect()),
            all: opt(|s| s.all),
        }
    }
}

fn disk_at(h: u32, c: u32, t: u32, l: u64) -> Option<String> {
    let dir = format!("/sys/class/scsi_device/{h}:{c}:{t}:{l}/device/block");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .next()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn has_disk(h: u32, c: u32, t: u32, l: u64) -> bool {
    disk_at(h, c, t, l).is_some_and(|d| Path::new("/sys/block").join(d).exists())
}

/// The SCSI devices (`H:C:T:L` entries of `/sys/class/scsi_device`) of host `h`.
fn scsi_devices_on_host(h: u32) -> Vec<PathBuf> {
    let prefix = format!("{h}:");
    fs::read_dir("/sys/class/scsi_device")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn count_disks_on_host(h: u32) -> usize {
    scsi_devices_on_host(h).len()
}

/// How many SCSI devices of host `h` have their block device registered.
fn count_block_devices_on_host(h: u32) -> usize {
    scsi_devices_on_host(h)
        .iter()
        .filter(|p| {
            fs::read_dir(p.join("device/block"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        })
        .count()
}

/// Deletes every SCSI device of host `h` (what `…/device/delete` does on
/// detach): the LUNs stay presented by the target, the host has no disk.
fn detach_all(h: u32) {
    let t0 = Instant::now();
    let devs = scsi_devices_on_host(h);
    for d in &devs {
        let p = d.join("device/delete");
        if let Err(e) = fs::write(&p, "1") {
            // Gone meanwhile is fine; anything else is a broken state restore.
            assert!(
                e.kind() == std::io::ErrorKind::NotFound,
                "write {}: {e}",
                p.display()
            );
        }
    }
    wait_until(
        &format!("host{h} without SCSI devices"),
        Duration::from_secs(900),
        || (count_disks_on_host(h) == 0).then_some(()),
    );
    eprintln!(
        "detached {} devices of host{h} in {:.1}s",
        devs.len(),
        t0.elapsed().as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Attached state: deletes the disk at H:C:T:L only, then times bringing it
/// back with `m` until the kernel has registered its block device
/// (`…/H:C:T:L/device/block/sdX`; devtmpfs makes `/dev/sdX` at the same
/// moment, udev rules are paused). `reps` runs.
fn time_new_lun(
    h: u32,
    c: u32,
    t: u32,
    l: u64,
    m: Method,
    sid: Option<u32>,
    reps: usize,
) -> Vec<Sample> {
    let mut v = Vec::new();
    for _ in 0..reps {
        let sdev = format!("/sys/class/scsi_device/{h}:{c}:{t}:{l}");
        if Path::new(&sdev).exists() {
            fs::write(format!("{sdev}/device/delete"), "1").unwrap();
            wait_until(&format!("{sdev} to go"), T, || {
                (!Path::new(&sdev).exists()).then_some(())
            });
        }
        let t0 = Instant::now();
        let scan = format!("/sys/class/scsi_host/host{h}/scan");
        match m {
            Method::Targeted => fs::write(&scan, format!("{c} {t} {l}")).unwrap(),
            Method::Wildcard => fs::write(&scan, "- - -").unwrap(),
            Method::IscsiadmRescan => {
                adm::rescan_session(sid.unwrap(), Duration::from_secs(600)).unwrap()
            }
        }
        let returned = ms(t0.elapsed());
        loop {
            if has_disk(h, c, t, l) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "{m:?} never brought {h}:{c}:{t}:{l}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        v.push(Sample {
            dev: Some(ms(t0.elapsed())),
            returned,
            all: None,
        });
    }
    v
}

/// How long the clock keeps running after the scan returned: sd probes
/// asynchronously, so block devices may still be registering.
const AFTER_RETURN: Duration = Duration::from_secs(300);
/// Bound on one scan write / iscsiadm run in the presented state.
const SCAN_LIMIT: Duration = Duration::from_secs(900);

/// Presented state, one run: detaches every disk of host `h` (so all `n`
/// LUNs are presented, none attached), then starts `m` in a thread and
/// clocks, from its start, LUN H:C:T:L's block device, the scan's return
/// and (methods that scan everything) all `n` block devices.
fn run_presented(h: u32, c: u32, t: u32, l: u64, n: usize, m: Method, sid: Option<u32>) -> Sample {
    detach_all(h);
    let scan = format!("/sys/class/scsi_host/host{h}/scan");
    let t0 = Instant::now();
    let worker = std::thread::spawn(move || -> Duration {
        match m {
            Method::Targeted => fs::write(&scan, format!("{c} {t} {l}"))
                .unwrap_or_else(|e| panic!("write {scan}: {e}")),
            Method::Wildcard => {
                fs::write(&scan, "- - -").unwrap_or_else(|e| panic!("write {scan}: {e}"))
            }
            Method::IscsiadmRescan => {
                let s = sid.unwrap().to_string();
                match try_run(
                    "iscsiadm",
                    &["-m", "session", "-r", &s, "--rescan"],
                    SCAN_LIMIT,
                ) {
                    Ok(out) => eprintln!("iscsiadm --rescan said: {}", out.trim()),
                    // Reported, not fatal: the row then says what happened.
                    Err(e) => eprintln!("iscsiadm --rescan failed: {e}"),
                }
            }
        }
        t0.elapsed()
    });
    let scans_all = m != Method::Targeted;
    let (mut dev, mut returned, mut all) = (None, None, None);
    let mut worker = Some(worker);
    let mut last_count = Instant::now();
    loop {
        let el = t0.elapsed();
        if dev.is_none() && has_disk(h, c, t, l) {
            dev = Some(el);
        }
        if worker.as_ref().is_some_and(|w| w.is_finished()) {
            returned = Some(worker.take().unwrap().join().expect("scan thread panicked"));
        }
        // Counting hundreds of sysfs entries costs CPU the scan needs: only
        // once the LUN of interest is there, and every 100 ms.
        if scans_all
            && all.is_none()
            && dev.is_some()
            && last_count.elapsed() >= Duration::from_millis(100)
        {
            last_count = Instant::now();
            if count_block_devices_on_host(h) >= n {
                all = Some(el);
            }
        }
        if dev.is_some() && returned.is_some() && (!scans_all || all.is_some()) {
            break;
        }
        if let Some(r) = returned {
            if el > r + AFTER_RETURN {
                eprintln!(
                    "{m:?}: returned after {:.1}s; {:.0}s later LUN {l} has {} and {}/{n} \
                     LUNs have block devices: stop the clock",
                    r.as_secs_f64(),
                    AFTER_RETURN.as_secs_f64(),
                    if dev.is_some() { "a disk" } else { "NO disk" },
                    count_block_devices_on_host(h)
                );
                break;
            }
        }
        assert!(
            returned.is_some() || el < SCAN_LIMIT + Duration::from_secs(60),
            "{m:?} scan on host{h} still running after {el:?}"
        );
        let pause = if dev.is_none() { 2 } else { 20 };
        std::thread::sleep(Duration::from_millis(pause));
    }
    let s = Sample {
        dev: dev.map(ms),
        returned: ms(returned.unwrap()),
        all: all.map(ms),
    };
    eprintln!(
        "presented n={n} {m:?}: device {:?} ms, returned {:.1} ms, all {:?} ms",
        s.dev, s.returned, s.all
    );
    s
}

/// Soft time budget of the whole scenario: expensive runs are repeated only
/// while the projected end stays inside it (the lab's `--scenario-timeout`
/// must leave room for the rest: see BENCHMARKS.md for the command).
struct Budget {
    start: Instant,
    soft: Duration,
}

impl Budget {
    /// Up to `want` presented-state runs, fewer when one run is so slow that
    /// repeating it would overrun the budget.
    #[allow(clippy::too_many_arguments)]
    fn presented(
        &self,
        want: usize,
        h: u32,
        t: u32,
        l: u64,
        n: usize,
        m: Method,
        sid: Option<u32>,
    ) -> Vec<Sample> {
        let mut v = Vec::new();
        while v.len() < want {
            let t0 = Instant::now();
            v.push(run_presented(h, 0, t, l, n, m, sid));
            let one = t0.elapsed();
            if v.len() < want && self.start.elapsed() + one > self.soft {
                eprintln!(
                    "budget: {m:?} at n={n} took {:.0}s per run; stopping at {} run(s)",
                    one.as_secs_f64(),
                    v.len()
                );
                break;
            }
        }
        v
    }
}

fn scsi_debug_host() -> u32 {
    let d = fs::read_dir("/sys/bus/pseudo/drivers/scsi_debug").unwrap();
    d.flatten()
        .find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("adapter")
                .map(|_| e.path())
        })
        .and_then(|a| {
            fs::read_dir(a)
                .ok()?
                .flatten()
                .find_map(|e| e.file_name().to_str()?.strip_prefix("host")?.parse().ok())
        })
        .expect("scsi_debug host")
}

/// Rescan benchmark: time to get a new LUN's device with a targeted scan vs
/// a wildcard scan (and, for iSCSI, `iscsiadm --rescan`), with 64 and 512
/// other LUNs on the host, on scsi_debug and on the appliance's LIO target,
/// in two states: the other LUNs attached (disks exist), and presented but
/// not attached (what a goldmount host with manual scan looks like). Prints
/// a table (copied into BENCHMARKS.md by hand from the scenario log). Takes
/// ~25 min under TCG: `cargo xtask lab --bench --timeout 4200
/// --scenario-timeout 3600 bench_targeted_vs_wildcard_scan`.
#[test]
#[ignore = "needs the lab kernel"]
fn bench_targeted_vs_wildcard_scan() {
    let scratch = require_lab();
    let reps = 3;
    let budget = Budget {
        start: Instant::now(),
        soft: Duration::from_secs(2600),
    };
    let mut rows: Vec<Row> = Vec::new();
    // udev rule processing for hundreds of disks would swamp the 2 emulated
    // CPUs and blur what the scan methods cost: pause it for the benchmark.
    let _udev = UdevPaused::new();

    // scsi_debug: one host, N LUNs (256 per target at most: 2 targets for 512).
    // Loading it attaches every LUN: attached state first, then presented.
    for (n, tgts, luns) in [(64usize, 1u32, 64u32), (512, 2, 256)] {
        let t0 = Instant::now();
        run(
            "modprobe",
            &[
                "scsi_debug",
                &format!("num_tgts={tgts}"),
                &format!("max_luns={luns}"),
                "dev_size_mb=1",
                "no_uld=0",
            ],
        );
        let h = scsi_debug_host();
        wait_until(
            &format!("{n} scsi_debug LUNs"),
            Duration::from_secs(600),
            || (count_disks_on_host(h) >= n).then_some(()),
        );
        eprintln!(
            "scsi_debug {n} LUNs up in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        let l = u64::from(luns / 2);
        for m in [Method::Targeted, Method::Wildcard] {
            let s = time_new_lun(h, 0, 0, l, m, None, reps);
            rows.push(Row::new("scsi_debug", n, Others::Attached, m, &s));
            write_table(&rows);
        }
        for m in [Method::Targeted, Method::Wildcard] {
            let s = budget.presented(reps, h, 0, l, n, m, None);
            rows.push(Row::new("scsi_debug", n, Others::Presented, m, &s));
            write_table(&rows);
        }
        detach_all(h);
        run("modprobe", &["-r", "scsi_debug"]);
    }

    // iSCSI: LIO target with N LUNs (sparse 1 MiB fileio backstores), one
    // session logged in with manual scan. Presented state first (login
    // attaches nothing), then attached.
    let target = "iqn.2026-11.io.goldmount.lab:iscsi-bench";
    let initiator = initiator_iqn();
    let lio = Lio::new(LioConfig::new(target, vec![P1.parse().unwrap()]));
    let _td = Teardown {
        target: target.into(),
        portals: vec![P1],
        initiator: initiator.clone(),
    };
    lio.ensure_target().unwrap();
    lio.ensure_acl(&initiator).unwrap();
    let mut mapped = 0u32;
    for n in [64u32, 512] {
        let t0 = Instant::now();
        for i in mapped..n {
            let f = scratch.join(format!("b{i}.img"));
            fs::File::create(&f).unwrap().set_len(1 << 20).unwrap();
            let b = appliance::lio::Backstore {
                name: format!("gm_bench_{i}"),
                file: f,
                size: 1 << 20,
                // The LUN number in the first 25 hex digits: LIO builds the
                // NAA WWN from those only, so each LUN gets its own WWID.
                unit_serial: format!("0b{i:06x}-0000-4000-8000-000000000000"),
            };
            lio.ensure_backstore(&b).unwrap();
            lio.map_lun(i, &b.name, std::slice::from_ref(&initiator))
                .unwrap();
        }
        mapped = n;
        eprintln!(
            "iSCSI {n} LUNs mapped in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        if adm::find_sessions(target, &portal(P1)).unwrap().is_empty() {
            adm::discover(&portal(P1), None, T).unwrap();
            adm::login(target, &[portal(P1)], None, T).unwrap();
            let sid = session_for(target, P1);
            let h = Sysfs::default().session_state(sid).unwrap().address.host;
            std::thread::sleep(Duration::from_secs(3));
            assert_eq!(
                count_disks_on_host(h),
                0,
                "login with node.session.scan=manual attached LUNs"
            );
        }
        let sid = session_for(target, P1);
        let st = Sysfs::default().session_state(sid).unwrap();
        let (h, tid) = (st.address.host, st.address.target);
        let l = u64::from(n / 2);

        // Presented, not attached. iscsiadm before wildcard: the last
        // wildcard run leaves all N attached for the attached state.
        for m in [Method::Targeted, Method::IscsiadmRescan, Method::Wildcard] {
            let s = budget.presented(reps, h, tid, l, n as usize, m, Some(sid));
            rows.push(Row::new(
                "iscsi (LIO)",
                n as usize,
                Others::Presented,
                m,
                &s,
            ));
            write_table(&rows);
        }

        // Attached.
        fs::write(format!("/sys/class/scsi_host/host{h}/scan"), "- - -").unwrap();
        wait_until(&format!("{n} iSCSI LUNs"), Duration::from_secs(900), || {
            (count_block_devices_on_host(h) >= n as usize).then_some(())
        });
        for m in [Method::Targeted, Method::Wildcard, Method::IscsiadmRescan] {
            // iscsiadm --rescan re-probes every attached disk: minutes at 512
            // LUNs and hundreds of times slower either way, so one run.
            let r = if m == Method::IscsiadmRescan { 1 } else { reps };
            let s = time_new_lun(h, 0, tid, l, m, Some(sid), r);
            rows.push(Row::new("iscsi (LIO)", n as usize, Others::Attached, m, &s));
            write_table(&rows);
        }
    }
    // Tear the many disks down before logout (faster, and leaves no trace).
    let sid = session_for(target, P1);
    detach_all(Sysfs::default().session_state(sid).unwrap().address.host);
    let _ = try_run(
        "iscsiadm",
        &["-m", "node", "-T", target, "-p", P1, "--logout"],
        Duration::from_secs(600),
    );

    let table = write_table(&rows);
    eprintln!("scenario took {:.0}s", budget.start.elapsed().as_secs_f64());
    println!("\nBENCH-TABLE-BEGIN\n{table}BENCH-TABLE-END");
}

/// `udevadm control --stop-exec-queue` until dropped.
struct UdevPaused;

impl UdevPaused {
    fn new() -> Self {
        run("udevadm", &["control", "--stop-exec-queue"]);
        UdevPaused
    }
}

impl Drop for UdevPaused {
    fn drop(&mut self) {
        let _ = try_run("udevadm", &["control", "--start-exec-queue"], T);
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |x| format!("{x:.1}"))
}

/// Renders the rows as a Markdown table, prints it to the scenario log and
/// writes it to `<results>/bench_rescan.md` when that is writable (after
/// every row, so a timeout keeps the rest).
fn write_table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| bus | existing LUNs | other LUNs | method | new LUN's device (ms, median) | × targeted \
         | scan / iscsiadm returned (ms) | all N LUNs' devices (ms) | runs |\n\
         |---|---:|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| {
                b.bus == r.bus && b.n == r.n && b.others == r.others && b.method == Method::Targeted
            })
            .and_then(|b| b.dev);
        let ratio = match (r.dev, base) {
            (Some(d), Some(b)) => format!("{:.1}", d / b),
            _ => "–".to_string(),
        };
        let all = match (r.others, r.method) {
            (Others::Presented, m) if m != Method::Targeted => fmt_ms(r.all),
            _ => "–".to_string(),
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {ratio} | {:.1} | {all} | {} |\n",
            r.bus,
            r.n,
            r.others.name(),
            r.method.name(),
            fmt_ms(r.dev),
            r.returned,
            r.runs
        ));
    }
    eprintln!("{table}");
    let dir = results_dir();
    if let Err(e) =
        fs::create_dir_all(&dir).and_then(|()| fs::write(dir.join("bench_rescan.md"), &table))
    {
        eprintln!(
            "not written to {} ({e}); the table is in this log",
            dir.display()
        );
    }
    table
}
