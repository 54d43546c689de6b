//! md, LVM2, LUKS, ZFS, iso9660 and squashfs against `blkid -p -o udev`
//! (util-linux 2.38.1) on images made by the real tools, plus the exact
//! values the fixtures were made with and damaged-image cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::fx_other::{self, *};
use common::{assert_same_as_blkid, blkid_udev, fsdetect_udev, scratch, Fixture};
use fsdetect::{Content, FileSource, Signature};

fn probe(path: &Path) -> fsdetect::DiskReport {
    let src = FileSource::open(path).unwrap();
    fsdetect::probe_disk(&src).unwrap()
}

fn sig(path: &Path) -> Signature {
    match probe(path).content {
        Content::Found { signature } => signature,
        other => panic!("{}: expected one signature, got {other:?}", path.display()),
    }
}

fn tag(s: &Signature, name: &str) -> String {
    s.get_str(name)
        .unwrap_or_else(|| panic!("{} has no {name}: {:?}", s.fs_type, s.tags))
}

/// A private copy of a fixture to damage.
fn copy_of(fx: &Fixture, name: &str) -> PathBuf {
    let p = scratch().join(format!("{name}.img"));
    std::fs::copy(&fx.path, &p).unwrap();
    p
}

fn write_at(p: &Path, off: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(data, off).unwrap();
}

fn read_at(p: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(p).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

/// Asserts blkid and fsdetect agree on a (damaged) image, and returns blkid's exit status.
fn agree(p: &Path) -> i32 {
    let (want, want_rc) = blkid_udev(p, None);
    let (got, got_rc) = fsdetect_udev(p, 512, None);
    assert_eq!(
        got,
        want,
        "{}: fsdetect (left) vs blkid (right)",
        p.display()
    );
    assert_eq!(got_rc, want_rc, "{}: exit status", p.display());
    want_rc
}

#[test]
fn every_fixture_matches_blkid() {
    for fx in fx_other::fixtures() {
        assert_same_as_blkid(&fx);
    }
}

#[test]
fn md_values() {
    let s = sig(&md_path("090"));
    assert_eq!(s.fs_type, "linux_raid_member");
    assert_eq!(tag(&s, "VERSION"), "0.90.0");
    assert_eq!(tag(&s, "UUID"), "11111111-2222-2222-3333-333344444444");
    assert!(s.label().is_none());
    for (n, v, uuid) in [
        ("10", "1.0", "5a5a5a5a-0b0b-0b0b-c1c1-c1c1d2d2d2d2"),
        ("11", "1.1", "01234567-89ab-cdef-fedc-ba9876543210"),
        ("12", "1.2", "deadbeef-cafe-f00d-0bad-c0de12345678"),
    ] {
        let s = sig(&md_path(n));
        assert_eq!(tag(&s, "VERSION"), v);
        assert_eq!(tag(&s, "UUID"), uuid);
        assert_eq!(tag(&s, "LABEL"), "lab:gold");
        assert_eq!(tag(&s, "UUID_SUB").len(), 36);
    }
    // The array's MBR is visible on a 1.0 member; blkid ignores it.
    let p = md_path("10pt");
    assert_eq!(read_at(&p, 510, 2), [0x55, 0xaa]);
    let r = probe(&p);
    assert!(r.table.is_none());
    assert_eq!(tag(r.content.signature().unwrap(), "VERSION"), "1.0");
}

#[test]
fn md_damage() {
    let fx = &md_fixtures()[4]; // md-12
    assert_eq!(fx.name, "md-12");
    let p = copy_of(fx, "md12-zeroed");
    write_at(&p, 4096, &[0u8; 4]);
    assert_eq!(agree(&p), 2);
    // A wrong super_offset field: blkid refuses it.
    let p = copy_of(fx, "md12-superoff");
    write_at(&p, 4096 + 144, &[9]);
    assert_eq!(agree(&p), 2);
    // 0.90 member cut short: the superblock location moves, nothing is found.
    let fx090 = &md_fixtures()[0];
    let p = copy_of(fx090, "md090-trunc");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    assert_eq!(agree(&p), 2);
    // Big-endian 0.90 (a member written on a big-endian host).
    let p = copy_of(fx090, "md090-be");
    let off = (4u64 << 20) - 65536;
    let sb = read_at(&p, off, 64);
    let be: Vec<u8> = sb
        .chunks(4)
        .flat_map(|w| [w[3], w[2], w[1], w[0]])
        .collect();
    write_at(&p, off, &be);
    assert_eq!(agree(&p), 0);
    assert_eq!(
        tag(&sig(&p), "UUID"),
        "11111111-2222-2222-3333-333344444444"
    );
}

#[test]
fn lvm_values_and_damage() {
    let s = sig(&lvm_pv().path);
    assert_eq!(s.fs_type, "LVM2_member");
    assert_eq!(tag(&s, "UUID"), PV_UUID);
    assert_eq!(tag(&s, "VERSION"), "LVM2 001");
    assert_eq!(s.offset, 512);
    let s = sig(&lvm_pv_sector2().path);
    assert_eq!(tag(&s, "UUID"), PV2_UUID);
    assert_eq!(s.offset, 1024);

    let label = read_at(&lvm_pv().path, 0, 2048);
    let parsed = fsdetect::sig::lvm2::parse_label(&label).unwrap();
    assert_eq!(parsed.sector, 1);
    assert_eq!(parsed.device_size, 8 << 20);

    // Bad CRC: a flipped byte in the PV header.
    let p = copy_of(lvm_pv(), "lvm-badcrc");
    let b = read_at(&p, 512 + 100, 1)[0];
    write_at(&p, 512 + 100, &[b ^ 0x40]);
    assert_eq!(agree(&p), 2);
    // Label claiming another sector.
    let p = copy_of(lvm_pv(), "lvm-badsector");
    write_at(&p, 512 + 8, &[3]);
    assert_eq!(agree(&p), 2);
    // Cut PVs keep their label, but blkid skips RAID-usage probers (md,
    // LVM2) on "floppies" up to 1440 KiB: nothing at 1440 KiB, a PV above.
    for (len, rc) in [(1024u64, 2), (1_474_560, 2), (1_474_561, 0)] {
        let p = copy_of(lvm_pv(), &format!("lvm-trunc-{len}"));
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
        assert_eq!(agree(&p), rc, "PV cut to {len} bytes");
    }
}

#[test]
fn luks_values_and_damage() {
    let s = sig(&luks1().path);
    assert_eq!(s.fs_type, "crypto_LUKS");
    assert_eq!(tag(&s, "VERSION"), "1");
    assert_eq!(tag(&s, "UUID"), LUKS1_UUID);
    assert!(s.label().is_none());
    let s = sig(&luks2().path);
    assert_eq!(tag(&s, "VERSION"), "2");
    assert_eq!(tag(&s, "UUID"), LUKS2_UUID);
    assert_eq!(tag(&s, "LABEL"), LUKS2_LABEL);
    assert_eq!(tag(&s, "SUBSYSTEM"), LUKS2_SUBSYSTEM);

    // Damaged header checksum: blkid 2.38 does not check it, still LUKS.
    let p = copy_of(luks2(), "luks2-badcsum");
    let b = read_at(&p, 0x1c0, 1)[0];
    write_at(&p, 0x1c0, &[b ^ 0xff]);
    assert_eq!(agree(&p), 0);
    // Primary header gone: the secondary header at 16 KiB is found.
    let p = copy_of(luks2(), "luks2-nohdr1");
    write_at(&p, 0, &[0u8; 4096]);
    assert_eq!(agree(&p), 0);
    let s = sig(&p);
    assert_eq!(s.offset, 0x4000);
    assert_eq!(tag(&s, "LABEL"), LUKS2_LABEL);
    // Both headers gone: nothing.
    write_at(&p, 0x4000, &[0u8; 4096]);
    assert_eq!(agree(&p), 2);
    // LUKS1 with its magic zeroed: nothing.
    let p = copy_of(luks1(), "luks1-zeroed");
    write_at(&p, 0, &[0u8; 6]);
    assert_eq!(agree(&p), 2);
}

#[test]
fn zfs_values_and_damage() {
    let fx = zfs();
    let s = sig(&fx.path);
    assert_eq!(s.fs_type, "zfs_member");
    assert_eq!(tag(&s, "LABEL"), zfs_pool_name());
    assert_eq!(tag(&s, "BLOCK_SIZE"), "512");
    let uuid = tag(&s, "UUID");
    assert!(uuid.parse::<u64>().is_ok(), "pool guid in decimal: {uuid}");
    assert_eq!(tag(&s, "ZFS_POOL_GUID"), uuid);
    assert_eq!(
        u64::from_str_radix(&tag(&s, "ZFS_POOL_GUID_HEX"), 16).unwrap(),
        uuid.parse::<u64>().unwrap()
    );
    assert_eq!(tag(&s, "ZFS_VDEV_PATH"), fx.path.to_str().unwrap());
    assert_eq!(tag(&s, "ZFS_POOL_STATE"), "1", "exported");

    // The full decoder agrees with blkid's walk.
    let nv = read_at(&fx.path, 16 * 1024, 112 * 1024);
    let l = fsdetect::sig::zfs::parse_nvlist(&nv).unwrap();
    assert_eq!(l.name.as_deref(), Some(zfs_pool_name().as_str()));
    assert_eq!(l.pool_guid.unwrap().to_string(), uuid);
    assert_eq!(l.guid.unwrap().to_string(), tag(&s, "UUID_SUB"));
    assert_eq!(l.ashift, Some(9));

    // Labels 0 and 1 wiped, 2 and 3 intact: still a member, like blkid.
    let p = copy_of(fx, "zfs-l01-wiped");
    write_at(&p, 0, &vec![0u8; 512 * 1024]);
    assert_eq!(agree(&p), 0);
    assert_eq!(tag(&sig(&p), "LABEL"), zfs_pool_name());
    // All four wiped: nothing.
    let aligned = ZFS_SIZE - ZFS_SIZE % (256 * 1024);
    write_at(&p, aligned - 512 * 1024, &vec![0u8; 512 * 1024]);
    assert_eq!(agree(&p), 2);
    // Cut below blkid's 64 MiB minimum: nothing.
    let p = copy_of(fx, "zfs-small");
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(60 << 20)
        .unwrap();
    assert_eq!(agree(&p), 2);
}

#[test]
fn iso_values_and_damage() {
    let s = sig(&iso_joliet().path);
    assert_eq!(s.fs_type, "iso9660");
    assert_eq!(tag(&s, "LABEL"), ISO_LABEL);
    assert_eq!(tag(&s, "VERSION"), "Joliet Extension");
    assert_eq!(tag(&s, "UUID"), "2026-11-22-05-30-17-00");
    assert_eq!(tag(&s, "PUBLISHER_ID"), "Gold Publisher");
    assert_eq!(tag(&s, "DATA_PREPARER_ID"), "Gold Preparer");
    assert_eq!(tag(&s, "APPLICATION_ID"), "Gold App");
    assert_eq!(tag(&s, "VOLUME_SET_ID"), "Gold Set");
    assert_eq!(tag(&s, "BLOCK_SIZE"), "2048");
    let s = sig(&iso_long_label().path);
    assert_eq!(tag(&s, "LABEL"), ISO_LONG_LABEL);
    let s = sig(&iso_plain().path);
    assert_eq!(tag(&s, "LABEL"), "PLAIN_ISO");
    assert!(s.get_str("VERSION").is_none());
    assert_eq!(tag(&s, "UUID"), "2025-01-01-12-00-00-00");
    // Hybrid: iso9660 and a partition table side by side.
    let r = probe(&iso_hybrid().path);
    assert!(r.table.is_some(), "hybrid ISO has a partition table");
    assert_eq!(tag(r.content.signature().unwrap(), "LABEL"), "HYBRID");

    // PVD magic zeroed: nothing.
    let p = copy_of(iso_plain(), "iso-zeroed");
    write_at(&p, 0x8001, b"\0\0\0\0\0");
    assert_eq!(agree(&p), 2);
    // Cut right after the PVD: the descriptor walk stops at the end.
    let p = copy_of(iso_joliet(), "iso-trunc");
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0x8000 + 2048)
        .unwrap();
    agree(&p);
}

#[test]
fn squashfs_values_and_damage() {
    let s = sig(&squashfs().path);
    assert_eq!(s.fs_type, "squashfs");
    assert_eq!(tag(&s, "VERSION"), "4.0");
    // A v3 superblock is blkid's squashfs3 prober, which fsdetect lacks:
    // make sure we at least do not call it squashfs.
    let p = copy_of(squashfs(), "squashfs-v3");
    write_at(&p, 28, &[3, 0, 1, 0]);
    assert!(matches!(probe(&p).content, Content::Empty));
    let p = copy_of(squashfs(), "squashfs-zeroed");
    write_at(&p, 0, &[0u8; 4]);
    assert_eq!(agree(&p), 2);
}

#[test]
fn random_regions_never_panic() {
    let mut seed = 0x9e37_79b9_u64;
    for size in [0usize, 511, 2048, 70_000, 1_500_000, 3 << 20] {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let src = fsdetect::MemSource::new(data);
        let reader = fsdetect::Reader::new(&src);
        let w = reader.whole();
        for name in [
            "linux_raid_member",
            "LVM2_member",
            "crypto_LUKS",
            "zfs_member",
            "iso9660",
            "squashfs",
        ] {
            let info = fsdetect::sig::idinfo(name).unwrap();
            let _ = (info.probe)(&w).unwrap();
        }
    }
}
