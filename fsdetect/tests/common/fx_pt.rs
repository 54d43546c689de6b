//! Partition-table fixtures: MBR and GPT disks made by sfdisk/sgdisk at test
//! time, on 512- and 4096-byte sectors, with real filesystems in some
//! partitions so that per-partition probing is exercised too.
//!
//! Every identifier is set explicitly, so tests can assert exact values. Each
//! image is built once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{fixture_path, run, sparse_file, Fixture};

/// Size of every partition-table fixture image.
pub const DISK_SIZE: u64 = 64 * 1024 * 1024;

/// Disk GUID of `pt_gpt3` (PTUUID as blkid prints it).
pub const GPT3_DISK_GUID: &str = "5a4c0f3e-9d2b-4e61-8a7f-0b1c2d3e4f50";
/// Unique GUIDs of `pt_gpt3`'s partitions 1–3.
pub const GPT3_PART_GUIDS: [&str; 3] = [
    "1e0a1b2c-3d4e-4f50-8162-738495a6b7c8",
    "2e0a1b2c-3d4e-4f50-8162-738495a6b7c8",
    "3e0a1b2c-3d4e-4f50-8162-738495a6b7c8",
];
/// Names of `pt_gpt3`'s partitions 1–3.
pub const GPT3_NAMES: [&str; 3] = ["root", "home dir", "swap"];
/// ext4 UUID in `pt_gpt3` partition 1.
pub const GPT3_EXT4_UUID: &str = "0b7e3c1a-5f2d-4e8b-9a61-c3d4e5f60718";

/// Disk id of `pt_mbr_logical` (PTUUID).
pub const MBR_DISK_ID: &str = "1234abcd";
/// Disk GUID of `pt_gpt_4k`.
pub const GPT4K_DISK_GUID: &str = "0e5c3f7a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
/// Disk id of `pt_mbr_4k`.
pub const MBR4K_DISK_ID: &str = "cafe0004";
/// Disk GUID of `pt_hybrid`.
pub const HYBRID_DISK_GUID: &str = "7d1e2f30-4a5b-4c6d-8e9f-a0b1c2d3e4f5";

const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const LINUX_HOME: &str = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915";
const LINUX_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
const LINUX_LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";

/// The fixtures of this group.
pub fn fixtures() -> Vec<Fixture> {
    static ALL: OnceLock<Vec<Fixture>> = OnceLock::new();
    ALL.get_or_init(|| vec![gpt3(), mbr_logical(), gpt_4k(), mbr_4k(), hybrid()])
        .clone()
}

/// One fixture of this group by name (built with the rest on first use).
pub fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no partition-table fixture named {name}"))
}

/// Makes a filesystem of `size` bytes with `tool args… <file>` in a scratch
/// file, then copies it into `img` at byte `offset` (sparse, no truncation).
/// Works for every mkfs, whatever its own offset support.
pub fn mkfs_into(img: &Path, offset: u64, size: u64, tool: &str, args: &[&str]) {
    let tmp = PathBuf::from(format!("{}.part-{offset}", img.display()));
    sparse_file(&tmp, size);
    let mut full: Vec<&str> = args.to_vec();
    let tmp_s = tmp.to_str().unwrap();
    full.push(tmp_s);
    run(tool, &full);
    assert_eq!(offset % 512, 0, "mkfs_into needs a 512-aligned offset");
    run(
        "dd",
        &[
            &format!("if={tmp_s}"),
            &format!("of={}", img.display()),
            "bs=512",
            &format!("seek={}", offset / 512),
            "conv=notrunc,sparse",
            "status=none",
        ],
    );
    std::fs::remove_file(&tmp).unwrap();
}

/// A read-write loop device with a given sector size, for writing 4K-sector
/// tables with sfdisk (which sizes a plain file in 512-byte sectors).
struct RwLoop(String);

impl RwLoop {
    fn attach(img: &Path, sector: u32) -> Self {
        let dev = run(
            "losetup",
            &[
                "--find",
                "--show",
                "--sector-size",
                &sector.to_string(),
                img.to_str().unwrap(),
            ],
        );
        Self(dev.trim().to_string())
    }
}

impl Drop for RwLoop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

/// Writes an sfdisk script to a file or device.
pub fn sfdisk(target: &str, script: &str) {
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel", target])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sfdisk ({e}): apt-get install fdisk"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk {target} failed: {}\nscript:\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_image(name: &str) -> PathBuf {
    let path = fixture_path(name);
    sparse_file(&path, DISK_SIZE);
    path
}

fn fx(name: &str, path: PathBuf, sector_size: u32) -> Fixture {
    Fixture {
        name: name.to_string(),
        path,
        sector_size,
        needs_loop: sector_size != 512,
    }
}

const MIB: u64 = 1024 * 1024;

/// GPT, 512-byte sectors: ext4 "root", vfat "home dir", swap.
fn gpt3() -> Fixture {
    let img = new_image("pt_gpt3");
    let script = format!(
        "label: gpt\nlabel-id: {GPT3_DISK_GUID}\n\n\
         start=2048, size=32768, type={LINUX_FS}, uuid={}, name=\"{}\"\n\
         start=34816, size=32768, type={LINUX_HOME}, uuid={}, name=\"{}\"\n\
         start=67584, size=32768, type={LINUX_SWAP}, uuid={}, name=\"{}\"\n",
        GPT3_PART_GUIDS[0],
        GPT3_NAMES[0],
        GPT3_PART_GUIDS[1],
        GPT3_NAMES[1],
        GPT3_PART_GUIDS[2],
        GPT3_NAMES[2],
    );
    sfdisk(img.to_str().unwrap(), &script);
    mkfs_into(
        &img,
        MIB,
        16 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-U",
            GPT3_EXT4_UUID,
            "-L",
            "root",
            "-E",
            "hash_seed=0b7e3c1a-5f2d-4e8b-9a61-c3d4e5f60718",
        ],
    );
    mkfs_into(
        &img,
        17 * MIB,
        16 * MIB,
        "mkfs.vfat",
        &["-i", "1a2b3c4d", "-n", "HOME"],
    );
    mkfs_into(
        &img,
        33 * MIB,
        16 * MIB,
        "mkswap",
        &[
            "-q",
            "-U",
            "5c0a7e21-9b3d-4f6e-8a1c-2d3e4f5a6b7c",
            "-L",
            "swp",
        ],
    );
    fx("pt_gpt3", img, 512)
}

/// MBR, 512-byte sectors: two primaries (ext4, swap) and an extended
/// partition with three logicals (ext4, vfat, empty LVM type).
fn mbr_logical() -> Fixture {
    let img = new_image("pt_mbr_logical");
    let script = format!(
        "label: dos\nlabel-id: 0x{MBR_DISK_ID}\n\n\
         start=2048, size=16384, type=83, bootable\n\
         start=18432, size=8192, type=82\n\
         start=26624, size=104448, type=5\n\
         start=28672, size=16384, type=83\n\
         start=47104, size=16384, type=c\n\
         start=65536, size=8192, type=8e\n"
    );
    sfdisk(img.to_str().unwrap(), &script);
    mkfs_into(
        &img,
        MIB,
        8 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-U",
            "6a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
            "-L",
            "boot",
        ],
    );
    mkfs_into(
        &img,
        9 * MIB,
        4 * MIB,
        "mkswap",
        &["-q", "-U", "7b1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"],
    );
    mkfs_into(
        &img,
        14 * MIB,
        8 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-U",
            "8c1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
            "-L",
            "logical5",
        ],
    );
    mkfs_into(
        &img,
        23 * MIB,
        8 * MIB,
        "mkfs.vfat",
        &["-i", "0bad0006", "-n", "LOG6"],
    );
    fx("pt_mbr_logical", img, 512)
}

/// GPT on 4096-byte sectors: ext4 in partition 1, an empty LVM-typed
/// partition 2 named "data".
fn gpt_4k() -> Fixture {
    let img = new_image("pt_gpt_4k");
    {
        let lo = RwLoop::attach(&img, 4096);
        sfdisk(
            &lo.0,
            &format!(
                "label: gpt\nlabel-id: {GPT4K_DISK_GUID}\n\n\
                 start=256, size=4096, type={LINUX_FS}, uuid=11111111-2222-4333-8444-555555555555, name=\"root4k\"\n\
                 start=4352, size=2048, type={LINUX_LVM}, uuid=21111111-2222-4333-8444-555555555555, name=\"data\"\n"
            ),
        );
    }
    mkfs_into(
        &img,
        MIB,
        16 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-U",
            "9d1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
            "-L",
            "root4k",
        ],
    );
    fx("pt_gpt_4k", img, 4096)
}

/// MBR on 4096-byte sectors: ext4 primary, an extended partition with one
/// swap logical.
fn mbr_4k() -> Fixture {
    let img = new_image("pt_mbr_4k");
    {
        let lo = RwLoop::attach(&img, 4096);
        sfdisk(
            &lo.0,
            &format!(
                "label: dos\nlabel-id: 0x{MBR4K_DISK_ID}\n\n\
                 start=256, size=4096, type=83\n\
                 start=4352, size=8192, type=f\n\
                 start=4608, size=2048, type=82\n"
            ),
        );
    }
    mkfs_into(
        &img,
        MIB,
        16 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-U",
            "ad1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
            "-L",
            "mbr4k",
        ],
    );
    mkfs_into(
        &img,
        4608 * 4096,
        8 * MIB,
        "mkswap",
        &["-q", "-U", "bd1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"],
    );
    fx("pt_mbr_4k", img, 4096)
}

/// A hybrid MBR (0xEE plus a real entry for partition 1) over a GPT, made
/// with sgdisk: blkid and fsdetect must both report the GPT.
fn hybrid() -> Fixture {
    let img = new_image("pt_hybrid");
    let p = img.to_str().unwrap();
    run(
        "sgdisk",
        &[
            "-o",
            "-U",
            HYBRID_DISK_GUID,
            "-n",
            "1:2048:+16M",
            "-t",
            "1:8300",
            "-c",
            "1:efi-ish",
            "-u",
            "1:c1111111-2222-4333-8444-555555555555",
            "-n",
            "2:0:+8M",
            "-t",
            "2:8300",
            "-u",
            "2:c2111111-2222-4333-8444-555555555555",
            p,
        ],
    );
    run("sgdisk", &["-h", "1", p]);
    mkfs_into(
        &img,
        MIB,
        16 * MIB,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-U",
            "cd1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
            "-L",
            "hybrid1",
        ],
    );
    fx("pt_hybrid", img, 512)
}
