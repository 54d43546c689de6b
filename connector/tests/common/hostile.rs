//! Fixture builders for hostile clones, made without mounting anything:
//! `mkfs.ext4 -d` copies a directory (symlinks, FIFOs, device nodes,
//! setuid bits, ownership) into a new filesystem; partition tables are
//! written byte by byte (so two entries can overlap, which no partitioning
//! tool allows); superblocks are edited in place.

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{sparse_file, tool, write_into, MIB};

/// MBR partition type of a Linux filesystem.
pub const LINUX: u8 = 0x83;

/// A directory to become a filesystem's root, with `etc/` in it; 0755 all
/// the way so that an unprivileged user can walk the mounted copy.
pub fn tree(dir: &Path, name: &str) -> PathBuf {
    let t = dir.join(name);
    fs::create_dir_all(t.join("etc")).unwrap();
    for d in [&t, &t.join("etc")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    t
}

/// `mkfs.ext4` of a new `size_mib` image at `img` with `label` and `uuid`,
/// populated from `from` when given. `extra` goes before the image path
/// (e.g. `["-O", "^metadata_csum"]`).
pub fn ext4(
    img: &Path,
    size_mib: u64,
    label: &str,
    uuid: &str,
    from: Option<&Path>,
    extra: &[&str],
) {
    sparse_file(img, size_mib * MIB);
    let mut args = vec!["-q", "-F", "-L", label, "-U", uuid];
    if let Some(d) = from {
        args.extend(["-d", d.to_str().unwrap()]);
    }
    args.extend(extra);
    args.push(img.to_str().unwrap());
    tool("mkfs.ext4", &args);
}

/// `mkfs.xfs` of a new `size_mib` image (300 MiB at least) with `uuid`.
pub fn xfs(img: &Path, size_mib: u64, label: &str, uuid: &str) {
    sparse_file(img, size_mib * MIB);
    let u = format!("uuid={uuid}");
    tool(
        "mkfs.xfs",
        &["-q", "-f", "-L", label, "-m", &u, img.to_str().unwrap()],
    );
}

/// Writes an MBR at the start of `disk`: one 16-byte entry per
/// `(first_lba, sectors, type)`, in order, and the 0x55AA signature. The
/// entries are taken as given: they may overlap.
pub fn write_mbr(disk: &Path, entries: &[(u64, u64, u8)]) {
    assert!(entries.len() <= 4, "an MBR holds four primary entries");
    let mut table = [0u8; 66];
    for (i, &(first, sectors, kind)) in entries.iter().enumerate() {
        let e = &mut table[i * 16..i * 16 + 16];
        // CHS fields: 0xFE/0xFF/0xFF means "use the LBA fields".
        e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        e[4] = kind;
        e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        e[8..12].copy_from_slice(&u32::try_from(first).unwrap().to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(sectors).unwrap().to_le_bytes());
    }
    table[64] = 0x55;
    table[65] = 0xAA;
    let f = fs::OpenOptions::new().write(true).open(disk).unwrap();
    // A disk signature, so the table is not taken for a floppy boot sector.
    f.write_all_at(&0x5eed_1e55u32.to_le_bytes(), 440).unwrap();
    f.write_all_at(&table, 446).unwrap();
}

/// A `size_mib` disk image at `disk` with an MBR partition per
/// `(start_mib, filesystem image)`, each partition exactly the image's size,
/// the image copied in. Partition numbers follow the order given.
pub fn mbr_disk(disk: &Path, size_mib: u64, parts: &[(u64, &Path)]) -> PathBuf {
    sparse_file(disk, size_mib * MIB);
    let mut entries = Vec::new();
    for &(start_mib, img) in parts {
        let len = fs::metadata(img).unwrap().len();
        assert!(
            start_mib * MIB + len <= size_mib * MIB,
            "{} does not fit",
            img.display()
        );
        entries.push((start_mib * MIB / 512, len / 512, LINUX));
        write_into(disk, start_mib * MIB, img);
    }
    write_mbr(disk, &entries);
    disk.to_path_buf()
}

/// Sets `bit` in an ext2/3/4 superblock's `s_feature_incompat` (an unknown
/// bit makes the kernel refuse the filesystem while every prober still sees
/// ext4). The image must have been made without `metadata_csum`, whose
/// superblock checksum this does not update.
pub fn ext4_set_incompat(img: &Path, bit: u32) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 1024 + 0x60).unwrap();
    let v = u32::from_le_bytes(b) | bit;
    f.write_all_at(&v.to_le_bytes(), 1024 + 0x60).unwrap();
}

/// A fixed UUID for fixture filesystem `n` (stable names in fstab lines).
pub fn uuid(n: u32) -> String {
    format!("0000{n:04x}-0bad-4c0d-8e00-00000000{n:04x}")
}
