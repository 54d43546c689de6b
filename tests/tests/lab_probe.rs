//! Lab scenarios for `goldmount probe` on real kernel block devices: a
//! partition device's `--format udev` output (with its `ID_PART_ENTRY_*`
//! lines, which udev's by-partuuid/by-partlabel links need) is byte for byte
//! `blkid -p -o udev`'s, on GPT and MBR loop devices with kernel partition
//! nodes; and the cold-probe benchmark of an iSCSI LUN (LIO on loopback,
//! netem delay on lo) against blkid and udev's blkid sequence, with the
//! bytes that reached the LUN (`--bench`, or `cargo xtask lab lab_probe`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appliance::lio::{Backstore, Lio, LioConfig};
use goldmount_tests::lab::*;

const MIB: u64 = 1 << 20;

fn goldmount_bin() -> PathBuf {
    PathBuf::from(
        std::env::var_os("GOLDMOUNT_BIN").expect("GOLDMOUNT_BIN (set by cargo xtask lab)"),
    )
}

/// Writes an sfdisk script to an image file.
fn sfdisk(img: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk {}: {}\nscript:\n{script}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loop device with kernel partition nodes (`losetup -P`), detached on drop.
struct PartLoop {
    dev: String,
}

impl PartLoop {
    fn attach(img: &Path, parts: &[u32]) -> Self {
        let dev = run(
            "losetup",
            &["-P", "--find", "--show", img.to_str().unwrap()],
        )
        .trim()
        .to_string();
        let lo = PartLoop { dev };
        for &n in parts {
            let p = lo.part(n);
            wait_until(
                &format!("partition node {p}"),
                Duration::from_secs(30),
                || Path::new(&p).exists().then_some(()),
            );
        }
        let _ = try_run("udevadm", &["settle", "-t", "30"], CMD_TIMEOUT);
        lo
    }
    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }
}

impl Drop for PartLoop {
    fn drop(&mut self) {
        let _ = try_run("udevadm", &["settle", "-t", "30"], CMD_TIMEOUT);
        let _ = try_run("losetup", &["-d", &self.dev], CMD_TIMEOUT);
    }
}

/// stdout and exit code of a command (any status).
fn output(prog: &Path, args: &[&str]) -> (String, i32) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A copy of `goldmount` on the scratch tmpfs: executed from the guest's 9p
/// root, the 75 MB debug binary took seconds per process to page in.
fn goldmount_on_tmpfs(scratch: &Path, bin: &Path) -> PathBuf {
    let gm = scratch.join("goldmount");
    fs::copy(bin, &gm).unwrap_or_else(|e| panic!("copy {}: {e}", bin.display()));
    gm
}

/// Compares `goldmount probe --format udev DEV` (the binary `gm`) with
/// `blkid -p -o udev DEV` for every device; returns the differences (empty
/// when identical) and logs both outputs.
fn udev_differences(gm: &Path, devs: &[String]) -> Vec<String> {
    let mut diffs = Vec::new();
    for d in devs {
        let (want, want_rc) = output(Path::new("blkid"), &["-p", "-o", "udev", d]);
        let (got, got_rc) = output(gm, &["probe", "--format", "udev", d]);
        eprintln!("==== {d}: blkid rc {want_rc}\n{want}---- goldmount rc {got_rc}\n{got}");
        if want != got || want_rc != got_rc {
            diffs.push(format!(
                "{d}: blkid (rc {want_rc}):\n{want}goldmount (rc {got_rc}):\n{got}"
            ));
        }
    }
    diffs
}

/// `goldmount probe --format udev` of partition devices is `blkid -p -o udev`
/// byte for byte, ID_PART_ENTRY_* included: a GPT disk (names with spaces,
/// UTF-8 and trailing blanks, attribute bits, an unnamed and an empty
/// partition) and an MBR disk (boot flag, extended partition, logicals),
/// whole disks and every partition node the kernel made.
#[test]
#[ignore = "needs the lab kernel"]
fn probe_partition_udev_matches_blkid() {
    let scratch = require_lab();
    let gpt = scratch.join("probe-gpt.img");
    fs::File::create(&gpt).unwrap().set_len(64 * MIB).unwrap();
    sfdisk(
        &gpt,
        "label: gpt\nlabel-id: 4E1B3F3A-5C6D-4E7F-8091-A2B3C4D5E6F7\n\n\
         start=2048, size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, \
         uuid=11111111-2222-4333-8444-555555555555, name=\"root fs\", attrs=\"RequiredPartition LegacyBIOSBootable\"\n\
         start=34816, size=32768, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, \
         uuid=21111111-2222-4333-8444-555555555555, name=\"données du labo – ünï  \", attrs=\"GUID:60,63\"\n\
         start=67584, size=16384, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, \
         uuid=31111111-2222-4333-8444-555555555555\n\
         start=83968, size=16384, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, \
         uuid=41111111-2222-4333-8444-555555555555, name=\"swap/1\"\n",
    );
    let mbr = scratch.join("probe-mbr.img");
    fs::File::create(&mbr).unwrap().set_len(64 * MIB).unwrap();
    sfdisk(
        &mbr,
        "label: dos\nlabel-id: 0x1234abcd\n\n\
         start=2048, size=20480, type=83, bootable\n\
         start=22528, size=8192, type=8e\n\
         start=30720, size=90112, type=5\n\
         start=32768, size=20480, type=83\n\
         start=55296, size=16384, type=82\n\
         start=73728, size=16384, type=83\n",
    );
    // The file systems are not what is checked here (the host tests cover
    // them): one ext4 per disk, swap elsewhere, as mkfs.ext4 is slow
    // under TCG.
    let t0 = Instant::now();
    let g = PartLoop::attach(&gpt, &[1, 2, 3, 4]);
    run("mkfs.ext4", &["-q", "-F", "-L", "data disk", &g.part(1)]);
    run(
        "mkswap",
        &["-U", "0b5c7a52-9d1e-4d1c-8a3f-1f2e3d4c5b6a", &g.part(2)],
    );
    run("mkswap", &["-L", "lab swap", &g.part(4)]);
    let m = PartLoop::attach(&mbr, &[1, 2, 3, 5, 6, 7]);
    run("mkswap", &["-L", "boot", &m.part(1)]);
    run("mkfs.ext4", &["-q", "-F", "-L", "logical5", &m.part(5)]);
    run("mkswap", &[&m.part(6)]);
    let _ = try_run("udevadm", &["settle", "-t", "30"], CMD_TIMEOUT);
    eprintln!("disks ready after {:.1}s", t0.elapsed().as_secs_f64());

    let mut devs = vec![g.dev.clone()];
    devs.extend([1, 2, 3, 4].map(|n| g.part(n)));
    devs.push(m.dev.clone());
    devs.extend([1, 2, 3, 5, 6, 7].map(|n| m.part(n)));
    let gm = goldmount_on_tmpfs(&scratch, &goldmount_bin());
    let diffs = udev_differences(&gm, &devs);
    eprintln!("compared after {:.1}s", t0.elapsed().as_secs_f64());
    assert!(
        diffs.is_empty(),
        "{} of {} devices differ:\n{}",
        diffs.len(),
        devs.len(),
        diffs.join("\n")
    );
    // The values udev's links come from are there.
    let (p2, _) = output(&gm, &["probe", "--format", "udev", &g.part(2)]);
    assert!(
        p2.contains("ID_PART_ENTRY_UUID=21111111-2222-4333-8444-555555555555\n"),
        "{p2}"
    );
    assert!(
        p2.contains("ID_PART_ENTRY_FLAGS=0x9000000000000000\n"),
        "{p2}"
    );
}

// ------------------------------------------------------------ the benchmark

const PORTAL: &str = "127.0.0.1:3260";
const BENCH_IQN: &str = "iqn.2026-12.io.goldmount.lab:probe";
const RUNS: usize = 7;

/// Undoes the benchmark's LIO configuration and netem, even on panic.
struct BenchTeardown {
    lio: Lio,
    acl: String,
    backstore: String,
}

impl Drop for BenchTeardown {
    fn drop(&mut self) {
        let _ = try_run("tc", &["qdisc", "del", "dev", "lo", "root"], CMD_TIMEOUT);
        logout(BENCH_IQN, PORTAL);
        let _ = self.lio.unmap_lun(0);
        let _ = self.lio.remove_acl(&self.acl);
        let _ = self.lio.remove_backstore(&self.backstore);
        remove_lio_target(&self.lio);
    }
}

/// Read requests and 512-byte sectors read so far by a whole disk (its
/// partitions' I/O included), from `/sys/block/<disk>/stat`.
fn read_stat(disk: &str) -> (u64, u64) {
    let s = fs::read_to_string(format!("/sys/block/{disk}/stat")).unwrap();
    let f: Vec<u64> = s.split_whitespace().map(|v| v.parse().unwrap()).collect();
    (f[0], f[2])
}

/// One way of probing the LUN: a list of commands run one after the other.
struct Variant {
    name: &'static str,
    cmds: Vec<(PathBuf, Vec<String>)>,
}

/// One measured run: wall ms, read requests, bytes.
#[derive(Clone, Copy, Default)]
struct Sample {
    ms: f64,
    ios: u64,
    bytes: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Drops the page cache of the disk and of every partition (each partition
/// device has its own), so the next probe reads the LUN.
fn flush(devs: &[String]) {
    let mut args = vec!["--flushbufs"];
    args.extend(devs.iter().map(String::as_str));
    let out = Command::new("blockdev").args(&args).output().unwrap();
    assert!(out.status.success(), "blockdev --flushbufs failed");
}

fn measure(disk: &str, devs: &[String], v: &Variant) -> Sample {
    flush(devs);
    let (ios0, sec0) = read_stat(disk);
    let t0 = Instant::now();
    for (prog, args) in &v.cmds {
        let out = Command::new(prog).args(args).output().unwrap();
        // blkid -p exits 2 on a partition with nothing on it; only a
        // failure to run matters here.
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{} {args:?}: {}",
            prog.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (ios1, sec1) = read_stat(disk);
    Sample {
        ms,
        ios: ios1 - ios0,
        bytes: (sec1 - sec0) * 512,
    }
}

/// Sets the netem delay on lo (each direction), 0 removes it.
fn set_delay_us(us: u64) {
    let _ = try_run("tc", &["qdisc", "del", "dev", "lo", "root"], CMD_TIMEOUT);
    if us > 0 {
        run(
            "tc",
            &[
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                &format!("{us}us"),
            ],
        );
    }
}

/// Cold probe of an iSCSI LUN (GPT: ext4, xfs, an LVM PV) at 0, ~1 and ~5 ms
/// RTT: goldmount's whole-disk probe (read-ahead off, O_DIRECT, and the old
/// read-ahead way) against `blkid -p` of the disk and against udev's
/// sequence (blkid of the disk, then of each partition); wall time, read
/// requests and bytes from `/sys/block/sdX/stat`, page caches of the disk
/// and its partitions dropped before each run. Prints a markdown table.
#[test]
#[ignore = "needs the lab kernel"]
fn probe_bench_iscsi_lun_cold() {
    let scratch = require_lab();
    let img = scratch.join("probe-bench.img");
    let size = 720 * MIB;
    fs::File::create(&img).unwrap().set_len(size).unwrap();
    sfdisk(
        &img,
        "label: gpt\n\n\
         start=2048, size=256MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n\
         size=320MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"data\"\n\
         size=128MiB, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=\"lvm pv\"\n",
    );
    let has_pvcreate = try_run("pvcreate", &["--version"], CMD_TIMEOUT).is_ok();
    {
        let lo = PartLoop::attach(&img, &[1, 2, 3]);
        run("mkfs.ext4", &["-q", "-F", "-L", "root", &lo.part(1)]);
        run("mkfs.xfs", &["-q", "-f", "-L", "data", &lo.part(2)]);
        if has_pvcreate {
            run("pvcreate", &["-q", "--devices", &lo.part(3), &lo.part(3)]);
        } else {
            eprintln!("pvcreate is missing: partition 3 stays empty");
        }
    }
    forget_lvm_autoactivation_records();

    // The target: the image as LUN 0, as the appliance would present it.
    let lio = Lio::new(LioConfig::new(BENCH_IQN, vec![PORTAL.parse().unwrap()]));
    let initiator = initiator_iqn();
    let b = Backstore {
        name: "gm_probe_bench".into(),
        file: img.clone(),
        size,
        unit_serial: "5e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b".into(),
    };
    let _td = BenchTeardown {
        lio: lio.clone(),
        acl: initiator.clone(),
        backstore: b.name.clone(),
    };
    lio.ensure_target().unwrap();
    let wwn = lio.ensure_backstore(&b).unwrap();
    lio.ensure_acl(&initiator).unwrap();
    lio.map_lun(0, &b.name, std::slice::from_ref(&initiator))
        .unwrap();
    discover(PORTAL);
    login(BENCH_IQN, PORTAL);
    let dev = wait_disk(&wwn, Duration::from_secs(90));
    let disk = dev.file_name().unwrap().to_string_lossy().into_owned();
    let parts: Vec<String> = (1..=3).map(|n| format!("/dev/{disk}{n}")).collect();
    for p in &parts {
        wait_until(p, Duration::from_secs(60), || {
            Path::new(p).exists().then_some(())
        });
    }
    let _ = try_run("udevadm", &["settle", "-t", "60"], CMD_TIMEOUT);
    let attr = |a: &str| {
        fs::read_to_string(format!("/sys/block/{disk}/{a}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let read_ahead_kb = attr("queue/read_ahead_kb");
    eprintln!(
        "LUN {} : optimal_io_size {} read_ahead_kb {read_ahead_kb} max_sectors_kb {}",
        dev.display(),
        attr("queue/optimal_io_size"),
        attr("queue/max_sectors_kb")
    );
    let dev_s = dev.to_string_lossy().into_owned();
    let mut all_devs = vec![dev_s.clone()];
    all_devs.extend(parts.iter().cloned());

    // The binaries run from tmpfs, so dropping caches never re-reads them
    // over 9p; only the LUN's pages are dropped between runs.
    // A release build when xtask made one: under TCG a debug build spends
    // about a second of CPU per process, which hides the round trips.
    let (gm_src, profile) = match std::env::var_os("GOLDMOUNT_RELEASE_BIN") {
        Some(p) => (PathBuf::from(p), "release"),
        None => (goldmount_bin(), "debug"),
    };
    eprintln!("timing {} ({profile})", gm_src.display());
    let gm = goldmount_on_tmpfs(&scratch, &gm_src);
    // Same answers on the LUN and its partitions before timing anything.
    let diffs = udev_differences(&gm, &all_devs);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let blkid = PathBuf::from("blkid");
    let probe = |io: &str| {
        let mut a = vec!["probe".to_string(), "--format".into(), "udev".into()];
        if !io.is_empty() {
            a.push("--io".into());
            a.push(io.into());
        }
        a.push(dev_s.clone());
        a
    };
    let blkid_args = |d: &str| vec!["-p".to_string(), "-o".into(), "udev".into(), d.to_string()];
    let variants = vec![
        Variant {
            name: "goldmount (read-ahead off)",
            cmds: vec![(gm.clone(), probe(""))],
        },
        Variant {
            name: "goldmount --io direct",
            cmds: vec![(gm.clone(), probe("direct"))],
        },
        Variant {
            name: "goldmount --io read-ahead (before)",
            cmds: vec![(gm.clone(), probe("read-ahead"))],
        },
        Variant {
            name: "blkid -p disk",
            cmds: vec![(blkid.clone(), blkid_args(&dev_s))],
        },
        Variant {
            name: "udev sequence (blkid disk + 3 partitions)",
            cmds: all_devs
                .iter()
                .map(|d| (blkid.clone(), blkid_args(d)))
                .collect(),
        },
    ];
    // What goldmount asks for (its own I/O counters).
    let json = run(gm.to_str().unwrap(), &["probe", "--json", &dev_s]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let asked_calls = v[0]["io"]["read_calls"].as_u64().unwrap();
    let asked_bytes = v[0]["io"]["bytes_read"].as_u64().unwrap();

    let mut table = String::new();
    table.push_str(&format!(
        "LUN: {size} B, GPT (ext4 256 MiB, xfs 320 MiB, {} 128 MiB), read_ahead_kb={read_ahead_kb}; \
         goldmount ({profile} build) asks {asked_calls} reads / {asked_bytes} B; {RUNS} runs per cell, medians\n\n",
        if has_pvcreate { "LVM PV" } else { "empty" }
    ));
    table.push_str(
        "| netem delay per direction | variant | median ms | min ms | read requests | bytes read | vs udev sequence | vs blkid -p disk |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut goal_lines = Vec::new();
    for delay_us in [0u64, 500, 2500] {
        set_delay_us(delay_us);
        // Warm-up: binaries and libraries into memory, the session busy.
        for v in &variants {
            measure(&disk, &all_devs, v);
        }
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..RUNS {
            for (i, v) in variants.iter().enumerate() {
                samples[i].push(measure(&disk, &all_devs, v));
            }
        }
        let med: Vec<f64> = samples
            .iter()
            .map(|s| median(s.iter().map(|x| x.ms).collect()))
            .collect();
        let udev_ms = med[4];
        let blkid_ms = med[3];
        for (i, v) in variants.iter().enumerate() {
            let s = &samples[i];
            let min = s.iter().map(|x| x.ms).fold(f64::INFINITY, f64::min);
            let ios = median(s.iter().map(|x| x.ios as f64).collect());
            let bytes = median(s.iter().map(|x| x.bytes as f64).collect());
            table.push_str(&format!(
                "| {} µs | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2}× | {:.2}× |\n",
                delay_us,
                v.name,
                med[i],
                min,
                ios,
                bytes,
                udev_ms / med[i],
                blkid_ms / med[i]
            ));
        }
        let gm_bytes = median(samples[0].iter().map(|x| x.bytes as f64).collect());
        goal_lines.push(format!(
            "delay {delay_us} µs: goldmount {:.2}× faster than udev's sequence \
             (direct {:.2}×, read-ahead {:.2}×); bytes read {:.0} for {asked_bytes} asked ({:.2}×)",
            udev_ms / med[0],
            udev_ms / med[1],
            udev_ms / med[2],
            gm_bytes,
            gm_bytes / asked_bytes as f64
        ));
        eprintln!("{table}");
    }
    set_delay_us(0);
    eprintln!(
        "==== PROBE BENCH TABLE ====\n{table}\n{}",
        goal_lines.join("\n")
    );
    eprintln!("==== END PROBE BENCH TABLE ====");
}
