//! The sysfs readers against a tree captured in the lab guest from a live
//! open-iscsi session to the appliance's LIO target (see
//! fixtures/iscsi-session/CAPTURED for how it was captured). In the lab the
//! same session read through libopeniscsiusr gave exactly these values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use iscsi::sysfs::{ScsiAddress, SessionDisk, Sysfs};
use iscsi::{Portal, Session};

fn fixture() -> Sysfs {
    Sysfs::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iscsi-session"))
}

#[test]
fn session_from_captured_tree() {
    let s = fixture();
    assert_eq!(s.session_ids().unwrap(), vec![2]);
    assert_eq!(
        s.sessions().unwrap(),
        vec![Session {
            sid: 2,
            target_iqn: "iqn.2026-11.io.goldmount.lab:iscsi-a".into(),
            tpgt: Some(1),
            portal: Portal::new("127.0.0.1", 3260),
            persistent_portal: Portal::new("127.0.0.1", 3260),
            iface_name: "default".into(),
            transport: "tcp".into(),
            initiator_iqn: "iqn.1993-08.org.debian:01:deb816d2c8da".into(),
        }]
    );
    let st = s.session_state(2).unwrap();
    assert_eq!(st.state, "LOGGED_IN");
    assert_eq!(
        st.address,
        ScsiAddress {
            host: 0,
            channel: 0,
            target: 0
        }
    );
    // iscsi_tcp leaves the host's initiator name "(null)": read as empty.
    assert_eq!(s.host_initiator_name(0).unwrap(), "");
}

#[test]
fn disks_of_captured_session() {
    let s = fixture();
    assert_eq!(
        s.session_disks(2).unwrap(),
        vec![SessionDisk {
            name: "sda".into(),
            lun: 1,
            partitions: vec![]
        }]
    );
    assert!(s.session_disks(3).unwrap().is_empty());
}

#[test]
fn missing_session_is_an_error_naming_the_path() {
    let e = fixture().session(7).unwrap_err().to_string();
    assert!(e.contains("session7"), "{e}");
    // No iscsi transport at all (no class dir): no sessions, not an error.
    assert!(Sysfs::new("/nonexistent-root")
        .sessions()
        .unwrap()
        .is_empty());
}
