//! Real-kernel lab scenarios. They need LIO, open-iscsi, udev and XFS with
//! reflink, so they are `#[ignore]`d on the host and run inside a QEMU guest by
//! `cargo xtask lab` (one test process per scenario, as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use appliance::lio::{naa_wwn_for_serial, Backstore, Lio, LioConfig, LioError};
use goldmount_tests::lab::*;

const PORTAL: &str = "127.0.0.1:3260";
const IMG_SIZE: u64 = 64 << 20;
const DISK_WAIT: Duration = Duration::from_secs(60);

fn lio_for(iqn: &str) -> Lio {
    Lio::new(LioConfig::new(iqn, vec![PORTAL.parse().unwrap()]))
}

/// Undoes everything a direct-LIO scenario configured, even when it panics.
struct LioTeardown {
    lio: Lio,
    luns: Vec<u32>,
    backstores: Vec<String>,
    acl: String,
}

impl Drop for LioTeardown {
    fn drop(&mut self) {
        logout(&self.lio.config().target_iqn, PORTAL);
        for lun in &self.luns {
            if let Err(e) = self.lio.unmap_lun(*lun) {
                eprintln!("teardown unmap_lun({lun}): {e}");
            }
        }
        if let Err(e) = self.lio.remove_acl(&self.acl) {
            eprintln!("teardown remove_acl: {e}");
        }
        for b in &self.backstores {
            if let Err(e) = self.lio.remove_backstore(b) {
                eprintln!("teardown remove_backstore({b}): {e}");
            }
        }
        remove_lio_target(&self.lio);
    }
}

/// lio.rs against the real kernel: target + backstore + ACL + LUN through
/// configfs (every call twice: idempotent), login with manual scan, a targeted
/// scan, and the disk's wwid equals `naa_wwn_for_serial`. Foreign configfs
/// objects are refused, and teardown leaves no trace.
#[test]
#[ignore = "needs the lab kernel"]
fn lio_direct_single_lun_wwid() {
    let scratch = require_lab();
    let iqn = "iqn.2026-11.io.goldmount.lab:direct";
    let lio = lio_for(iqn);
    let initiator = initiator_iqn();
    let gold = scratch.join("gold.img");
    write_pattern(&gold, IMG_SIZE, "GOLD-direct");
    let serial = "1a2b3c4d-5e6f-4711-8a9b-cdef01234567";
    let b = Backstore {
        name: "gm_direct_gold".into(),
        file: gold.clone(),
        size: IMG_SIZE,
        unit_serial: serial.into(),
    };
    let _td = LioTeardown {
        lio: lio.clone(),
        luns: vec![0],
        backstores: vec![b.name.clone()],
        acl: initiator.clone(),
    };

    for _ in 0..2 {
        lio.ensure_target().unwrap();
        let wwn = lio.ensure_backstore(&b).unwrap();
        assert_eq!(wwn, naa_wwn_for_serial(serial));
        lio.ensure_acl(&initiator).unwrap();
        lio.map_lun(0, &b.name, std::slice::from_ref(&initiator))
            .unwrap();
    }
    let wwn = naa_wwn_for_serial(serial);
    assert_eq!(
        fs::read_to_string(lio.tpg_dir().join("enable"))
            .unwrap()
            .trim(),
        "1"
    );
    assert!(lio.portal_dir(&PORTAL.parse().unwrap()).is_dir());
    assert!(lio.acl_dir(&initiator).join("lun_0").is_dir());

    // A mismatching re-ensure is refused, not silently reconfigured.
    let other = Backstore {
        size: IMG_SIZE / 2,
        ..b.clone()
    };
    assert!(matches!(
        lio.ensure_backstore(&other),
        Err(LioError::Mismatch { .. })
    ));
    // A backstore still exported through a LUN is not removed.
    assert!(matches!(
        lio.remove_backstore(&b.name),
        Err(LioError::StillMapped { .. })
    ));

    // A storage object somebody else created is never touched.
    let foreign_hba = PathBuf::from("/sys/kernel/config/target/core/fileio_900");
    fs::create_dir(&foreign_hba).unwrap();
    fs::create_dir(foreign_hba.join("foreign")).unwrap();
    let err = lio.remove_backstore("foreign").unwrap_err();
    assert!(matches!(err, LioError::NotOurs { .. }), "{err}");
    assert!(foreign_hba.join("foreign").is_dir());
    fs::remove_dir(foreign_hba.join("foreign")).unwrap();
    fs::remove_dir(&foreign_hba).unwrap();

    let disc = discover(PORTAL);
    assert!(disc.contains(iqn), "discovery did not list {iqn}: {disc}");
    set_manual_scan(iqn, PORTAL);
    let before = lio_disks();
    login(iqn, PORTAL);
    let (host, chan, tid) = wait_until("the iSCSI session in sysfs", DISK_WAIT, || {
        session_scsi_address(iqn)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lio_disks(),
        before,
        "manual scan: login alone must not create disks"
    );
    scan_lun(host, chan, tid, 0);
    let dev = wait_disk(&wwn, DISK_WAIT);
    eprintln!("LUN 0 -> {} wwid {wwn}", dev.display());
    assert_eq!(read_at(&dev, 0, 4096), read_at(&gold, 0, 4096));
    assert_eq!(
        read_at(&dev, IMG_SIZE - 4096, 4096),
        read_at(&gold, IMG_SIZE - 4096, 4096)
    );
    let size_sectors: u64 = fs::read_to_string(
        Path::new("/sys/block")
            .join(dev.file_name().unwrap())
            .join("size"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    assert_eq!(size_sectors * 512, IMG_SIZE);
    delete_disk(&dev);
    logout(iqn, PORTAL);
    drop(_td);
    assert!(!lio.target_dir().exists(), "target left behind");
    assert!(lio.ensure_backstore(&b).is_ok() && lio.remove_backstore(&b.name).is_ok());
}

/// A reflink clone of the gold image (XFS `-m reflink=1`) as a second LUN of
/// the same target: a targeted scan of LUN 1 brings exactly it in, with its own
/// WWN and the gold's content; writes to it leave the gold unchanged; unmap
/// removes it from configfs.
#[test]
#[ignore = "needs the lab kernel"]
fn lio_direct_reflink_clone_second_lun() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let iqn = "iqn.2026-11.io.goldmount.lab:clones";
    let lio = lio_for(iqn);
    let initiator = initiator_iqn();
    let gold = xfs.mnt.join("gold.img");
    write_pattern(&gold, IMG_SIZE, "GOLD-clones");
    let clone = xfs.mnt.join("clone1.img");
    run(
        "cp",
        &[
            "--reflink=always",
            gold.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert!(
        has_shared_extents(&clone),
        "cp --reflink=always made no shared extents"
    );
    let gold_b = Backstore {
        name: "gm_clones_gold".into(),
        file: gold.clone(),
        size: IMG_SIZE,
        unit_serial: "0a0a0a0a-0000-4000-8000-00000000a001".into(),
    };
    let clone_b = Backstore {
        name: "gm_clones_c1".into(),
        file: clone.clone(),
        size: IMG_SIZE,
        unit_serial: "0c0c0c0c-0000-4000-8000-00000000c001".into(),
    };
    let td = LioTeardown {
        lio: lio.clone(),
        luns: vec![0, 1],
        backstores: vec![gold_b.name.clone(), clone_b.name.clone()],
        acl: initiator.clone(),
    };
    lio.ensure_target().unwrap();
    lio.ensure_acl(&initiator).unwrap();
    let gold_wwn = lio.ensure_backstore(&gold_b).unwrap();
    lio.map_lun(0, &gold_b.name, std::slice::from_ref(&initiator))
        .unwrap();

    discover(PORTAL);
    set_manual_scan(iqn, PORTAL);
    login(iqn, PORTAL);
    let (host, chan, tid) =
        wait_until("the iSCSI session", DISK_WAIT, || session_scsi_address(iqn));
    scan_lun(host, chan, tid, 0);
    let gold_dev = wait_disk(&gold_wwn, DISK_WAIT);

    // Present the clone while the session is up; only a targeted scan of LUN 1.
    let clone_wwn = lio.ensure_backstore(&clone_b).unwrap();
    assert_ne!(clone_wwn, gold_wwn);
    lio.map_lun(1, &clone_b.name, std::slice::from_ref(&initiator))
        .unwrap();
    let n_before = lio_disks().len();
    scan_lun(host, chan, tid, 1);
    let clone_dev = wait_disk(&clone_wwn, DISK_WAIT);
    assert_eq!(lio_disks().len(), n_before + 1);
    eprintln!(
        "gold {} {gold_wwn}, clone {} {clone_wwn}",
        gold_dev.display(),
        clone_dev.display()
    );
    assert_eq!(read_at(&clone_dev, 8192, 4096), read_at(&gold, 8192, 4096));

    // Write to the clone through iSCSI: the clone file changes, the gold does not.
    let gold_before = read_at(&gold, 1 << 20, 4096);
    let mut data = vec![0u8; 4096];
    data[..13].copy_from_slice(b"CLONE-WRITTEN");
    write_dev_at(&clone_dev, 1 << 20, &data);
    assert_eq!(read_at(&clone, 1 << 20, 4096), data);
    assert_eq!(read_at(&gold, 1 << 20, 4096), gold_before);
    assert_eq!(read_at(&gold_dev, 1 << 20, 4096), gold_before);

    // Unpresent the clone: initiator deletes the disk, target unmaps LUN 1.
    delete_disk(&clone_dev);
    lio.unmap_lun(1).unwrap();
    lio.unmap_lun(1).unwrap();
    assert!(!lio.lun_dir(1).exists());
    assert!(!lio.acl_dir(&initiator).join("lun_1").exists());
    lio.remove_backstore(&clone_b.name).unwrap();
    scan_lun(host, chan, tid, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        disk_with_wwid(&clone_wwn),
        None,
        "unmapped LUN 1 came back on rescan"
    );
    assert_eq!(
        disk_with_wwid(&gold_wwn).as_deref(),
        gold_dev.file_name().and_then(|n| n.to_str())
    );
    delete_disk(&gold_dev);
    drop(td);
    drop(xfs);
}

/// Tears the REST scenario down even when it panics.
struct RestTeardown {
    lio: Lio,
    initiator: String,
}

impl Drop for RestTeardown {
    fn drop(&mut self) {
        logout(&self.lio.config().target_iqn, PORTAL);
        wipe_lio(&self.lio, std::slice::from_ref(&self.initiator));
    }
}

/// The appliance, driven over its REST API, presents reflink clones of a gold
/// copy as LUNs of its LIO target; the initiator finds each by the announced
/// WWN after a targeted scan; writes stay in the clone; unpresent unmaps; and
/// a restart (after LIO's configuration is wiped, as by a reboot) re-creates
/// the presentation from the appliance's store.
#[test]
#[ignore = "needs the lab kernel"]
fn appliance_rest_iscsi_present_unpresent_restart() {
    let scratch = require_lab();
    let xfs = ReflinkXfs::create(&scratch, 512);
    let target_iqn = "iqn.2026-11.io.goldmount.lab:appliance";
    let initiator = initiator_iqn();
    let lio = lio_for(target_iqn);
    let data = xfs.mnt.join("data");
    let src = xfs.mnt.join("source.img");
    write_pattern(&src, IMG_SIZE, "GOLD-rest");
    let mut app = ApplianceProc::start(
        "127.0.0.1:8470",
        &[
            "--backend",
            "iscsi",
            "--data-dir",
            data.to_str().unwrap(),
            "--import-from",
            xfs.mnt.to_str().unwrap(),
            "--portal",
            PORTAL,
            "--target-iqn",
            target_iqn,
        ],
        &scratch.join("appliance.log"),
    );
    let _td = RestTeardown {
        lio: lio.clone(),
        initiator: initiator.clone(),
    };

    let gold = app.post(
        "/v1/gold-copies",
        serde_json::json!({"name": "pg-gold", "source": src}),
    );
    let gold_file = PathBuf::from(gold["file"].as_str().unwrap());
    app.post(
        "/v1/hosts",
        serde_json::json!({"name": "labhost", "iqns": [initiator]}),
    );
    let mut luns = Vec::new();
    for name in ["c1", "c2"] {
        let c = app.post(
            "/v1/clones",
            serde_json::json!({"name": name, "gold": "pg-gold"}),
        );
        assert_eq!(c["copy_mode"], "reflink", "clone {name}: {c}");
        let p = app.post(
            "/v1/presentations",
            serde_json::json!({"clone": name, "host": "labhost"}),
        );
        assert_eq!(p["transport"], "iscsi", "{p}");
        assert_eq!(p["target_iqn"], target_iqn, "{p}");
        let wwn = p["wwn"].as_str().unwrap().to_string();
        assert_eq!(wwn, naa_wwn_for_serial(c["unit_serial"].as_str().unwrap()));
        let lun = u32::try_from(p["lun"].as_u64().unwrap()).unwrap();
        luns.push((name, lun, wwn, PathBuf::from(c["file"].as_str().unwrap())));
    }
    assert_ne!(luns[0].1, luns[1].1, "two clones on one LUN number");

    discover(PORTAL);
    set_manual_scan(target_iqn, PORTAL);
    login(target_iqn, PORTAL);
    let (host, chan, tid) = wait_until("the iSCSI session", DISK_WAIT, || {
        session_scsi_address(target_iqn)
    });
    scan_lun(host, chan, tid, luns[0].1);
    let d1 = wait_disk(&luns[0].2, DISK_WAIT);
    assert_eq!(
        disk_with_wwid(&luns[1].2),
        None,
        "targeted scan of LUN {} brought in more",
        luns[0].1
    );
    scan_lun(host, chan, tid, luns[1].1);
    let d2 = wait_disk(&luns[1].2, DISK_WAIT);
    assert_eq!(read_at(&d1, 4096, 4096), read_at(&gold_file, 4096, 4096));
    assert_eq!(read_at(&d2, 4096, 4096), read_at(&gold_file, 4096, 4096));

    let gold_before = read_at(&gold_file, 2 << 20, 4096);
    let mut block = vec![0u8; 4096];
    block[..9].copy_from_slice(b"C2-WRITES");
    write_dev_at(&d2, 2 << 20, &block);
    assert_eq!(
        read_at(&luns[1].3, 2 << 20, 4096),
        block,
        "write did not reach clone c2's file"
    );
    assert_eq!(
        read_at(&gold_file, 2 << 20, 4096),
        gold_before,
        "gold changed"
    );
    assert_eq!(
        read_at(&d1, 2 << 20, 4096),
        gold_before,
        "sibling clone c1 changed"
    );

    // Unpresent c2: the host deletes its disk, the appliance unmaps the LUN.
    delete_disk(&d2);
    let st = app.delete("/v1/presentations/c2?force=true");
    assert!(
        st == 204 || st == 200,
        "DELETE /v1/presentations/c2 -> {st}"
    );
    assert!(
        !lio.lun_dir(luns[1].1).exists(),
        "LUN {} still in configfs",
        luns[1].1
    );
    scan_lun(host, chan, tid, luns[1].1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        disk_with_wwid(&luns[1].2),
        None,
        "unpresented LUN reappeared"
    );

    // Restart after LIO lost its configuration (as after a reboot).
    delete_disk(&d1);
    logout(target_iqn, PORTAL);
    app.kill();
    wipe_lio(&lio, std::slice::from_ref(&initiator));
    assert!(!lio.target_dir().exists());
    app.restart();
    let p = app.get("/v1/presentations/c1");
    assert_eq!(p["wwn"].as_str().unwrap(), luns[0].2);
    wait_until(
        "appliance to re-create LUN in configfs",
        Duration::from_secs(30),
        || lio.lun_dir(luns[0].1).is_dir().then_some(()),
    );
    assert!(
        !lio.lun_dir(luns[1].1).exists(),
        "unpresented clone came back after restart"
    );
    login(target_iqn, PORTAL);
    let (host, chan, tid) = wait_until("the iSCSI session", DISK_WAIT, || {
        session_scsi_address(target_iqn)
    });
    scan_lun(host, chan, tid, luns[0].1);
    let d1 = wait_disk(&luns[0].2, DISK_WAIT);
    assert_eq!(read_at(&d1, 4096, 4096), read_at(&gold_file, 4096, 4096));
    delete_disk(&d1);
    logout(target_iqn, PORTAL);
    let st = app.delete("/v1/presentations/c1?force=true");
    assert!(
        st == 204 || st == 200,
        "DELETE /v1/presentations/c1 -> {st}"
    );
    drop(app);
}
