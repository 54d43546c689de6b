//! The three-filesystem LVM gold host's disk the lab scenarios clone, built
//! with the real tools: GPT; p1 ext4 `/boot` (fixed UUID), p2 the LVM PV of
//! `vg_gold` {`root` XFS holding `/etc/fstab`, `home` ext4}, p3 ext4
//! `LABEL=data` for `/srv/data`. The fstab names its filesystems the four
//! usual ways (a `/dev/mapper` path, `UUID=`, a `/dev/VG/LV` path,
//! `LABEL=`), so assembling a clone's tree exercises each of them — and
//! every one of them collides with the live gold when both are on one host.
//!
//! Lab only (loop partitions, device-mapper): these are test helpers that
//! panic with the failing command and its stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{run, try_run, wait_until, CMD_TIMEOUT};

const MIB: u64 = 1 << 20;

/// The gold host's volume group.
pub const VG: &str = "vg_gold";
/// UUID of the `/boot` ext4 (named by `UUID=` in the fstab).
pub const BOOT_UUID: &str = "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10";
/// Size of the whole disk (sparse).
pub const DISK_BYTES: u64 = 432 * MIB;

/// Deterministic pseudo-random bytes (xorshift): content no filesystem
/// dedups or compresses, and a wrong block is seen at once.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Files of the gold host's tree, relative to its `/`, with contents: one
/// or two on each of the four filesystems.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("etc/hostname", b"gold-host\n".to_vec()),
        ("boot/vmlinuz", noise(96 << 10, 1)),
        ("home/alice/notes.txt", b"alice's notes\n".to_vec()),
        ("home/alice/blob.bin", noise(1 << 20, 2)),
        ("srv/data/records.csv", b"id,name\n1,gold\n".to_vec()),
        ("srv/data/big.bin", noise(2 << 20, 3)),
    ]
}

/// The gold host's `/etc/fstab`.
pub fn fstab() -> String {
    format!(
        "# gold host\n/dev/mapper/{VG}-root / xfs defaults 0 0\n\
         UUID={BOOT_UUID} /boot ext4 defaults 0 2\n\
         /dev/{VG}/home /home ext4 defaults 0 2\n\
         LABEL=data /srv/data ext4 defaults 0 2\n"
    )
}

/// Creates `img` (sparse, [`DISK_BYTES`]) with the GPT of the gold disk
/// and nothing else: present it as a disk, then [`fill`] it.
pub fn partition_image(img: &Path) {
    fs::File::create(img)
        .and_then(|f| f.set_len(DISK_BYTES))
        .unwrap_or_else(|e| panic!("creating {}: {e}", img.display()));
    run(
        "sgdisk",
        &[
            "-n1:2048:+32M",
            "-t1:8300",
            "-n2:0:+360M",
            "-t2:8e00",
            "-n3:0:+32M",
            "-t3:8300",
            img.to_str().unwrap(),
        ],
    );
}

/// Partition `n` of whole disk `disk` as the kernel names it
/// (`/dev/sdb` → `/dev/sdb2`, `/dev/loop3` → `/dev/loop3p2`).
pub fn partition(disk: &Path, n: u32) -> PathBuf {
    let d = disk.to_str().unwrap();
    if d.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{d}p{n}"))
    } else {
        PathBuf::from(format!("{d}{n}"))
    }
}

/// `/dev/mapper/vg_gold-<lv>`.
pub fn lv_path(lv: &str) -> PathBuf {
    PathBuf::from(format!("/dev/mapper/{VG}-{lv}"))
}

fn lvm(args: &[&str]) -> String {
    run("lvm", args)
}

fn wait_path(p: &Path) {
    wait_until(&p.display().to_string(), Duration::from_secs(30), || {
        p.exists().then_some(())
    });
}

/// Makes the filesystems and the volume group on `disk` (a whole disk
/// whose partitions from [`partition_image`] the kernel shows), writes
/// [`files`] and the fstab through a temporary mount under `work`, and
/// leaves everything unmounted and the VG deactivated. LVM commands see
/// only `disk`'s PV (`--devices`), so nothing else on the host is touched.
pub fn fill(disk: &Path, work: &Path) {
    let _ = try_run("udevadm", &["settle", "-t", "10"], CMD_TIMEOUT);
    for n in 1..=3 {
        wait_path(&partition(disk, n));
    }
    let p = |n: u32| partition(disk, n).to_str().unwrap().to_string();
    let p2 = p(2);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "boot", "-U", BOOT_UUID, &p(1)],
    );
    lvm(&["pvcreate", "-q", "--devices", &p2, &p2]);
    lvm(&["vgcreate", "-q", "--devices", &p2, VG, &p2]);
    for (lv, size) in [("root", "304M"), ("home", "32M")] {
        lvm(&[
            "lvcreate",
            "-q",
            "--devices",
            &p2,
            "-y",
            "-L",
            size,
            "-n",
            lv,
            VG,
        ]);
    }
    let root = lv_path("root");
    let home = lv_path("home");
    run(
        "mkfs.xfs",
        &["-q", "-f", "-L", "root", root.to_str().unwrap()],
    );
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "home", home.to_str().unwrap()],
    );
    run("mkfs.ext4", &["-q", "-F", "-L", "data", &p(3)]);
    let mnt = work.join("build-root");
    fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    run("mount", &[root.to_str().unwrap(), m]);
    for d in ["etc", "boot", "home", "srv/data", "opt"] {
        fs::create_dir_all(mnt.join(d)).unwrap();
    }
    fs::write(mnt.join("etc/fstab"), fstab()).unwrap();
    let sub = [
        (p(1), mnt.join("boot")),
        (home.to_str().unwrap().to_string(), mnt.join("home")),
        (p(3), mnt.join("srv/data")),
    ];
    for (dev, at) in &sub {
        run("mount", &[dev, at.to_str().unwrap()]);
    }
    for (rel, data) in files() {
        let f = mnt.join(rel);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, data).unwrap();
    }
    for (_, at) in sub.iter().rev() {
        run("umount", &[at.to_str().unwrap()]);
    }
    run("umount", &[m]);
    let _ = fs::remove_dir(&mnt);
    lvm(&["vgchange", "-q", "--devices", &p2, "-an", VG]);
    run("sync", &[]);
}

/// The gold disk as an image file `dir/name`, built on a loop device
/// (partitions scanned) that is detached again.
pub fn build_image(dir: &Path, name: &str) -> PathBuf {
    let img = dir.join(name);
    partition_image(&img);
    let l = run("losetup", &["-f", "-P", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    fill(Path::new(&l), dir);
    run("losetup", &["-d", &l]);
    run("sync", &[]);
    img
}
