//! libopeniscsiusr on this machine (the real library, loaded at run time):
//! it loads, and its answers agree with the fallback readers. The host kernel
//! has no iSCSI, so sessions are empty here; the lab checks a live session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use iscsi::{inventory, sysfs::Sysfs, usr};
use std::sync::Mutex;
use std::time::Duration;

/// The host's node database is shared: tests that read or change it take turns.
static NODE_DB: Mutex<()> = Mutex::new(());

#[test]
fn library_loads_and_agrees_with_fallbacks() {
    let _db = NODE_DB.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        usr::available(),
        "libopeniscsiusr.so.0 not loadable: apt-get install libopeniscsiusr (open-iscsi)"
    );
    let lib = usr::sessions().unwrap();
    let fallback = Sysfs::default().sessions().unwrap();
    assert_eq!(lib, fallback);
    let (_, src) = inventory::sessions().unwrap();
    assert_eq!(src, iscsi::Source::Library);

    // Node records: library vs `iscsiadm -m node` (iface names aside).
    let mut lib_nodes = usr::nodes().unwrap();
    for n in &mut lib_nodes {
        n.iface_name = None;
    }
    assert_eq!(lib_nodes, inventory::nodes_from_iscsiadm().unwrap());
    // The default ifaces exist whatever the configuration.
    let ifs = usr::ifaces().unwrap();
    assert!(
        ifs.iter()
            .any(|i| i.name == "default" && i.transport == "tcp"),
        "{ifs:?}"
    );
}

/// A login that fails (nothing listens at the portal, or iscsid is not
/// running) leaves the host's node database as it was: the record the
/// login created for it is deleted again.
#[test]
fn a_failed_login_leaves_no_node_record() {
    let _db = NODE_DB.lock().unwrap_or_else(|e| e.into_inner());
    let iqn = format!(
        "iqn.2026-12.io.goldmount.test:failed-login-{}",
        std::process::id()
    );
    let portal = iscsi::Portal::new("127.0.0.1", 1);
    let dir = std::path::Path::new("/etc/iscsi/nodes").join(&iqn);
    assert!(!dir.exists());
    let r = iscsi::adm::login(
        &iqn,
        std::slice::from_ref(&portal),
        None,
        Duration::from_secs(20),
    );
    let left = dir.exists();
    if left {
        let _ = iscsi::adm::forget_node(&iqn, &portal, Duration::from_secs(10));
    }
    assert!(r.is_err(), "nothing listens at {portal}: {r:?}");
    assert!(!left, "the failed login left {}", dir.display());
}
