//! Lab scenarios for `executor` and `fc` (issue 4, parts 1 and 3): host
//! identity with the guest's IQN and an FCoE fc_host, a targeted scan that
//! brings up exactly one scsi_debug LUN, wait-for-device verification (wrong
//! serial → delete, rescan, then a mismatch naming both identities), a LUN
//! number reused for another LIO clone detected and repaired, and
//! remove-device leaving no /dev/sdX. `#[ignore]`d on the host; run in the
//! guest by `cargo xtask lab lab_executor` (every `lab*` target is run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use appliance::lio::{naa_wwn_for_serial, Backstore, Lio, LioConfig};
use executor::rescan::ScanTarget;
use executor::wait::{MultipathPolicy, WaitSpec};
use executor::{Error, Hctl, Root};
use goldmount_tests::lab::*;

fn host_root() -> Root {
    Root::host()
}

/// The scsi_debug host number, loading the module with `params`.
fn load_scsi_debug(params: &[&str]) -> u32 {
    let mut args = vec!["scsi_debug"];
    args.extend_from_slice(params);
    run("modprobe", &args);
    let _ = try_run("udevadm", &["settle", "-t", "30"], CMD_TIMEOUT);
    wait_until("the scsi_debug host", Duration::from_secs(30), || {
        fs::read_dir("/sys/class/scsi_host")
            .ok()?
            .flatten()
            .find_map(|e| {
                let p = fs::read_to_string(e.path().join("proc_name")).ok()?;
                (p.trim() == "scsi_debug")
                    .then(|| e.file_name().to_str()?.strip_prefix("host")?.parse().ok())
                    .flatten()
            })
    })
}

struct ScsiDebugGuard;
impl Drop for ScsiDebugGuard {
    fn drop(&mut self) {
        let _ = try_run("udevadm", &["settle", "-t", "30"], CMD_TIMEOUT);
        if let Err(e) = try_run("rmmod", &["scsi_debug"], CMD_TIMEOUT) {
            eprintln!("teardown rmmod scsi_debug: {e}");
        }
    }
}

/// LUN numbers present on `host` (from /sys/class/scsi_device).
fn luns_on(host: u32) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir("/sys/class/scsi_device")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let h: Hctl = e.file_name().to_str()?.parse().ok()?;
            (h.host == host).then_some(h.lun)
        })
        .collect();
    v.sort();
    v
}

fn disk_at(h: Hctl) -> Option<String> {
    let d = format!("/sys/class/scsi_device/{h}/device/block");
    fs::read_dir(d)
        .ok()?
        .flatten()
        .next()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn delete_lun(h: Hctl) {
    let p = format!("/sys/class/scsi_device/{h}/device/delete");
    fs::write(&p, "1").unwrap_or_else(|e| panic!("write {p}: {e}"));
}

/// instance-id: the IQN from /etc/iscsi/initiatorname.iscsi (written by the
/// guest setup, a tmpfs overlay) and the FCoE fc_host's WWPN/WWNN, which
/// libfcoe derives from the link's MAC (checked independently of sysfs).
#[test]
#[ignore = "needs the lab kernel"]
fn executor_instance_id_iqn_and_fcoe() {
    require_lab();
    let iqn = initiator_iqn();
    run("modprobe", &["fcoe"]);
    let _ = try_run("ip", &["link", "del", "gmfc0"], CMD_TIMEOUT);
    // An explicit (locally administered) MAC: a dummy link's random one is
    // replaced by udev (MACAddressPolicy=persistent) at some point after
    // creation, and libfcoe derives the WWPN from whatever it was when the
    // controller was created. Then let udev finish with the link.
    run(
        "ip",
        &[
            "link",
            "add",
            "gmfc0",
            "address",
            "02:67:6d:fc:00:01",
            "type",
            "dummy",
        ],
    );
    run("udevadm", &["settle", "-t", "30"]);
    run("ip", &["link", "set", "gmfc0", "up"]);
    fs::write("/sys/bus/fcoe/ctlr_create", "gmfc0").unwrap();
    let ctlr = wait_until("the fcoe ctlr", Duration::from_secs(30), || {
        fs::read_dir("/sys/bus/fcoe/devices")
            .ok()?
            .flatten()
            .find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("ctlr_").then_some(e.path())
            })
    });
    let _fcoe = FcoeGuard(ctlr.clone());
    fs::write(ctlr.join("enabled"), "1").unwrap();
    let mac = fs::read_to_string("/sys/class/net/gmfc0/address")
        .unwrap()
        .trim()
        .replace(':', "");
    assert_eq!(mac, "02676dfc0001", "the link's MAC changed under us");
    // The fc_host appears before libfcoe has set its names: wait for the
    // port whose WWPN carries the MAC, not merely for any port.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (id, port) = loop {
        let id = executor::identity::collect(&host_root());
        if let Some(p) = id.fc.ports.iter().find(|p| p.wwpn.ends_with(&mac)) {
            let p = p.clone();
            break (id, p);
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "no fc port whose WWPN ends with the MAC {mac} after 30 s: {:?}",
                id.fc.ports
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{}", serde_json::to_string_pretty(&id).unwrap());
    assert_eq!(id.iscsi.initiator_iqn, iqn);
    assert!(!id.hostname.is_empty() && !id.kernel.is_empty() && !id.os.id.is_empty());
    assert!(port.wwnn.ends_with(&mac), "{port:?}");
    assert_ne!(port.wwpn, port.wwnn);
    // The lab's FCoE port has no fabric: offline, so it must not be registered.
    assert!(!port.online, "{port:?}");
    assert!(!id.fc.registration_wwpns.contains(&port.wwpn));
}

/// Disables and destroys the lab's FCoE controller and its dummy link, also
/// when an assertion fails, so a later scenario sees no stray fc_host.
struct FcoeGuard(std::path::PathBuf);

impl Drop for FcoeGuard {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("enabled"), "0");
        let _ = fs::write("/sys/bus/fcoe/ctlr_destroy", "gmfc0");
        let _ = try_run("ip", &["link", "del", "gmfc0"], CMD_TIMEOUT);
    }
}

/// A targeted scan on a scsi_debug host with 8 LUNs (2 removed) brings back
/// exactly the asked LUN; wait-for-device finds it by WWID; a wrong serial
/// is repaired once (delete + rescan) and then reported naming both
/// identities; remove-device leaves no /dev/sdX.
#[test]
#[ignore = "needs the lab kernel"]
fn executor_targeted_scan_wait_verify_remove_scsi_debug() {
    require_lab();
    let host = load_scsi_debug(&["add_host=1", "num_tgts=1", "max_luns=8", "dev_size_mb=4"]);
    let _g = ScsiDebugGuard;
    let at = |lun| Hctl {
        host,
        channel: 0,
        target: 0,
        lun,
    };
    assert_eq!(luns_on(host), (0..8).collect::<Vec<_>>());
    let root = host_root();
    let sd5 = disk_at(at(5)).unwrap();
    let id5 = executor::wait::Identity::read(&root, &sd5);
    let wwid5 = id5.wwid();
    let serial5 = id5.serial.clone().expect("scsi_debug has a unit serial");
    eprintln!("LUN 5 = {sd5}: {}", id5.describe());
    delete_lun(at(3));
    delete_lun(at(5));
    wait_until("LUNs 3 and 5 gone", Duration::from_secs(30), || {
        (luns_on(host) == [0, 1, 2, 4, 6, 7]).then_some(())
    });

    // rescan --host H --channel 0 --target 0 --lun 5: exactly LUN 5 comes back.
    let writes = executor::rescan::scan(&root, &ScanTarget::Hctl(at(5))).unwrap();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].line, "0 0 5");
    assert_eq!(
        luns_on(host),
        [0, 1, 2, 4, 5, 6, 7],
        "only LUN 5 may reappear"
    );

    // wait-for-device by WWID (udev spelling "3…" for an NAA WWID) + serial.
    let udev_spelling = wwid5.replacen("naa.", "3", 1);
    let spec = WaitSpec {
        wwid: udev_spelling,
        serial: Some(serial5.clone()),
        location: Some(ScanTarget::Hctl(at(5))),
        timeout: Duration::from_secs(60),
        multipath: MultipathPolicy::Never,
    };
    let found = executor::wait::wait(&root, &spec).unwrap();
    eprintln!("found: {}", serde_json::to_string(&found).unwrap());
    let node = found.node.clone();
    assert!(node.starts_with("/dev/sd"), "{node}");
    assert_eq!(found.paths[0].hctl, at(5));
    assert!(found.repaired.is_empty());
    assert!(
        found.event_driven,
        "the uevent listener should work in the guest"
    );
    assert!(Path::new(&node).exists());

    // A wrong serial at that place: deleted, rescanned once, then a mismatch
    // that names both identities.
    let wrong = WaitSpec {
        serial: Some("NOT-THE-SERIAL".into()),
        timeout: Duration::from_secs(60),
        ..spec.clone()
    };
    let e = executor::wait::wait(&root, &wrong).unwrap_err();
    eprintln!("wrong serial: {e}");
    assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("NOT-THE-SERIAL") && msg.contains(&serial5),
        "{msg}"
    );
    assert!(msg.contains(&wwid5), "{msg}");
    assert_eq!(e.exit_code(), 5);
    // …and the LUN is back after that repair (deleted + rescanned).
    assert_eq!(luns_on(host), [0, 1, 2, 4, 5, 6, 7]);

    // remove-device: no /dev/sdX, no SCSI device, other LUNs untouched.
    let sd = disk_at(at(5)).unwrap();
    let r = executor::remove::remove(&root, &format!("/dev/{sd}"), &Default::default()).unwrap();
    assert_eq!(r.deleted, std::slice::from_ref(&sd));
    assert!(!Path::new("/dev").join(&sd).exists());
    assert!(!Path::new("/sys/block").join(&sd).exists());
    assert_eq!(luns_on(host), [0, 1, 2, 4, 6, 7]);
}

/// remove-device refuses a mounted disk and names the mountpoint.
#[test]
#[ignore = "needs the lab kernel"]
fn executor_remove_refuses_mounted() {
    let scratch = require_lab();
    let host = load_scsi_debug(&["add_host=1", "num_tgts=1", "max_luns=1", "dev_size_mb=16"]);
    let _g = ScsiDebugGuard;
    let sd = disk_at(Hctl {
        host,
        channel: 0,
        target: 0,
        lun: 0,
    })
    .unwrap();
    let dev = format!("/dev/{sd}");
    run("mkfs.ext4", &["-q", &dev]);
    let mnt = scratch.join("m");
    fs::create_dir_all(&mnt).unwrap();
    run("mount", &[&dev, mnt.to_str().unwrap()]);
    let e = executor::remove::remove(&host_root(), &dev, &Default::default()).unwrap_err();
    let _ = try_run("umount", &[mnt.to_str().unwrap()], CMD_TIMEOUT);
    assert!(matches!(e, Error::InUse { .. }), "{e}");
    assert!(e.to_string().contains(mnt.to_str().unwrap()), "{e}");
    assert!(
        Path::new(&dev).exists(),
        "a refused removal must leave the disk"
    );
    let r = executor::remove::remove(&host_root(), &dev, &Default::default()).unwrap();
    assert_eq!(r.deleted, std::slice::from_ref(&sd));
    assert!(!Path::new(&dev).exists());
}

/// A LUN number reused for a different clone: the host still has the old
/// clone's SCSI device on LUN 0. wait-for-device with the new WWID at that
/// place re-reads the VPD pages, deletes the stale device, rescans LUN 0 and
/// returns the new clone's disk.
#[test]
#[ignore = "needs the lab kernel"]
fn executor_reused_lun_number_is_repaired() {
    let scratch = require_lab();
    let portal = "127.0.0.1:3260";
    let iqn = "iqn.2026-11.io.goldmount.lab:reuse";
    let lio = Lio::new(LioConfig::new(iqn, vec![portal.parse().unwrap()]));
    let initiator = initiator_iqn();
    let mk = |name: &str, serial: &str| {
        let file = scratch.join(format!("{name}.img"));
        write_pattern(&file, 16 << 20, name);
        Backstore {
            name: name.into(),
            file,
            size: 16 << 20,
            unit_serial: serial.into(),
        }
    };
    let a = mk("gm_reuse_a", "a1b2c3d4-0000-4000-8000-00000000000a");
    let b = mk("gm_reuse_b", "b1c2d3e4-0000-4000-8000-00000000000b");
    lio.ensure_target().unwrap();
    lio.ensure_acl(&initiator).unwrap();
    let wwn_a = lio.ensure_backstore(&a).unwrap();
    let wwn_b = lio.ensure_backstore(&b).unwrap();
    assert_ne!(wwn_a, wwn_b);
    assert_eq!(wwn_b, naa_wwn_for_serial(&b.unit_serial));
    lio.map_lun(0, &a.name, std::slice::from_ref(&initiator))
        .unwrap();
    discover(portal);
    set_manual_scan(iqn, portal);
    login(iqn, portal);
    let cleanup = || {
        logout(iqn, portal);
        let _ = lio.unmap_lun(0);
        let _ = lio.remove_acl(&initiator);
        let _ = lio.remove_backstore(&a.name);
        let _ = lio.remove_backstore(&b.name);
        remove_lio_target(&lio);
    };
    let root = host_root();
    let session = executor::iscsi_sysfs::sessions(&root)
        .into_iter()
        .find(|s| s.target_name == iqn)
        .expect("session");
    let place = ScanTarget::IscsiSession {
        session: session.id,
        lun: 0,
    };
    let plan = executor::rescan::plan(&root, &place).unwrap();
    eprintln!("plan before any scan: {plan:?}");
    executor::rescan::scan(&root, &place).unwrap();
    let spec_a = WaitSpec {
        wwid: wwn_a.clone(),
        serial: Some(a.unit_serial.clone()),
        location: Some(place.clone()),
        timeout: Duration::from_secs(60),
        multipath: MultipathPolicy::Never,
    };
    let fa = executor::wait::wait(&root, &spec_a).unwrap();
    // The appliance now presents clone B on the same LUN number.
    lio.unmap_lun(0).unwrap();
    lio.map_lun(0, &b.name, std::slice::from_ref(&initiator))
        .unwrap();
    let spec_b = WaitSpec {
        wwid: wwn_b.clone(),
        serial: Some(b.unit_serial.clone()),
        ..spec_a.clone()
    };
    let res = executor::wait::wait(&root, &spec_b);
    let fb = match res {
        Ok(f) => f,
        Err(e) => {
            cleanup();
            panic!("reused LUN not repaired: {e}");
        }
    };
    eprintln!(
        "A: {}\nB: {}",
        serde_json::to_string(&fa).unwrap(),
        serde_json::to_string(&fb).unwrap()
    );
    let bytes = read_at(Path::new(&fb.node), 0, 16);
    let r = executor::remove::remove(&root, &fb.node, &Default::default());
    cleanup();
    assert!(fb.wwid.contains(&wwn_b.replace("naa.", "")), "{fb:?}");
    assert_eq!(fb.serial.as_deref(), Some(b.unit_serial.as_str()));
    // verified from the device itself: the refresh read B's pages on the old
    // sdX, which was then deleted and scanned again
    assert_eq!(fb.repaired.len(), 1, "{fb:?}");
    assert!(fb.repaired[0].contains(&a.unit_serial), "{fb:?}");
    assert!(
        String::from_utf8_lossy(&bytes).contains("gm_reuse_b"),
        "{bytes:?}"
    );
    r.unwrap();
}
