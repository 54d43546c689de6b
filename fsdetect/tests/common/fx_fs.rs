//! Filesystem fixtures: ext2/3/4, jbd, xfs v4/v5, btrfs, FAT12/16/32, ntfs
//! and swap, each made by its real mkfs with a fixed label and UUID (or
//! serial), as sparse files, once per test process.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::OnceLock;

use super::{fixture_path, run, sparse_file, Fixture};

/// The UUID every fixture that takes one is made with.
pub const UUID: &str = "11111111-2222-3333-4444-555555555555";
/// The FAT volume serial (`mkfs.vfat -i`), printed by blkid as `1234-ABCD`.
pub const FAT_SERIAL: &str = "1234ABCD";
/// The NTFS volume serial written over mkntfs's random one (little-endian at
/// byte 0x48), printed by blkid as 16 hex digits.
pub const NTFS_SERIAL: u64 = 0x0123_4567_89AB_CDEF;

/// Labels, including one with a space and one in UTF-8 (to exercise `_ENC`).
pub const LABEL_EXT2: &str = "my lab";
pub const LABEL_EXT3: &str = "grüße";
pub const LABEL_EXT4: &str = "ext4lab";
pub const LABEL_EXT4_NOCSUM: &str = "ext4 old";
pub const LABEL_JBD: &str = "journal";
pub const LABEL_XFS4: &str = "xfs four";
pub const LABEL_XFS5: &str = "xfs5";
pub const LABEL_BTRFS: &str = "btr fs é";
pub const LABEL_NTFS: &str = "nt label ü";
pub const LABEL_SWAP: &str = "swap lab";

const MIB: u64 = 1024 * 1024;

fn make(name: &str, size: u64, build: impl FnOnce(&str)) -> Fixture {
    let path = fixture_path(name);
    sparse_file(&path, size);
    build(path.to_str().expect("utf-8 scratch path"));
    Fixture {
        name: name.to_string(),
        path,
        sector_size: 512,
        needs_loop: false,
    }
}

/// Overwrites bytes of an image in place.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open image for patching");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("patch image");
}

fn mke2fs(name: &str, size: u64, args: &[&str]) -> Fixture {
    make(name, size, |p| {
        let mut a = vec!["-q", "-F", "-U", UUID];
        a.extend_from_slice(args);
        a.push(p);
        run("mke2fs", &a);
    })
}

fn build_all() -> Vec<Fixture> {
    vec![
        mke2fs("ext2", 8 * MIB, &["-t", "ext2", "-L", LABEL_EXT2]),
        mke2fs("ext3", 8 * MIB, &["-t", "ext3", "-L", LABEL_EXT3]),
        mke2fs(
            "ext4",
            32 * MIB,
            &["-t", "ext4", "-O", "metadata_csum", "-L", LABEL_EXT4],
        ),
        mke2fs(
            "ext4-nocsum",
            32 * MIB,
            &[
                "-t",
                "ext4",
                "-O",
                "^metadata_csum",
                "-b",
                "4096",
                "-L",
                LABEL_EXT4_NOCSUM,
            ],
        ),
        mke2fs(
            "jbd",
            8 * MIB,
            &["-O", "journal_dev", "-b", "4096", "-L", LABEL_JBD],
        ),
        make("xfs4", 320 * MIB, |p| {
            run(
                "mkfs.xfs",
                &[
                    "-q",
                    "-f",
                    "-m",
                    "crc=0",
                    "-m",
                    &format!("uuid={UUID}"),
                    "-L",
                    LABEL_XFS4,
                    p,
                ],
            );
        }),
        make("xfs5", 320 * MIB, |p| {
            run(
                "mkfs.xfs",
                &[
                    "-q",
                    "-f",
                    "-m",
                    "crc=1",
                    "-m",
                    &format!("uuid={UUID}"),
                    "-L",
                    LABEL_XFS5,
                    p,
                ],
            );
        }),
        make("btrfs", 128 * MIB, |p| {
            run(
                "mkfs.btrfs",
                &["-q", "-f", "-U", UUID, "-L", LABEL_BTRFS, p],
            );
        }),
        make("fat12", 4 * MIB, |p| {
            run(
                "mkfs.vfat",
                &["-F", "12", "-n", "FAT12 LAB", "-i", FAT_SERIAL, p],
            );
        }),
        make("fat16", 40 * MIB, |p| {
            run(
                "mkfs.vfat",
                &["-F", "16", "-n", "FAT16", "-i", FAT_SERIAL, p],
            );
        }),
        make("fat32", 40 * MIB, |p| {
            run(
                "mkfs.vfat",
                &["-F", "32", "-n", "FAT32LAB", "-i", FAT_SERIAL, p],
            );
        }),
        // No label at all: blkid prints neither LABEL nor LABEL_FATBOOT.
        make("fat16-nolabel", 20 * MIB, |p| {
            run("mkfs.vfat", &["-F", "16", "-i", FAT_SERIAL, p]);
        }),
        make("ntfs", 64 * MIB, |p| {
            run("mkntfs", &["-F", "-Q", "-q", "-L", LABEL_NTFS, p]);
            patch(Path::new(p), 0x48, &NTFS_SERIAL.to_le_bytes());
        }),
        make("swap", 16 * MIB, |p| {
            run("mkswap", &["-q", "-L", LABEL_SWAP, "-U", UUID, p]);
        }),
        // 64 KiB pages: the signature ends the first 64 KiB.
        make("swap-64k", 16 * MIB, |p| {
            run("mkswap", &["-q", "-p", "65536", "-U", UUID, p]);
        }),
    ]
}

/// The fixtures of this group.
pub fn fixtures() -> Vec<Fixture> {
    static FX: OnceLock<Vec<Fixture>> = OnceLock::new();
    FX.get_or_init(build_all).clone()
}

/// One fixture of this group by name.
pub fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fs fixture named {name}"))
}
