//! fc readers against sysfs trees: the hand-made FC tree with online ports
//! and remote ports, and the FCoE fc_host captured in the lab guest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../executor/tests/fixtures")
        .join(name)
}

/// Copies a fixture tree (symlinks kept) so writes land in a scratch copy.
fn scratch_copy(name: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .args(["-a", "--"])
        .arg(fixture(name))
        .arg(t.path().join("root"))
        .status()
        .unwrap();
    assert!(st.success());
    t
}

#[test]
fn handmade_hosts_and_online_flags() {
    let hosts = fc::hosts(&fixture("sysfs-fc-handmade")).unwrap();
    let summary: Vec<(u32, &str, &str, bool)> = hosts
        .iter()
        .map(|h| (h.host, h.wwpn.as_str(), h.port_state.as_str(), h.online))
        .collect();
    assert_eq!(
        summary,
        vec![
            (5, "10000090fa1b2c3d", "Online", true),
            (6, "10000090fa1b2c3e", "Linkdown", false),
            (7, "10000090fa1b2c3f", "Online", true),
        ]
    );
    assert_eq!(hosts[0].wwnn, "20000090fa1b2c3d");
    assert_eq!(hosts[0].speed, "16 Gbit");
    assert_eq!(hosts[0].fabric_name, "100050eb1a2b3c4d");
    assert_eq!(hosts[0].supported_classes, "Class 3");
    // fabric_name 0x0 means "no fabric"
    assert_eq!(hosts[1].fabric_name, "");
}

#[test]
fn handmade_remote_ports() {
    let rp = fc::remote_ports(&fixture("sysfs-fc-handmade")).unwrap();
    let names: Vec<&str> = rp.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rport-5:0-0",
            "rport-5:0-1",
            "rport-5:0-2",
            "rport-5:0-3",
            "rport-7:0-0"
        ]
    );
    let initiator = &rp[2];
    assert_eq!(initiator.roles, ["FCP Initiator"]);
    assert_eq!(initiator.scsi_target_id, None);
    assert!(!initiator.scannable());
    let blocked = &rp[3];
    assert!(!blocked.online);
    assert_eq!(blocked.scsi_target_id, Some(2));
    assert!(!blocked.scannable());
    assert!(rp[1].scannable());
    assert_eq!(rp[1].scsi_target_id, Some(1));
}

#[test]
fn target_scan_resolves_channel_and_target_on_every_path() {
    let t = scratch_copy("sysfs-fc-handmade");
    let root = t.path().join("root");
    // colon spelling, two online paths (host5 and host7)
    let w = fc::scan_target(&root, "52:4a:93:7a:1b:2c:3d:01", 3).unwrap();
    let got: Vec<(u32, &str)> = w.iter().map(|w| (w.host, w.line.as_str())).collect();
    assert_eq!(got, [(5, "0 0 3"), (7, "0 0 3")]);
    for h in [5, 7] {
        let scan = root.join(format!("sys/class/scsi_host/host{h}/scan"));
        assert_eq!(std::fs::read_to_string(scan).unwrap(), "0 0 3");
    }
    // second target port: target id 1, only host5
    let w = fc::plan_target_scan(&root, "0x524a937a1b2c3d02", 7).unwrap();
    assert_eq!(
        w,
        [fc::ScanWrite {
            host: 5,
            line: "0 1 7".into()
        }]
    );
}

#[test]
fn target_scan_refuses_offline_unknown_and_bad_wwpn() {
    let root = fixture("sysfs-fc-handmade");
    let e = fc::plan_target_scan(&root, "0x524a937a1b2c3d09", 0).unwrap_err();
    assert!(matches!(e, fc::FcError::NoSuchTarget { .. }), "{e}");
    assert!(e.to_string().contains("Blocked"), "{e}");
    let e = fc::plan_target_scan(&root, "0x10000090fa000001", 0).unwrap_err();
    assert!(matches!(e, fc::FcError::NoSuchTarget { .. }), "{e}");
    let e = fc::plan_target_scan(&root, "nonsense", 0).unwrap_err();
    assert!(matches!(e, fc::FcError::BadWwn(_)), "{e}");
}

#[test]
fn lip_writes_issue_lip() {
    let t = scratch_copy("sysfs-fc-handmade");
    let root = t.path().join("root");
    fc::issue_lip(&root, 7).unwrap();
    let p = root.join("sys/class/fc_host/host7/issue_lip");
    assert_eq!(std::fs::read_to_string(p).unwrap(), "1");
    assert!(matches!(
        fc::issue_lip(&root, 9),
        Err(fc::FcError::NoSuchHost(9))
    ));
}

#[test]
fn no_fc_transport_is_empty_not_an_error() {
    let t = tempfile::tempdir().unwrap();
    assert!(fc::hosts(t.path()).unwrap().is_empty());
    assert!(fc::remote_ports(t.path()).unwrap().is_empty());
}
