//! The kernel uevent listener that wakes wait-for-device, against the real
//! kernel of this machine: attaching a loop device must wake it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn attaching_a_loop_device_wakes_the_listener() {
    let l = executor::uevent::Listener::open()
        .expect("netlink uevent socket (needs Linux, root not required)");
    // drain whatever other engineers' loop devices are doing right now
    while !l.wait_events(Duration::from_millis(50)).is_empty() {}
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("uevent.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let t0 = Instant::now();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output()
        .expect("losetup (apt: mount)");
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let name = dev.trim_start_matches("/dev/").to_string();
    let want = format!("/devices/virtual/block/{name}");
    let mut seen = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) && !seen.iter().any(|e: &String| e.ends_with(&want))
    {
        seen.extend(l.wait_events(Duration::from_millis(500)));
    }
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(
        seen.iter().any(|e| e.ends_with(&want)),
        "no uevent for {want} within 5 s of attaching it; saw {seen:?}"
    );
}
