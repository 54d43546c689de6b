//! Fixtures for volume/container formats: md RAID members, LVM2 PVs, LUKS1/2,
//! ZFS pools, iso9660 and squashfs — made with the real tools, with fixed
//! labels and UUIDs, once per test process.
//!
//! md members cannot be made on the development machine (no md driver): they
//! are checked in under `tests/fixtures/md/`, made by `mdadm --create` in the
//! lab guest with `tests/fixtures/md/make-md-fixtures.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{fixture_path, run, sparse_file, Fixture};

/// PV UUID given to `pvcreate --uuid`.
pub const PV_UUID: &str = "AbCdEf-1234-5678-9abc-defg-hijk-lmnopq";
/// PV UUID of the PV whose label is in sector 2.
pub const PV2_UUID: &str = "Zyxwvu-9876-5432-1fed-cba0-QRST-uvwxyz";
/// LUKS1 UUID.
pub const LUKS1_UUID: &str = "11112222-3333-4444-5555-666677778888";
/// LUKS2 UUID, label and subsystem.
pub const LUKS2_UUID: &str = "aaaabbbb-cccc-dddd-eeee-ffff00001111";
/// LUKS2 label.
pub const LUKS2_LABEL: &str = "GoldCrypt";
/// LUKS2 subsystem.
pub const LUKS2_SUBSYSTEM: &str = "goldsub";
/// ISO volume id (PVD, 32 chars max) and the Joliet spelling.
pub const ISO_LABEL: &str = "Gold ISO Volume";
/// A label longer than Joliet's 16 UTF-16 characters.
pub const ISO_LONG_LABEL: &str = "Gold Copy Volume Long Name 1";
/// ZFS image size: not a multiple of 256 KiB, so the end labels are aligned down.
pub const ZFS_SIZE: u64 = 70 * 1024 * 1024 + 100 * 1024;

/// A checked-in md member image.
pub fn md_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/md")
        .join(format!("md-{name}.img"))
}

fn fx(name: &str, path: PathBuf) -> Fixture {
    Fixture {
        name: name.to_string(),
        path,
        sector_size: 512,
        needs_loop: false,
    }
}

/// The md fixtures (metadata 0.90, 1.0, 1.0 over a partitioned array, 1.1, 1.2).
pub fn md_fixtures() -> Vec<Fixture> {
    ["090", "10", "10pt", "11", "12"]
        .iter()
        .map(|n| {
            let p = md_path(n);
            assert!(
                p.exists(),
                "{} missing: run tests/fixtures/md/make-md-fixtures.sh",
                p.display()
            );
            fx(&format!("md-{n}"), p)
        })
        .collect()
}

/// Runs `f` with a read-write loop device over `img` (pvcreate needs a block device).
fn with_rw_loop(img: &Path, f: impl FnOnce(&str)) {
    let dev = run("losetup", &["--find", "--show", img.to_str().unwrap()]);
    let dev = dev.trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _d = Detach(dev.clone());
    f(&dev);
}

/// An LVM2 PV in a VG, label in sector 1 (pvcreate's default).
pub fn lvm_pv() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("lvm-pv");
        sparse_file(&p, 8 << 20);
        with_rw_loop(&p, |dev| {
            run(
                "pvcreate",
                &["--devices", dev, "--uuid", PV_UUID, "--norestorefile", dev],
            );
            run("vgcreate", &["--devices", dev, "fsdetectvg", dev]);
        });
        fx("lvm-pv", p)
    })
}

/// An LVM2 PV whose label is in sector 2 (`--labelsector 2`).
pub fn lvm_pv_sector2() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("lvm-pv-s2");
        sparse_file(&p, 8 << 20);
        with_rw_loop(&p, |dev| {
            run(
                "pvcreate",
                &[
                    "--devices",
                    dev,
                    "--uuid",
                    PV2_UUID,
                    "--norestorefile",
                    "--labelsector",
                    "2",
                    dev,
                ],
            );
        });
        fx("lvm-pv-s2", p)
    })
}

fn key_file() -> PathBuf {
    let k = super::scratch().join("luks.key");
    if !k.exists() {
        std::fs::write(&k, b"fsdetect-test-key").unwrap();
    }
    k
}

/// A LUKS1 container on a plain file.
pub fn luks1() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("luks1");
        sparse_file(&p, 4 << 20);
        let k = key_file();
        run(
            "cryptsetup",
            &[
                "luksFormat",
                "--type",
                "luks1",
                "--batch-mode",
                "--uuid",
                LUKS1_UUID,
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                k.to_str().unwrap(),
                p.to_str().unwrap(),
            ],
        );
        fx("luks1", p)
    })
}

/// A LUKS2 container with label and subsystem.
pub fn luks2() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("luks2");
        sparse_file(&p, 20 << 20);
        let k = key_file();
        run(
            "cryptsetup",
            &[
                "luksFormat",
                "--type",
                "luks2",
                "--batch-mode",
                "--uuid",
                LUKS2_UUID,
                "--label",
                LUKS2_LABEL,
                "--subsystem",
                LUKS2_SUBSYSTEM,
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                k.to_str().unwrap(),
                p.to_str().unwrap(),
            ],
        );
        fx("luks2", p)
    })
}

/// Name of the pool in the ZFS fixture (unique per process: zfs-fuse is
/// shared by every test process on the machine).
pub fn zfs_pool_name() -> String {
    format!("fsdz{}", std::process::id())
}

/// Starts the zfs-fuse daemon if it is not running.
fn ensure_zfs_fuse() {
    let running = Command::new("pgrep")
        .args(["-x", "zfs-fuse"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !running {
        run("zfs-fuse", &[]);
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// A single-vdev pool (ashift 9) on a file, exported.
pub fn zfs() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        ensure_zfs_fuse();
        let p = fixture_path("zfs");
        sparse_file(&p, ZFS_SIZE);
        let pool = zfs_pool_name();
        run(
            "zpool",
            &["create", "-o", "ashift=9", &pool, p.to_str().unwrap()],
        );
        run("zpool", &["export", &pool]);
        fx("zfs", p)
    })
}

fn content_dir() -> PathBuf {
    let d = super::scratch().join("iso-content");
    if !d.exists() {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("README.txt"), b"gold copy\n").unwrap();
        std::fs::write(d.join("sub/data.bin"), vec![7u8; 10_000]).unwrap();
    }
    d
}

/// An iso9660 image with Joliet and every identifier set (with spaces, as
/// blkid encodes them).
pub fn iso_joliet() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("iso-joliet");
        let d = content_dir();
        run(
            "xorriso",
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-J",
                "-V",
                ISO_LABEL,
                "-volset",
                "Gold Set",
                "-publisher",
                "Gold Publisher",
                "-p",
                "Gold Preparer",
                "-A",
                "Gold App",
                "-sysid",
                "LINUX",
                "--modification-date=2026112205301700",
                "-o",
                p.to_str().unwrap(),
                d.to_str().unwrap(),
            ],
        );
        fx("iso-joliet", p)
    })
}

/// Joliet with a label longer than Joliet's 16 characters: blkid rebuilds
/// the full label from the PVD's copy (merge_utf16be_ascii).
pub fn iso_long_label() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("iso-long");
        let d = content_dir();
        run(
            "xorriso",
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-J",
                "-joliet-long",
                "-V",
                ISO_LONG_LABEL,
                "-p",
                "prep",
                "--modification-date=2023030303030303",
                "-o",
                p.to_str().unwrap(),
                d.to_str().unwrap(),
            ],
        );
        fx("iso-long", p)
    })
}

/// A plain iso9660 image (no Joliet): the PVD's ASCII identifiers only.
pub fn iso_plain() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("iso-plain");
        let d = content_dir();
        run(
            "xorriso",
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-V",
                "PLAIN_ISO",
                "-publisher",
                "PUB",
                "--modification-date=2025010112000000",
                "-o",
                p.to_str().unwrap(),
                d.to_str().unwrap(),
            ],
        );
        fx("iso-plain", p)
    })
}

/// A hybrid ISO: a GPT + protective MBR beside the iso9660 descriptors
/// (iso9660 is tolerant, so both are reported).
pub fn iso_hybrid() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("iso-hybrid");
        let d = content_dir();
        let extra = super::scratch().join("efi-part.img");
        // 2 MiB keeps the image above blkid's 1440 KiB "floppy" size.
        sparse_file(&extra, 2 << 20);
        run(
            "xorriso",
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-J",
                "-V",
                "HYBRID",
                "-appended_part_as_gpt",
                "-append_partition",
                "2",
                "0xef",
                extra.to_str().unwrap(),
                "--modification-date=2024060708091011",
                "-o",
                p.to_str().unwrap(),
                d.to_str().unwrap(),
            ],
        );
        fx("iso-hybrid", p)
    })
}

/// A squashfs 4 image.
pub fn squashfs() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixture_path("squashfs");
        let d = content_dir();
        run(
            "mksquashfs",
            &[
                d.to_str().unwrap(),
                p.to_str().unwrap(),
                "-noappend",
                "-quiet",
                "-mkfs-time",
                "0",
                "-all-time",
                "0",
            ],
        );
        fx("squashfs", p)
    })
}

/// The fixtures of this group.
pub fn fixtures() -> Vec<Fixture> {
    let mut v = md_fixtures();
    v.extend(
        [
            lvm_pv(),
            lvm_pv_sector2(),
            luks1(),
            luks2(),
            zfs(),
            iso_joliet(),
            iso_plain(),
            iso_long_label(),
            iso_hybrid(),
            squashfs(),
        ]
        .into_iter()
        .cloned(),
    );
    v
}
