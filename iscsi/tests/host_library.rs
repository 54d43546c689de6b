//! libopeniscsiusr on this machine (the real library, loaded at run time):
//! it loads, and its answers agree with the fallback readers. The host kernel
//! has no iSCSI, so sessions are empty here; the lab checks a live session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use iscsi::{inventory, sysfs::Sysfs, usr};

#[test]
fn library_loads_and_agrees_with_fallbacks() {
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
