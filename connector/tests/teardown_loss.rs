//! Data lost without a word: when the storage under a volume fails, the
//! writes still in the page cache never reach it. `goldmount unmount` must
//! flush each filesystem first, see the error, finish the teardown and say
//! "data written since the last sync may be lost on …" with exit status 6.
//!
//! The failing storage here is real: the clone image sits on a tmpfs too
//! small for what is written into the clone, so the loop device's writes
//! fail with ENOSPC as an iSCSI LUN's would fail with EIO once its array
//! is gone; ext4 gets the write-back error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::{hostile, loops_backed_by, mounts_under, tool, Env};

/// Unmounts the tmpfs on drop (after Env's own cleanup has run on the
/// volume).
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn unmount_reports_writes_the_storage_never_got() {
    let env = Env::new();
    let small = env.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    tool(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=24m",
            "tmpfs",
            small.to_str().unwrap(),
        ],
    );
    let _tmpfs = Tmpfs(small.clone());
    let img = small.join("clone.img");
    // 64 MiB sparse ext4 on 24 MiB of room: mkfs writes little.
    hostile::ext4(
        &img,
        64,
        "lossy",
        &hostile::uuid(11),
        None,
        &["-E", "nodiscard,lazy_itable_init=1"],
    );
    let m = env.mount_json(&img, "lossy", &[]);
    let at = std::path::PathBuf::from(m["mounts"][0]["mount_path"].as_str().unwrap());
    // 40 MiB into the page cache: more than the tmpfs can take.
    {
        let mut f = std::fs::File::create(at.join("big.bin")).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..40 {
            f.write_all(&chunk).unwrap();
        }
    }
    let r = env.run(&["unmount", "--volume", "lossy", "--deadline", "60"]);
    assert_eq!(
        r.code(),
        Some(6),
        "expected exit 6 (unmounted, data may be lost): {} / {}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr
            .contains("data written since the last sync may be lost on ext4"),
        "{}",
        r.stderr
    );
    // The teardown itself finished: nothing of the volume is left.
    assert!(env.listed().is_empty(), "record left");
    assert_eq!(mounts_under(&env.root()), 0, "mounts left");
    assert_eq!(loops_backed_by(&img), 0, "loop devices left");
}

#[test]
fn a_clean_unmount_reports_no_loss() {
    let env = Env::new();
    let img = env.path().join("ok.img");
    hostile::ext4(&img, 16, "fine", &hostile::uuid(12), None, &[]);
    let m = env.mount_json(&img, "fine", &[]);
    let at = std::path::PathBuf::from(m["mounts"][0]["mount_path"].as_str().unwrap());
    std::fs::write(at.join("f"), b"kept").unwrap();
    let out = env.gm_ok(&["unmount", "--volume", "fine", "--json"]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["data_loss"], serde_json::json!([]), "{rep}");
    assert!(rep["deadline_secs"].as_u64().unwrap() >= 30, "{rep}");
}
