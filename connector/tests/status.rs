//! `goldmount status`: volumes with their phase, and the operations in
//! flight — read from /proc/locks, never by taking a volume's lock (that
//! would make a concurrent command fail as busy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{hostile, Env};

#[test]
fn status_lists_volumes_and_operations_in_flight() {
    let env = Env::new();
    let img = env.path().join("s.img");
    hostile::ext4(&img, 16, "st", &hostile::uuid(21), None, &[]);
    env.mount_json(&img, "shown", &[]);
    // Another process holds volume "busy"'s lock the way goldmount does (flock).
    let locks = env.run_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = locks.join("busy.lock");
    // -o: the lock stays with flock itself (not the sleep), so killing it frees the lock.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("FLOCK"))
        || !lock.exists()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let s: serde_json::Value = serde_json::from_str(&env.gm_ok(&["status", "--json"])).unwrap();
    assert_eq!(s["in_flight"], serde_json::json!(["busy"]), "{s}");
    assert_eq!(s["volumes"][0]["volume"], "shown", "{s}");
    assert_eq!(s["volumes"][0]["phase"], "mounted", "{s}");
    assert_eq!(s["registration"]["state"], "not_configured", "{s}");
    // Asking did not disturb the holder, and the volume's own lock is free.
    assert!(holder.try_wait().unwrap().is_none());
    // The whole group: flock and its sleep.
    common::tool("kill", &["--", &format!("-{}", holder.id())]);
    holder.wait().unwrap();
    let s: serde_json::Value = serde_json::from_str(&env.gm_ok(&["status", "--json"])).unwrap();
    assert_eq!(s["in_flight"], serde_json::json!([]), "{s}");
    env.gm_ok(&["unmount", "--volume", "shown"]);
}
