//! `goldmount probe` as a user runs it: real images made by mkfs/sgdisk,
//! compared with `blkid -p -o udev`, and the error paths with their exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn goldmount() -> Command {
    Command::new(env!("CARGO_BIN_EXE_goldmount"))
}

fn tool(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test ({e})"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

fn ext4_image(dir: &Path) -> PathBuf {
    let p = sparse(dir, "ext4.img", 64 << 20);
    tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "data disk",
            "-U",
            "0b5c7a52-9d1e-4d1c-8a3f-1f2e3d4c5b6a",
            p.to_str().unwrap(),
        ],
    );
    p
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn udev_output_matches_blkid_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let img = ext4_image(dir.path());
    let ours = goldmount()
        .args(["probe", "--format", "udev"])
        .arg(&img)
        .output()
        .unwrap();
    let blkid = Command::new("blkid")
        .args(["-p", "-o", "udev"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(code(&ours), 0, "{}", stderr(&ours));
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&blkid.stdout)
    );
    assert!(String::from_utf8_lossy(&ours.stdout).contains("ID_FS_LABEL_ENC=data\\x20disk"));
}

#[test]
fn json_has_the_tree_and_io_counts() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "gpt.img", 96 << 20);
    tool(
        "sgdisk",
        &[
            "-n1:2048:+40M",
            "-t1:8300",
            "-c1:boot",
            "-n2:0:+40M",
            "-t2:8e00",
            img.to_str().unwrap(),
        ],
    );
    // An ext4 inside partition 1 (offset 1 MiB).
    tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "boot",
            "-E",
            "offset=1048576",
            img.to_str().unwrap(),
            "40M",
        ],
    );
    let out = goldmount()
        .args(["probe", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let disk = &v[0];
    assert_eq!(disk["table"]["kind"], "gpt");
    assert_eq!(disk["partitions"].as_array().unwrap().len(), 2);
    let p1 = &disk["partitions"][0];
    assert_eq!(p1["partition"]["number"], 1);
    assert_eq!(p1["partition"]["start"], 1_048_576);
    assert_eq!(p1["partition"]["name"], "boot");
    assert_eq!(p1["content"]["signature"]["fs_type"], "ext4");
    // At most 9 read calls per probed region (fsdetect's read plan), here the
    // disk and its two partitions; blkid -p needs 43-52 per filesystem.
    let reads = disk["io"]["read_calls"].as_u64().unwrap();
    assert!(
        reads > 0 && reads <= 27,
        "expected at most 9 reads per region, got {reads}"
    );
}

#[test]
fn empty_image_exits_2_and_prints_nothing_in_udev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "zero.img", 8 << 20);
    let out = goldmount()
        .args(["probe", "--format", "udev"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(out.stdout.is_empty());
}

#[test]
fn ambivalent_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let x = sparse(dir.path(), "x.img", 320 << 20);
    tool("mkfs.xfs", &["-q", "-f", x.to_str().unwrap()]);
    let e = ext4_image(dir.path());
    // A stale xfs superblock under a new ext4: which one is real is unknown.
    let sb = std::fs::read(&x).unwrap()[..512].to_vec();
    let f = std::fs::OpenOptions::new().write(true).open(&e).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &sb, 0).unwrap();
    let out = goldmount()
        .args(["probe", "--format", "udev"])
        .arg(&e)
        .output()
        .unwrap();
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("ID_FS_AMBIVALENT=filesystem:xfs filesystem:ext4"));
    let text = goldmount().args(["probe"]).arg(&e).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("AMBIVALENT"));
}

#[test]
fn errors_are_specific_and_exit_1() {
    let out = goldmount()
        .args(["probe", "/nonexistent/disk.img"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("/nonexistent/disk.img: no such file"),
        "{}",
        stderr(&out)
    );

    let out = goldmount().args(["probe", "/etc"]).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("not a regular file or block device"),
        "{}",
        stderr(&out)
    );

    let out = goldmount()
        .args(["probe", "--sector-size", "1000", "/etc"])
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        2,
        "clap rejects a bad sector size with its usage error"
    );
    assert!(stderr(&out).contains("power of two"));
}

#[test]
fn permission_denied_is_reported_as_such() {
    // Root bypasses file permissions, so drop to nobody with setpriv (util-linux).
    let dir = tempfile::tempdir().unwrap();
    let img = ext4_image(dir.path());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_goldmount"),
            "probe",
        ])
        .arg(&img)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn region_probe_matches_blkid_offset() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "off.img", 80 << 20);
    tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "inner",
            "-E",
            "offset=8388608",
            img.to_str().unwrap(),
            "64M",
        ],
    );
    let ours = goldmount()
        .args([
            "probe", "--format", "udev", "--offset", "8388608", "--size", "67108864",
        ])
        .arg(&img)
        .output()
        .unwrap();
    let blkid = Command::new("blkid")
        .args(["-p", "-o", "udev", "-O", "8388608", "-S", "67108864"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(code(&ours), code(&blkid));
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&blkid.stdout)
    );
    assert!(String::from_utf8_lossy(&ours.stdout).contains("ID_FS_LABEL=inner"));
}

/// A loop device over `img`, detached on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn every_io_mode_gives_blkids_answer_on_a_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = ext4_image(dir.path());
    let out = Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&img)
        .output()
        .expect("losetup (util-linux)");
    assert!(out.status.success(), "{}", stderr(&out));
    let lo = Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let blkid = Command::new("blkid")
        .args(["-p", "-o", "udev", &lo.0])
        .output()
        .unwrap();
    assert_eq!(code(&blkid), 0);
    for mode in [
        None,
        Some("no-read-ahead"),
        Some("direct"),
        Some("read-ahead"),
    ] {
        let mut cmd = goldmount();
        cmd.args(["probe", "--format", "udev"]);
        if let Some(m) = mode {
            cmd.args(["--io", m]);
        }
        let ours = cmd.arg(&lo.0).output().unwrap();
        assert_eq!(code(&ours), 0, "--io {mode:?}: {}", stderr(&ours));
        // A whole loop device is no partition: no ID_PART_ENTRY_* lines,
        // exactly as blkid.
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&blkid.stdout),
            "--io {mode:?}"
        );
        assert!(stderr(&ours).is_empty(), "{}", stderr(&ours));
    }
    let json = goldmount()
        .args(["probe", "--json", &lo.0])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v[0].get("partition_entry").is_none(), "{v}");
    let bad = goldmount()
        .args(["probe", "--io", "sometimes", &lo.0])
        .output()
        .unwrap();
    assert_eq!(code(&bad), 2, "clap rejects an unknown --io mode");
}
