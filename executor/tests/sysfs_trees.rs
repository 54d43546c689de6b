//! executor's readers against sysfs trees captured in the lab guest
//! (tests/fixtures/README.md says how) and the hand-made FC tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use executor::inventory::{self, BlockDevice};
use executor::rescan::{self, ScanTarget, ScanWrite};
use executor::vpd::{self, Association, Designator};
use executor::wait::{self, MultipathPolicy, WaitSpec};
use executor::{identity, remove, Error, Hctl, Root};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn root(name: &str) -> Root {
    let p = fixture(name);
    assert!(p.is_dir(), "missing fixture {}", p.display());
    Root::at(p)
}

/// A scratch copy (symlinks kept), for code that writes sysfs attributes.
fn scratch(name: &str) -> (tempfile::TempDir, Root) {
    let t = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .args(["-a", "--"])
        .arg(fixture(name))
        .arg(t.path().join("root"))
        .status()
        .unwrap();
    assert!(st.success());
    let r = Root::at(t.path().join("root"));
    (t, r)
}

fn dev<'a>(devs: &'a [BlockDevice], name: &str) -> &'a BlockDevice {
    devs.iter().find(|d| d.name == name).unwrap_or_else(|| {
        panic!(
            "{name} not in {:?}",
            devs.iter().map(|d| &d.name).collect::<Vec<_>>()
        )
    })
}

fn disk_at(r: &Root, h: &str) -> String {
    wait::scsi_disks(r)
        .into_iter()
        .find(|(_, x)| x.to_string() == h)
        .unwrap_or_else(|| panic!("no disk at {h}"))
        .0
}

const TREES: &[&str] = &["sysfs-scsi_debug", "sysfs-iscsi", "sysfs-multipath"];

/// The kernel computed `device/wwid` from the same page 0x83: our parser's
/// primary designator must agree on every captured SCSI disk.
#[test]
fn vpd_primary_designator_equals_kernel_wwid_on_every_captured_disk() {
    let mut checked = 0;
    for t in TREES {
        let r = root(t);
        for (name, _) in wait::scsi_disks(&r) {
            let page = r
                .bytes(format!("/sys/block/{name}/device/vpd_pg83"))
                .unwrap();
            let ds = vpd::parse_pg83(&page).unwrap();
            let kernel = r.attr(format!("/sys/block/{name}/device/wwid")).unwrap();
            let ours = vpd::primary(&ds).and_then(|d| d.wwid()).unwrap();
            assert_eq!(ours, kernel, "{t} {name}");
            assert!(vpd::matches(&kernel, &ds, None));
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} disks in the captured trees");
}

#[test]
fn vpd_scsi_debug_page_bytes() {
    let r = root("sysfs-scsi_debug");
    let sd = disk_at(&r, "0:0:0:0");
    let ds =
        vpd::parse_pg83(&r.bytes(format!("/sys/block/{sd}/device/vpd_pg83")).unwrap()).unwrap();
    assert_eq!(
        ds[0],
        Designator::T10 {
            text: "Linux   scsi_debug      2000".into(),
            association: Association::LogicalUnit
        }
    );
    assert_eq!(
        ds[1],
        Designator::Naa {
            hex: "33333330000007d0".into(),
            association: Association::LogicalUnit
        }
    );
    // the target port's NAA and the target device's name string are not the LU's
    assert!(ds.iter().any(|d| matches!(
        d,
        Designator::Naa {
            association: Association::TargetPort,
            ..
        }
    )));
    assert!(ds.iter().any(|d| matches!(
        d,
        Designator::ScsiName {
            association: Association::TargetDevice,
            ..
        }
    )));
    let serial =
        vpd::parse_pg80(&r.bytes(format!("/sys/block/{sd}/device/vpd_pg80")).unwrap()).unwrap();
    assert_eq!(serial, "2000");
    for spelling in [
        "naa.33333330000007d0",
        "333333330000007d0",
        "0x33333330000007D0",
        "wwn-0x33333330000007d0",
    ] {
        assert!(vpd::matches(spelling, &ds, None), "{spelling}");
    }
    // the target port NAA must not match as the LU's identity
    assert!(!vpd::matches("naa.32222220000007ce", &ds, None));
    assert!(!vpd::matches("", &ds, None));
}

#[test]
fn vpd_lio_page_bytes() {
    let r = root("sysfs-iscsi");
    let sd = disk_at(&r, "0:0:0:0");
    let ds =
        vpd::parse_pg83(&r.bytes(format!("/sys/block/{sd}/device/vpd_pg83")).unwrap()).unwrap();
    let p = vpd::primary(&ds).unwrap();
    assert_eq!(p.wwid().unwrap(), "naa.60014056a1f0c2e51b34c7e9d0a00000");
    assert!(ds.iter().any(
        |d| matches!(d, Designator::ScsiName { name, association: Association::TargetPort }
        if name == "iqn.2026-11.io.goldmount.lab:capture,t,0x0001")
    ));
    assert!(ds.iter().any(|d| matches!(d, Designator::T10 { text, .. } if text.contains("6a1f0c2e-51b3-4c7e-9d0a-000000000000"))));
    let serial =
        vpd::parse_pg80(&r.bytes(format!("/sys/block/{sd}/device/vpd_pg80")).unwrap()).unwrap();
    assert_eq!(serial, "6a1f0c2e-51b3-4c7e-9d0a-000000000000");
    // multipath/udev spelling
    assert!(vpd::matches("360014056a1f0c2e51b34c7e9d0a00000", &ds, None));
}

#[test]
fn vpd_rejects_broken_pages() {
    assert_eq!(vpd::parse_pg83(&[0, 0x83]), Err(vpd::VpdError::Short(2)));
    assert_eq!(
        vpd::parse_pg83(&[0, 0x80, 0, 0]),
        Err(vpd::VpdError::WrongPage {
            expected: 0x83,
            got: 0x80
        })
    );
    // a designator that claims 16 bytes but has 4
    let bad = [0, 0x83, 0, 8, 1, 3, 0, 16, 0x60, 1, 2, 3];
    assert_eq!(vpd::parse_pg83(&bad), Err(vpd::VpdError::Truncated(4)));
    assert_eq!(
        vpd::parse_pg80(&[0, 0x80, 0, 4, b'a', b'b', b' ', 0]).unwrap(),
        "ab"
    );
    // EUI-64 and a binary name string
    let eui = [
        0, 0x83, 0, 12, 1, 2, 0, 8, 0x00, 0x25, 0x38, 0xb1, 0x71, 0x00, 0x00, 0x01,
    ];
    let ds = vpd::parse_pg83(&eui).unwrap();
    assert_eq!(ds[0].wwid().unwrap(), "eui.002538b171000001");
    assert!(vpd::matches("2002538b171000001", &ds, None));
}

#[test]
fn inventory_scsi_debug() {
    let r = root("sysfs-scsi_debug");
    let devs = inventory::list(&r, false);
    let sd: Vec<&BlockDevice> = devs.iter().filter(|d| d.name.starts_with("sd")).collect();
    assert_eq!(sd.len(), 4);
    for d in sd {
        let h = d.hctl.unwrap();
        assert_eq!((h.host, h.channel, h.target), (0, 0, 0));
        assert_eq!(d.transport, "scsi_debug");
        assert_eq!(d.size, 8 << 20);
        assert_eq!(d.logical_block_size, 512);
        assert_eq!(d.vendor.as_deref(), Some("Linux"));
        assert_eq!(d.model.as_deref(), Some("scsi_debug"));
        assert_eq!(d.serial.as_deref(), Some(format!("200{}", h.lun).as_str()));
        assert_eq!(
            d.wwid.as_deref(),
            Some(format!("naa.33333330000007d{}", h.lun).as_str())
        );
        assert!(d.iscsi.is_none() && d.fc.is_none());
    }
}

#[test]
fn inventory_loop_partitions_mounts_backing() {
    let r = root("sysfs-loop");
    let devs = inventory::list(&r, false);
    let l0 = dev(&devs, "loop0");
    assert_eq!(l0.transport, "loop");
    assert_eq!(l0.size, 64 << 20);
    let b = l0.loop_backing.as_ref().unwrap();
    assert_eq!(
        (b.file.as_str(), b.offset, b.sizelimit),
        ("/mnt/loop.img", 0, 0)
    );
    let parts: Vec<(&str, u32, u64, u64)> = l0
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.number, p.start, p.size))
        .collect();
    assert_eq!(
        parts,
        [
            ("loop0p1", 1, 2048 * 512, 20 << 20),
            ("loop0p2", 2, 43008 * 512, 30 << 20)
        ]
    );
    assert_eq!(l0.partitions[0].mountpoints, ["/mnt/m1"]);
    assert!(l0.partitions[1].mountpoints.is_empty());
    let l1 = dev(&devs, "loop1");
    assert!(l1.read_only);
    let b = l1.loop_backing.as_ref().unwrap();
    assert_eq!((b.offset, b.sizelimit), (1 << 20, 8 << 20));
    assert_eq!(l1.size, 8 << 20);
    assert!(l1.hctl.is_none() && l1.wwid.is_none());
}

#[test]
fn inventory_iscsi_session_path() {
    let r = root("sysfs-iscsi");
    let devs = inventory::list(&r, false);
    let sd = disk_at(&r, "0:0:0:1");
    let d = dev(&devs, &sd);
    assert_eq!(d.transport, "iscsi");
    let s = d.iscsi.as_ref().unwrap();
    assert_eq!(s.id, 1);
    assert_eq!(s.host, Some(0));
    assert_eq!(s.target_name, "iqn.2026-11.io.goldmount.lab:capture");
    assert_eq!(s.portal, "127.0.0.1:3260");
    assert_eq!(s.state, "LOGGED_IN");
    assert_eq!(d.vendor.as_deref(), Some("LIO-ORG"));
    assert_eq!(
        d.serial.as_deref(),
        Some("7c2e1d3f-62c4-4d8f-8e1b-111111111111")
    );
    assert_eq!(d.size, 32 << 20);
}

#[test]
fn inventory_multipath_holders() {
    let r = root("sysfs-multipath");
    let devs = inventory::list(&r, false);
    let maps: Vec<&BlockDevice> = devs
        .iter()
        .filter(|d| d.dm.as_ref().is_some_and(|m| m.uuid.starts_with("mpath-")))
        .collect();
    assert_eq!(maps.len(), 2, "one map per LUN");
    for m in maps {
        assert_eq!(m.transport, "dm");
        assert_eq!(m.slaves.len(), 2, "two portals → two paths: {m:?}");
        for s in &m.slaves {
            let p = dev(&devs, s);
            assert_eq!(p.holders.len(), 1);
            assert!(p.holders[0].is_multipath());
            assert_eq!(p.holders[0].name, m.name);
            let wwid = p.wwid.as_deref().unwrap().replace("naa.", "3");
            assert_eq!(m.dm.as_ref().unwrap().uuid, format!("mpath-{wwid}"));
        }
    }
}

#[test]
fn inventory_fc_handmade() {
    let r = root("sysfs-fc-handmade");
    let devs = inventory::list(&r, false);
    let d = dev(&devs, "sdq");
    assert_eq!(d.transport, "fc");
    assert_eq!(d.hctl.unwrap().to_string(), "5:0:0:3");
    let f = d.fc.as_ref().unwrap();
    assert_eq!(
        (f.rport.as_str(), f.wwpn.as_str()),
        ("rport-5:0-0", "524a937a1b2c3d01")
    );
    assert_eq!(d.physical_block_size, 4096);
}

#[test]
fn identity_from_captured_trees() {
    let id = identity::collect(&root("sysfs-iscsi"));
    assert_eq!(id.hostname, "goldmount-lab-guest");
    assert_eq!(
        id.iscsi.initiator_iqn,
        "iqn.1993-08.org.debian:01:goldmountlab1"
    );
    assert_eq!(
        id.iscsi.session_initiator_names,
        ["iqn.1993-08.org.debian:01:goldmountlab1"]
    );
    assert!(id.iscsi.consistent);
    assert_eq!(id.os.id, "debian");
    assert!(id.kernel.starts_with("6.1.0-"), "{}", id.kernel);

    let id = identity::collect(&root("sysfs-fcoe"));
    assert_eq!(id.fc.ports.len(), 1);
    let p = &id.fc.ports[0];
    assert_eq!(p.port_state, "Offline");
    assert!(!p.online);
    assert_eq!(p.wwpn.len(), 16);
    assert_ne!(p.wwpn, p.wwnn);
    assert!(
        id.fc.registration_wwpns.is_empty(),
        "offline ports are not registered"
    );
    // nothing about NVMe in the lab: empty, not an error
    assert_eq!(id.nvme.hostnqn, "");

    let id = identity::collect(&root("sysfs-fc-handmade"));
    assert_eq!(
        id.fc.registration_wwpns,
        ["10000090fa1b2c3d", "10000090fa1b2c3f"]
    );
}

#[test]
fn identity_flags_sessions_with_another_initiator_name() {
    let (_t, r) = scratch("sysfs-iscsi");
    std::fs::write(
        r.path("/etc/iscsi/initiatorname.iscsi"),
        "InitiatorName=iqn.2026-11.changed:host\n",
    )
    .unwrap();
    let id = identity::collect(&r);
    assert_eq!(id.iscsi.initiator_iqn, "iqn.2026-11.changed:host");
    assert!(!id.iscsi.consistent);
}

#[test]
fn rescan_plans() {
    let r = root("sysfs-iscsi");
    // a scanned session: channel/target from its target directory
    let p = rescan::plan(&r, &ScanTarget::IscsiSession { session: 1, lun: 4 }).unwrap();
    assert_eq!(
        p,
        [ScanWrite {
            host: 0,
            line: "0 0 4".into()
        }]
    );
    let e = rescan::plan(&r, &ScanTarget::IscsiSession { session: 9, lun: 0 }).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let h = Hctl {
        host: 0,
        channel: 0,
        target: 0,
        lun: 7,
    };
    assert_eq!(
        rescan::plan(&r, &ScanTarget::Hctl(h)).unwrap(),
        [ScanWrite {
            host: 0,
            line: "0 0 7".into()
        }]
    );
    let h = Hctl { host: 4, ..h };
    assert!(matches!(
        rescan::plan(&r, &ScanTarget::Hctl(h)),
        Err(Error::NotFound(_))
    ));
    let w = rescan::plan(
        &root("sysfs-multipath"),
        &ScanTarget::Wildcard { host: None },
    )
    .unwrap();
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|w| w.line == "- - -"));
}

/// Right after a manual-scan login the session has no target directory yet:
/// the scan is "- - L" on the session's own host.
#[test]
fn rescan_plan_for_a_session_before_any_scan() {
    let (_t, r) = scratch("sysfs-iscsi");
    let dev = r.real("/sys/class/iscsi_session/session1/device").unwrap();
    std::fs::remove_dir_all(r.path(format!("{dev}/target0:0:0"))).unwrap();
    let p = rescan::plan(&r, &ScanTarget::IscsiSession { session: 1, lun: 2 }).unwrap();
    assert_eq!(
        p,
        [ScanWrite {
            host: 0,
            line: "- - 2".into()
        }]
    );
    rescan::scan(&r, &ScanTarget::IscsiSession { session: 1, lun: 2 }).unwrap();
    assert_eq!(
        std::fs::read_to_string(r.path("/sys/class/scsi_host/host0/scan")).unwrap(),
        "- - 2"
    );
}

#[test]
fn wait_finds_path_and_multipath_map() {
    let (_t, r) = scratch("sysfs-scsi_debug");
    let spec = WaitSpec {
        wwid: "333333330000007d2".into(),
        serial: Some("2002".into()),
        location: None,
        timeout: Duration::from_secs(2),
        multipath: MultipathPolicy::Auto,
    };
    let f = wait::wait(&r, &spec).unwrap();
    assert_eq!(f.paths[0].hctl.to_string(), "0:0:0:2");
    assert_eq!(f.node, format!("/dev/{}", f.paths[0].name));
    assert!(f.repaired.is_empty());

    let (_t2, r) = scratch("sysfs-multipath");
    let sd = disk_at(&r, "1:0:0:1");
    let wwid = r.attr(format!("/sys/block/{sd}/device/wwid")).unwrap();
    let f = wait::wait(
        &r,
        &WaitSpec {
            wwid: wwid.clone(),
            serial: None,
            ..spec.clone()
        },
    )
    .unwrap();
    let m = f.multipath.as_ref().unwrap();
    assert_eq!(m.uuid, format!("mpath-{}", wwid.replace("naa.", "3")));
    assert_eq!(f.node, format!("/dev/mapper/{}", m.name));
    assert_eq!(f.paths.len(), 2);
    let f = wait::wait(
        &r,
        &WaitSpec {
            wwid,
            serial: None,
            multipath: MultipathPolicy::Never,
            ..spec
        },
    )
    .unwrap();
    assert!(f.node.starts_with("/dev/sd"));
}

/// A wrong serial where the LUN should be: the device is deleted and its
/// LUN rescanned once; the captured tree cannot change, so the second look
/// sees the same identity and the error names both.
#[test]
fn wait_repairs_once_then_reports_mismatch() {
    let (_t, r) = scratch("sysfs-scsi_debug");
    let sd = disk_at(&r, "0:0:0:1");
    let spec = WaitSpec {
        wwid: "naa.33333330000007d1".into(),
        serial: Some("WRONG".into()),
        location: Some(ScanTarget::Hctl("0:0:0:1".parse().unwrap())),
        timeout: Duration::from_secs(5),
        multipath: MultipathPolicy::Never,
    };
    let e = wait::wait(&r, &spec).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("serial WRONG") && msg.contains("serial 2001") && msg.contains("0:0:0:1"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(r.path(format!("/sys/block/{sd}/device/delete"))).unwrap(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(r.path("/sys/class/scsi_host/host0/scan")).unwrap(),
        "0 0 1"
    );
    // the VPD pages were re-read from the device before judging
    assert_eq!(
        std::fs::read_to_string(r.path(format!("/sys/block/{sd}/device/rescan"))).unwrap(),
        "1"
    );
}

#[test]
fn wait_times_out_naming_what_it_waited_for() {
    let r = root("sysfs-scsi_debug");
    let spec = WaitSpec {
        wwid: "naa.6001405deadbeef".into(),
        serial: None,
        location: None,
        timeout: Duration::from_millis(300),
        multipath: MultipathPolicy::Never,
    };
    let e = wait::wait(&r, &spec).unwrap_err();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{e}");
    assert!(e.to_string().contains("naa.6001405deadbeef"));
    assert_eq!(e.exit_code(), 4);
}

/// Adds, in a scratch copy of a tree, a kpartx partition map `dm-9`
/// (`part1-mpath-…`) stacked on multipath map `map`.
fn add_kpartx_partition(r: &Root, map: &str) -> String {
    let base = r.path("/sys/devices/virtual/block/dm-9");
    std::fs::create_dir_all(base.join("dm")).unwrap();
    std::fs::create_dir_all(base.join("holders")).unwrap();
    std::fs::write(base.join("dev"), "254:9\n").unwrap();
    let map_name = r.attr(format!("/sys/block/{map}/dm/name")).unwrap();
    let map_uuid = r.attr(format!("/sys/block/{map}/dm/uuid")).unwrap();
    std::fs::write(base.join("dm/name"), format!("{map_name}-part1\n")).unwrap();
    std::fs::write(base.join("dm/uuid"), format!("part1-{map_uuid}\n")).unwrap();
    std::os::unix::fs::symlink("../devices/virtual/block/dm-9", r.path("/sys/block/dm-9")).unwrap();
    // holders/ of the map holds a link to the partition map.
    let holders = std::fs::canonicalize(r.path(format!("/sys/block/{map}")))
        .unwrap()
        .join("holders");
    // git keeps no empty directories: the captured map's empty `holders/`
    // exists only in the tree it was captured from.
    std::fs::create_dir_all(&holders).unwrap();
    std::os::unix::fs::symlink(&base, holders.join("dm-9")).unwrap();
    format!("{map_name}-part1")
}

/// kpartx's partition map of a multipath map is not a reason to refuse:
/// `multipath -f` removes it with the map. Mounted, it is, and by name.
#[test]
fn remove_plan_kpartx_partition_counts_only_when_used() {
    let (_t, r) = scratch("sysfs-multipath");
    let sd = disk_at(&r, "0:0:0:0");
    let (dm, _) = remove::plan(&r, &format!("/dev/{sd}"))
        .unwrap()
        .map
        .unwrap();
    let part = add_kpartx_partition(&r, &dm);
    let st = remove::plan(&r, &format!("/dev/{sd}")).unwrap();
    assert!(st.in_use.is_empty(), "{:?}", st.in_use);

    let mut mi = std::fs::read_to_string(r.path("/proc/self/mountinfo")).unwrap();
    mi.push_str("98 1 254:9 / /srv/p1 rw - ext4 /dev/mapper/p1 rw\n");
    std::fs::write(r.path("/proc/self/mountinfo"), mi).unwrap();
    let st = remove::plan(&r, &format!("/dev/{sd}")).unwrap();
    assert_eq!(st.in_use, vec![format!("{part} mounted at /srv/p1")]);
}

#[test]
fn remove_plans_stack_and_refuses_when_held() {
    let r = root("sysfs-multipath");
    let sd = disk_at(&r, "0:0:0:0");
    let st = remove::plan(&r, &format!("/dev/{sd}")).unwrap();
    let (dm, _name) = st.map.clone().unwrap();
    assert_eq!(st.paths.len(), 2);
    assert!(st.paths.contains(&sd));
    assert!(st.in_use.is_empty(), "{:?}", st.in_use);
    // the same stack from the map's side
    let st2 = remove::plan(&r, &dm).unwrap();
    assert_eq!(st2.paths, st.paths);

    // mounted map → refused, naming the mountpoint
    let (_t, r2) = scratch("sysfs-multipath");
    let devno = r2.attr(format!("/sys/block/{dm}/dev")).unwrap();
    let mut mi = std::fs::read_to_string(r2.path("/proc/self/mountinfo")).unwrap();
    mi.push_str(&format!(
        "99 1 {devno} / /srv/clone1 rw,relatime - xfs /dev/mapper/x rw\n"
    ));
    std::fs::write(r2.path("/proc/self/mountinfo"), mi).unwrap();
    let e = remove::remove(&r2, &format!("/dev/{sd}"), &Default::default()).unwrap_err();
    assert!(matches!(e, Error::InUse { .. }), "{e}");
    assert!(e.to_string().contains("/srv/clone1"), "{e}");
    assert_eq!(e.exit_code(), 6);

    // not SCSI → refused; unknown → not found
    let e = remove::plan(&root("sysfs-loop"), "/dev/loop0").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let e = remove::plan(&r, "/dev/sdzz").unwrap_err();
    assert_eq!(e.exit_code(), 3);
}

/// Makes a scratch tree show a running multipathd (the captures have no
/// /proc/<pid> of it).
fn multipathd_runs(r: &Root) {
    std::fs::create_dir_all(r.path("/proc/4242")).unwrap();
    std::fs::write(r.path("/proc/4242/comm"), "multipathd\n").unwrap();
}

/// A short `Auto` wait for `wwid`.
fn auto_spec(wwid: &str) -> WaitSpec {
    WaitSpec {
        wwid: wwid.to_string(),
        serial: None,
        location: None,
        timeout: Duration::from_millis(400),
        multipath: MultipathPolicy::Auto,
    }
}

/// The first path of a LUN is up, the second not yet scanned, and multipathd
/// has not made the map: with two iSCSI sessions to the target, `Auto`
/// waits for the map (handing out the path would race multipathd) and says
/// why. With the other session gone it hands out the path at once.
#[test]
fn wait_auto_waits_for_the_map_while_other_sessions_to_the_target_exist() {
    let (_t, r) = scratch("sysfs-multipath");
    let first = disk_at(&r, "1:0:0:1");
    let second = disk_at(&r, "0:0:0:1");
    let wwid = r.attr(format!("/sys/block/{first}/device/wwid")).unwrap();
    // Before multipathd: no map holds the path; the other path is not there.
    for sd in [&first, &second] {
        let holders = std::fs::canonicalize(r.path(format!("/sys/block/{sd}")))
            .unwrap()
            .join("holders");
        for h in std::fs::read_dir(&holders).unwrap().flatten() {
            std::fs::remove_file(h.path()).unwrap();
        }
    }
    std::fs::remove_file(r.path(format!("/sys/block/{second}"))).unwrap();
    // The wwids file would say so too; here only the sessions may.
    let _ = std::fs::remove_file(r.path("/etc/multipath/wwids"));
    multipathd_runs(&r);
    let spec = auto_spec(&wwid);
    let e = wait::wait(&r, &spec).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{msg}");
    assert!(msg.contains("waiting for the multipath map"), "{msg}");
    assert!(msg.contains("2 iSCSI sessions to this target"), "{msg}");

    // One session left logged in: a single-path LUN, the path is the device.
    std::fs::write(
        r.path("/sys/class/iscsi_session/session1/state"),
        "FAILED\n",
    )
    .unwrap();
    let f = wait::wait(&r, &spec).unwrap();
    assert_eq!(f.node, format!("/dev/{first}"));
    assert!(f.multipath.is_none());
}

/// The FC side of the same rule, on the hand-made FC tree (labelled so in
/// fixtures/README.md): sdq came through one of three online FCP ports of its
/// array (same WWNN), so with multipathd running `Auto` waits for the map;
/// with the other two ports blocked it is a single-path LUN.
#[test]
fn wait_auto_waits_for_the_map_while_other_fc_target_ports_are_online() {
    let (_t, r) = scratch("sysfs-fc-handmade");
    multipathd_runs(&r);
    let spec = auto_spec(&r.attr("/sys/block/sdq/device/wwid").unwrap());
    let e = wait::wait(&r, &spec).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{msg}");
    assert!(msg.contains("3 online FC ports of this target"), "{msg}");

    for rport in ["rport-5:0-1", "rport-7:0-0"] {
        let state = std::fs::canonicalize(r.path(format!("/sys/class/fc_remote_ports/{rport}")))
            .unwrap()
            .join("port_state");
        std::fs::write(state, "Blocked\n").unwrap();
    }
    let f = wait::wait(&r, &spec).unwrap();
    assert_eq!(f.node, "/dev/sdq");
}
