//! The `goldmount-executor` binary on this machine (no SCSI here: loop
//! devices, identity, argument handling and exit codes), plus `--root` runs
//! against captured trees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_goldmount-executor"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn require_tool(tool: &str, apt: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is needed for this test: apt-get install {apt}"
    );
}

#[test]
fn instance_id_matches_this_host() {
    let out = run(&["instance-id", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(v["hostname"], hostname.trim());
    if let Ok(mid) = std::fs::read_to_string("/etc/machine-id") {
        assert_eq!(v["machine_id"], mid.trim());
    }
    let uname = Command::new("uname").arg("-r").output().unwrap();
    assert_eq!(v["kernel"], String::from_utf8_lossy(&uname.stdout).trim());
    let arch = Command::new("uname").arg("-m").output().unwrap();
    assert_eq!(v["arch"], String::from_utf8_lossy(&arch.stdout).trim());
    let osr = std::fs::read_to_string("/etc/os-release").unwrap();
    let id = osr
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(v["os"]["id"], id);
    // every non-loopback IPv4 `ip -4 addr` knows is reported
    if let Ok(ip) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    {
        for line in String::from_utf8_lossy(&ip.stdout).lines() {
            let addr = line
                .split_whitespace()
                .nth(3)
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            if !addr.starts_with("127.") {
                assert!(
                    v["ips"].as_array().unwrap().iter().any(|x| x == addr),
                    "{addr} missing: {}",
                    v["ips"]
                );
            }
        }
    }
    // text mode has the same facts
    let text = String::from_utf8(run(&["instance-id"]).stdout).unwrap();
    assert!(
        text.contains(&format!("hostname: {}", hostname.trim())),
        "{text}"
    );
}

/// A loop device we attach ourselves shows with its size and backing file,
/// and with offset/sizelimit as losetup set them.
#[test]
fn local_devices_lists_our_loop_device() {
    require_tool("losetup", "mount");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("exec-cli-loop.img");
    std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show", "-o", "1048576", "--sizelimit", "4194304"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let name = dev.trim_start_matches("/dev/").to_string();
    let listing = run(&["local-devices", "--json"]);
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(listing.status.success());
    let v = json(&listing);
    let d = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not listed: {v}"));
    assert_eq!(d["transport"], "loop");
    assert_eq!(d["size"], 4194304);
    assert_eq!(d["loop_backing"]["file"], img.to_str().unwrap());
    assert_eq!(d["loop_backing"]["offset"], 1048576);
    assert_eq!(d["loop_backing"]["sizelimit"], 4194304);
    let (maj, min) = {
        let md = std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
        let (a, b) = md.trim().split_once(':').unwrap();
        (a.to_string(), b.to_string())
    };
    assert_eq!(d["dev"], format!("{maj}:{min}"));
    assert_eq!(d["logical_block_size"], 512);
}

#[test]
fn rescan_refuses_wildcards_without_the_flag() {
    for args in [
        &[
            "rescan",
            "--host",
            "0",
            "--channel",
            "-",
            "--target",
            "-",
            "--lun",
            "-",
        ][..],
        &[
            "rescan",
            "--host",
            "0",
            "--channel",
            "0",
            "--target",
            "0",
            "--lun",
            "-",
        ],
        &["rescan", "--host", "0"],
        &["rescan", "--host", "0", "--channel", "0"],
        &["rescan"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("wildcard") || err.contains("--wildcard"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_arguments_give_specific_errors_and_exit_codes() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&[], 2, "no subcommand"),
        (&["frobnicate"], 2, "unknown subcommand"),
        (
            &[
                "rescan",
                "--host",
                "x",
                "--channel",
                "0",
                "--target",
                "0",
                "--lun",
                "0",
            ],
            2,
            "--host x: not a number",
        ),
        (
            &["rescan", "--iscsi-session", "1"],
            2,
            "--iscsi-session needs --lun",
        ),
        (&["rescan", "--wildcard", "--lun", "3"], 2, "only --host"),
        (&["rescan", "--lip", "--wildcard"], 2, "exactly one"),
        (&["wait-for-device"], 2, "needs --wwid"),
        (
            &["wait-for-device", "--wwid", "naa.1", "--timeout", "soon"],
            2,
            "--timeout soon",
        ),
        (
            &["wait-for-device", "--wwid", "naa.1", "--lun", "1"],
            2,
            "--lun needs",
        ),
        (
            &["wait-for-device", "--wwid", "naa.1", "--multipath", "maybe"],
            2,
            "auto, require or never",
        ),
        (&["remove-device"], 2, "needs a device"),
        (
            &["remove-device", "/dev/nonexistent-gm"],
            3,
            "not a whole block device",
        ),
        (&["instance-id", "--force"], 2, "does not take --force"),
        (&["local-devices", "extra"], 2, "unexpected argument"),
        (
            &[
                "rescan",
                "--host",
                "987",
                "--channel",
                "0",
                "--target",
                "0",
                "--lun",
                "0",
            ],
            3,
            "no SCSI host host987",
        ),
        (
            &["rescan", "--iscsi-session", "987", "--lun", "0"],
            3,
            "no iSCSI session 987",
        ),
        (
            &["rescan", "--fc-target", "0x5001", "--lun", "0"],
            2,
            "not a WWN",
        ),
        (
            &["rescan", "--fc-target", "0x500a098000000001", "--lun", "0"],
            3,
            "no online FC remote port",
        ),
        (&["rescan", "--lip"], 3, "no online FC host"),
    ];
    for (args, code, msg) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in {err}");
    }
    // --json errors are JSON on stdout too
    let out = run(&["wait-for-device", "--json"]);
    let v = json(&out);
    assert_eq!(v["error"]["exit_code"], 2);
}

#[test]
fn wait_times_out_with_exit_code_4() {
    let t0 = std::time::Instant::now();
    let out = run(&[
        "wait-for-device",
        "--wwid",
        "naa.60014050000000000000000000000000",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("naa.6001405000"));
}

#[test]
fn help_documents_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout).unwrap();
    for s in [
        "EXIT CODES",
        "instance-id",
        "local-devices",
        "rescan",
        "wait-for-device",
        "remove-device",
        "--wildcard",
        "--lip",
        "--json",
    ] {
        assert!(h.contains(s), "help lacks {s}");
    }
}

/// --root against captured trees, through the binary.
#[test]
fn root_option_reads_captured_trees() {
    let out = run(&[
        "--root",
        fixture("sysfs-fc-handmade").to_str().unwrap(),
        "rescan",
        "--fc-target",
        "0x524a937a1b2c3d01",
        "--lun",
        "3",
        "--dry-run",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(
        v["scans"],
        serde_json::json!([{"host": 5, "line": "0 0 3"}, {"host": 7, "line": "0 0 3"}])
    );
}
