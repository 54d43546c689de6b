//! Real-kernel ZFS scenarios for `connector::zfs`: clones of a pool imported
//! next to the gold pool and next to each other. They need OpenZFS built for
//! the guest kernel, so they run only with `cargo xtask lab --zfs`
//! (`#[ignore]`d elsewhere, and loud when started without ZFS).
//!
//! OpenZFS never opens two pools with one pool GUID (openzfs/zfs#11404): a
//! clone whose GUID is open (its gold is imported here, or a clone that kept
//! the gold's GUID) gets a new GUID on its own devices before the kernel
//! import (libzpool, `goldmount-zfs-reguid`), which these scenarios check
//! next to the imported, mounted gold.
//!
//! A clone's pool is untrusted: its datasets are mounted by goldmount, not
//! by `zfs mount`, each confined to the volume and `nosuid,nodev`; the
//! hostile-pool scenario checks that through the engine, and the colliding
//! names scenario that a teardown exports only its own pool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use connector::zfs::{self, MountFlags, ZfsError};
use goldmount_tests::lab::*;

const GOLD: &str = "goldpool";
const IMG_MIB: u64 = 256;
const DEV_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// ZFS must be there: a scenario that silently skipped would prove nothing.
fn require_zfs() {
    if !Path::new("/dev/zfs").exists() {
        panic!(
            "/dev/zfs missing: run with `cargo xtask lab --zfs` (OpenZFS 2.1 from Debian contrib: \
             zfs-dkms built for the guest kernel, zfsutils-linux)"
        );
    }
    run("zpool", &["--version"]);
}

fn pools() -> Vec<String> {
    let mut v: Vec<String> = run("zpool", &["list", "-H", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|m| Path::new(m).starts_with(dir))
        })
        .map(str::to_string)
        .collect()
}

/// The flags the engine uses by default.
const CONFINED: MountFlags = MountFlags {
    read_only: false,
    nosuid_nodev: true,
};

fn set_hostid(hex: &str) {
    run("zgenhostid", &["-f", hex]);
}

/// Exports/destroys whatever a scenario left and frees its loop devices,
/// even when it panics.
struct Cleanup {
    pools: Vec<String>,
    loops: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in self.pools.iter().rev() {
            let _ = try_run("zpool", &["export", "-f", p], CMD_TIMEOUT);
        }
        for l in self.loops.iter().rev() {
            let _ = try_run("losetup", &["-d", l], CMD_TIMEOUT);
        }
        let _ = fs::remove_file("/etc/hostid");
    }
}

/// A reflink XFS for gold and clone images, and the cleanup of what is put
/// on it. Bound as `let (xfs, mut c) = …`: `c` drops first (pools, then
/// loop devices on the XFS), then the XFS itself.
fn reflink_and_cleanup(scratch: &Path) -> (ReflinkXfs, Cleanup) {
    let xfs = ReflinkXfs::create(scratch, 900);
    let c = Cleanup {
        pools: Vec::new(),
        loops: Vec::new(),
    };
    (xfs, c)
}

/// The gold: a pool on a loop device over a file on reflink XFS, with a
/// nested dataset tree, a legacy-mountpoint dataset and files; it stays
/// imported. Returns (gold image, gold mount root, loop device).
fn make_gold(xfs: &ReflinkXfs, scratch: &Path, c: &mut Cleanup) -> (PathBuf, PathBuf, String) {
    let img = xfs.mnt.join("gold.img");
    fs::File::create(&img)
        .unwrap()
        .set_len(IMG_MIB << 20)
        .unwrap();
    // -P: `zpool create` on a whole disk writes a GPT and waits for
    // partition 1, as on a real LUN.
    let dev = run("losetup", &["-f", "--show", "-P", img.to_str().unwrap()])
        .trim()
        .to_string();
    c.loops.push(dev.clone());
    let mnt = scratch.join("gold");
    run(
        "zpool",
        &[
            "create",
            "-o",
            "cachefile=none",
            "-m",
            mnt.to_str().unwrap(),
            GOLD,
            &dev,
        ],
    );
    c.pools.push(GOLD.to_string());
    run("zfs", &["create", &format!("{GOLD}/data")]);
    run("zfs", &["create", &format!("{GOLD}/data/nested")]);
    run(
        "zfs",
        &[
            "create",
            "-o",
            "mountpoint=legacy",
            &format!("{GOLD}/legacy"),
        ],
    );
    fs::write(mnt.join("root.txt"), "gold root\n").unwrap();
    write_pattern(&mnt.join("data/pattern.bin"), 8 << 20, "gold-zfs");
    fs::write(mnt.join("data/nested/deep.txt"), "deep in the gold\n").unwrap();
    run("zpool", &["sync", GOLD]);
    (img, mnt, dev)
}

/// A reflink copy of the gold image (taken while the gold is imported, as a
/// copy-data appliance snapshots a live pool) on its own loop device.
fn make_clone(xfs: &ReflinkXfs, gold_img: &Path, name: &str, c: &mut Cleanup) -> PathBuf {
    run("zpool", &["sync", GOLD]);
    let img = xfs.mnt.join(format!("{name}.img"));
    run(
        "cp",
        &[
            "--reflink=always",
            gold_img.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    assert!(
        has_shared_extents(&img),
        "{} is not a reflink copy",
        img.display()
    );
    let dev = run("losetup", &["-f", "--show", "-P", img.to_str().unwrap()])
        .trim()
        .to_string();
    c.loops.push(dev.clone());
    PathBuf::from(dev)
}

/// fsdetect's view of the clone disk, as the mount pipeline gets it: the
/// zfs_member device (the disk itself, or partition N of the GPT that
/// `zpool create` writes on a whole disk), the pool GUID and the pool name.
fn probe_pool(disk: &Path) -> (PathBuf, u64, String) {
    let src = fsdetect::FileSource::open(disk).unwrap();
    let rep = fsdetect::probe_disk(&src).unwrap();
    let (dev, sig) = match rep.content.signature() {
        Some(sig) => (disk.to_path_buf(), sig.clone()),
        None => {
            let p = rep
                .partitions
                .iter()
                .find(|p| {
                    p.content
                        .as_ref()
                        .and_then(|c| c.signature())
                        .is_some_and(|s| s.fs_type == "zfs_member")
                })
                .unwrap_or_else(|| panic!("no zfs_member on {}: {rep:?}", disk.display()));
            let dev = PathBuf::from(format!("{}p{}", disk.display(), p.partition.number));
            wait_until(&format!("{}", dev.display()), DEV_WAIT, || {
                dev.exists().then_some(())
            });
            let sig = p.content.as_ref().unwrap().signature().unwrap().clone();
            (dev, sig)
        }
    };
    assert_eq!(sig.fs_type, "zfs_member");
    eprintln!("fsdetect: zfs_member on {}", dev.display());
    let guid = sig.uuid().expect("zfs_member UUID").parse().unwrap();
    (dev, guid, sig.label().expect("zfs_member LABEL"))
}

/// The /proc/mounts line of the top mount at exactly `mp`.
fn mount_line(mp: &Path) -> String {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .rfind(|l| l.split_whitespace().nth(1).map(Path::new) == Some(mp))
        .unwrap_or_default()
        .to_string()
}

fn hold_cwd(dir: &Path) -> Child {
    Command::new("sleep")
        .arg("600")
        .current_dir(dir)
        .spawn()
        .unwrap()
}

fn busy_then_clean_export(name: &str, nested: &Path, altroot: &Path) {
    // Busy: export refuses and names the holder.
    let mut holder = hold_cwd(nested);
    let e = zfs::export(name, false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        matches!(e.downcast_ref::<ZfsError>(), Some(ZfsError::Busy { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("sleep") && msg.contains(&format!("pid {}", holder.id())),
        "{msg}"
    );
    assert!(
        pools().contains(&name.to_string()),
        "a refused export left the pool imported"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let rep = zfs::export(name, false).unwrap();
    eprintln!("export: {rep:?}");
    assert!(rep.forced.is_empty() && !rep.not_imported);
    assert_eq!(rep.unmounted.len(), 3, "{rep:?}");
    assert!(!pools().contains(&name.to_string()));
    assert!(
        mounts_under(altroot).is_empty(),
        "{:?}",
        mounts_under(altroot)
    );
    // Without a journal (this direct API) the directories made for the
    // mount points stay; the engine journals and removes them.
    assert!(
        zfs::export(name, false).unwrap().not_imported,
        "teardown is idempotent"
    );
}

/// The scenario. The gold pool is imported; a clone of it (a
/// reflink snapshot of the live pool taken on a "production host" with
/// another hostid) carries its name and GUID. While the gold is open under
/// that GUID, import_clone gives the clone a new GUID on its own device
/// first (libzpool, goldmount-zfs-reguid; the gold's GUID, labels and the
/// host's cache file unchanged) and imports it by that GUID under a unique
/// name, only from its own device, with -f (explained), next to the gold,
/// which stays imported and mounted throughout. Contents
/// are identical, a write in the clone does not reach the gold, a busy
/// dataset makes export refuse naming the holder, export leaves only the
/// gold, and a host pool (no altroot) is never exported.
#[test]
#[ignore = "needs the lab kernel"]
fn zfs_clone_imported_next_to_gold() {
    let scratch = require_lab();
    require_zfs();
    let (xfs, mut c) = reflink_and_cleanup(&scratch);
    set_hostid("0badc0de");
    let (gold_img, gold_mnt, gold_dev) = make_gold(&xfs, &scratch, &mut c);
    let clone_disk = make_clone(&xfs, &gold_img, "clone1", &mut c);
    set_hostid("00c0ffee");
    assert_eq!(pools(), vec![GOLD.to_string()]);
    let gold_guid: u64 = run("zpool", &["get", "-H", "-p", "-o", "value", "guid", GOLD])
        .trim()
        .parse()
        .unwrap();

    let (clone_dev, guid, label) = probe_pool(&clone_disk);
    assert_eq!(guid, gold_guid, "fsdetect's UUID is the pool GUID");
    assert_eq!(label, GOLD);
    let name = zfs::unique_pool_name(&label, "zvol1");
    assert!(name.starts_with("goldpool-zvol1-"), "{name}");
    let e = zfs::ensure_name_free(GOLD).unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<ZfsError>(),
            Some(ZfsError::NameInUse { .. })
        ),
        "{e:#}"
    );
    let altroot = scratch.join("volumes/zvol1/zfs");

    // The gold stays imported and mounted throughout: the clone gets a new
    // GUID on its own device before the kernel sees it (libzpool, in
    // goldmount-zfs-reguid), the host's cache file and the gold's labels
    // stay as they were.
    let cachefile = Path::new("/etc/zfs/zpool.cache");
    let cache_before = fs::read(cachefile).ok();
    let gold_label_before = probe_pool(Path::new(&gold_dev));
    let t0 = std::time::Instant::now();
    let mut pool = zfs::import_clone(
        std::slice::from_ref(&clone_dev),
        guid,
        &name,
        &altroot,
        true,
    )
    .unwrap();
    assert!(
        mounts_under(&altroot).is_empty(),
        "import mounts nothing: {:?}",
        mounts_under(&altroot)
    );
    zfs::mount_all(&mut pool, CONFINED).unwrap();
    eprintln!(
        "import_clone next to the imported gold took {:.2}s: {pool:#?}",
        t0.elapsed().as_secs_f64()
    );
    let why = pool.reguided_before_import.clone().unwrap_or_default();
    assert!(
        why.contains(&gold_guid.to_string()) && why.contains(GOLD),
        "the manifest-facing reason names the GUID and the gold: {why:?}"
    );
    assert_eq!(
        run("zpool", &["get", "-H", "-p", "-o", "value", "guid", GOLD]).trim(),
        gold_guid.to_string(),
        "the gold keeps its GUID"
    );
    assert_eq!(
        probe_pool(Path::new(&gold_dev)).1,
        gold_label_before.1,
        "the gold's labels keep its GUID"
    );
    assert_eq!(
        fs::read(cachefile).ok(),
        cache_before,
        "{} untouched",
        cachefile.display()
    );
    c.pools.push(name.clone());
    assert_eq!(pool.name, name);
    assert_eq!(pool.original_guid, gold_guid);
    assert_ne!(pool.guid, gold_guid, "reguid gave the clone a new GUID");
    // libzpool's import and export left the labels exported by this host,
    // so the kernel import needed no -f (the gold's hostid is gone from the
    // clone's labels).
    assert_eq!(pool.forced, None, "{pool:#?}");
    // Only the clone's own device is in the new pool.
    let status = run("zpool", &["status", "-P", &name]);
    assert!(status.contains(clone_dev.to_str().unwrap()), "{status}");
    assert_eq!(pools(), vec![GOLD.to_string(), name.clone()]);

    let clone_mnt = altroot.join(gold_mnt.strip_prefix("/").unwrap());
    let ds: Vec<(&str, Option<&Path>)> = pool
        .datasets
        .iter()
        .map(|d| (d.name.as_str(), d.mountpoint.as_deref()))
        .collect();
    let data = clone_mnt.join("data");
    let nested = clone_mnt.join("data/nested");
    assert_eq!(
        ds,
        vec![
            (name.as_str(), Some(clone_mnt.as_path())),
            (format!("{name}/data").as_str(), Some(data.as_path())),
            (
                format!("{name}/data/nested").as_str(),
                Some(nested.as_path())
            ),
            (format!("{name}/legacy").as_str(), None),
        ]
    );
    assert!(pool.datasets[3]
        .skipped
        .as_deref()
        .unwrap()
        .contains("legacy"));
    for mp in [&clone_mnt, &data, &nested] {
        let line = mount_line(mp);
        assert!(
            line.contains(" zfs "),
            "{} not mounted: {line}",
            mp.display()
        );
        let opts = line.split_whitespace().nth(3).unwrap();
        assert!(
            opts.split(',').any(|o| o == "nosuid") && opts.split(',').any(|o| o == "nodev"),
            "{line}"
        );
    }
    for rel in ["root.txt", "data/pattern.bin", "data/nested/deep.txt"] {
        assert_eq!(
            fs::read(gold_mnt.join(rel)).unwrap(),
            fs::read(clone_mnt.join(rel)).unwrap(),
            "{rel} differs between gold and clone"
        );
    }
    fs::write(
        clone_mnt.join("data/nested/deep.txt"),
        "changed in the clone\n",
    )
    .unwrap();
    fs::write(clone_mnt.join("clone-only.txt"), "clone\n").unwrap();
    run("zpool", &["sync", &name]);
    assert_eq!(
        fs::read_to_string(gold_mnt.join("data/nested/deep.txt")).unwrap(),
        "deep in the gold\n"
    );
    assert!(!gold_mnt.join("clone-only.txt").exists());
    assert_eq!(
        run("zpool", &["list", "-H", "-o", "health", GOLD]).trim(),
        "ONLINE"
    );

    // A second clone of the same gold, taken now, next to the gold and
    // the first clone: it gets its own new GUID the same way.
    let clone2_disk = make_clone(&xfs, &gold_img, "clone2", &mut c);
    let (clone2_dev, guid2, _) = probe_pool(&clone2_disk);
    assert_eq!(guid2, gold_guid);
    let name2 = zfs::unique_pool_name(GOLD, "zvol2");
    let altroot2 = scratch.join("volumes/zvol2/zfs");
    let mut pool2 = zfs::import_clone(
        std::slice::from_ref(&clone2_dev),
        guid2,
        &name2,
        &altroot2,
        false,
    )
    .unwrap();
    c.pools.push(name2.clone());
    zfs::mount_all(&mut pool2, CONFINED).unwrap();
    assert!(
        pool2.reguided && pool2.reguided_before_import.is_some(),
        "{pool2:#?}"
    );
    assert!(
        pool2.guid != gold_guid && pool2.guid != pool.guid,
        "{pool2:#?}"
    );
    let mut all = vec![GOLD.to_string(), name.clone(), name2.clone()];
    all.sort();
    assert_eq!(pools(), all);
    let clone2_mnt = altroot2.join(gold_mnt.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(clone2_mnt.join("data/pattern.bin")).unwrap(),
        fs::read(gold_mnt.join("data/pattern.bin")).unwrap()
    );
    assert_eq!(
        fs::read_to_string(clone2_mnt.join("data/nested/deep.txt")).unwrap(),
        "deep in the gold\n",
        "the first clone's write is not in the second"
    );
    assert!(!clone2_mnt.join("clone-only.txt").exists());
    fs::write(clone2_mnt.join("clone2-only.txt"), "clone2\n").unwrap();
    run("zpool", &["sync", &name2]);
    assert!(!clone_mnt.join("clone2-only.txt").exists());
    assert!(!gold_mnt.join("clone2-only.txt").exists());
    let rep = zfs::export(&name2, false).unwrap();
    assert!(rep.forced.is_empty() && !rep.not_imported, "{rep:?}");

    busy_then_clean_export(&name, &nested, &altroot);
    assert_eq!(pools(), vec![GOLD.to_string()]);
    assert_eq!(
        fs::read(cachefile).ok(),
        cache_before,
        "{} untouched",
        cachefile.display()
    );
    assert_eq!(
        run("zpool", &["get", "-H", "-p", "-o", "value", "guid", GOLD]).trim(),
        gold_guid.to_string()
    );
    let e = zfs::export(GOLD, true).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<ZfsError>(), Some(ZfsError::NotOurs { .. })),
        "{e:#}"
    );
    assert_eq!(pools(), vec![GOLD.to_string()]);
    assert_eq!(
        fs::read_to_string(gold_mnt.join("data/nested/deep.txt")).unwrap(),
        "deep in the gold\n"
    );
}

/// Clones of one gold side by side. With reguid the first clone frees the
/// gold's GUID after its import and the second imports under it; a third
/// then gets a new GUID before its import (the reason names the second).
/// Then `force` export with a busy dataset: detached lazily, reported.
#[test]
#[ignore = "needs the lab kernel"]
fn zfs_two_clones_same_guid_and_forced_export() {
    let scratch = require_lab();
    require_zfs();
    let (xfs, mut c) = reflink_and_cleanup(&scratch);
    let (gold_img, gold_mnt, _) = make_gold(&xfs, &scratch, &mut c);
    let gold_pattern = fs::read(gold_mnt.join("data/pattern.bin")).unwrap();
    let disks = [
        make_clone(&xfs, &gold_img, "c1", &mut c),
        make_clone(&xfs, &gold_img, "c2", &mut c),
        make_clone(&xfs, &gold_img, "c3", &mut c),
    ];
    run("zpool", &["export", GOLD]);
    let probed: Vec<(PathBuf, u64, String)> = disks.iter().map(|d| probe_pool(d)).collect();
    let names: Vec<String> = (0..3)
        .map(|i| zfs::unique_pool_name(&probed[i].2, &format!("v{i}")))
        .collect();
    let alts: Vec<PathBuf> = (0..3)
        .map(|i| scratch.join(format!("volumes/v{i}")))
        .collect();
    let import = |i: usize, reguid: bool| {
        let (dev, guid, _) = &probed[i];
        zfs::import_clone(
            std::slice::from_ref(dev),
            *guid,
            &names[i],
            &alts[i],
            reguid,
        )
        .and_then(|mut p| zfs::mount_all(&mut p, CONFINED).map(|()| p))
    };
    let p0 = import(0, false).unwrap();
    c.pools.push(names[0].clone());
    assert_eq!(p0.guid, probed[0].1, "no reguid: the GUID stays the gold's");
    assert_eq!(p0.forced, None, "same hostid: no -f needed");
    zfs::export(&names[0], false).unwrap();
    let p0 = import(0, true).unwrap();
    assert_ne!(p0.guid, probed[0].1);
    assert_eq!(p0.reguided_before_import, None, "{p0:#?}");
    let p1 = import(1, false).unwrap();
    c.pools.push(names[1].clone());
    assert_eq!(p1.guid, probed[1].1);
    // The second clone holds the gold's GUID: the third gets a new one
    // before its import, and the reason names the second.
    let p2 = import(2, false).unwrap();
    c.pools.push(names[2].clone());
    let why = p2.reguided_before_import.clone().unwrap_or_default();
    assert!(why.contains(&names[1]), "{why:?}");
    assert_ne!(p2.guid, probed[2].1);
    assert_eq!(
        fs::read(
            alts[2]
                .join(gold_mnt.strip_prefix("/").unwrap())
                .join("data/pattern.bin")
        )
        .unwrap(),
        gold_pattern
    );
    zfs::export(&names[2], false).unwrap();
    assert_eq!(pools(), {
        let mut v = names[..2].to_vec();
        v.sort();
        v
    });
    let mnts: Vec<PathBuf> = (0..2)
        .map(|i| alts[i].join(gold_mnt.strip_prefix("/").unwrap()))
        .collect();
    for (i, m) in mnts.iter().enumerate() {
        assert_eq!(fs::read(m.join("data/pattern.bin")).unwrap(), gold_pattern);
        fs::write(m.join("who.txt"), format!("v{i}")).unwrap();
    }
    for (i, m) in mnts.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(m.join("who.txt")).unwrap(),
            format!("v{i}")
        );
    }

    // force: the busy dataset is detached lazily, but OpenZFS still will
    // not export a pool whose dataset is in use: Busy names the holder, the
    // pool stays imported with nothing mounted; once the holder is gone
    // the export finishes.
    let mut holder = hold_cwd(&mnts[0].join("data"));
    let r = zfs::export(&names[0], true);
    eprintln!("forced export with a busy dataset: {r:?}");
    let e = r.unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        matches!(e.downcast_ref::<ZfsError>(), Some(ZfsError::Busy { .. }))
            && msg.contains(&format!("pid {} (sleep)", holder.id())),
        "{msg}"
    );
    assert!(
        mounts_under(&alts[0]).is_empty(),
        "{:?}",
        mounts_under(&alts[0])
    );
    assert!(pools().contains(&names[0]));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let rep = zfs::export(&names[0], true).unwrap();
    eprintln!("forced export after the holder left: {rep:?}");
    assert!(
        rep.forced.iter().any(|f| f.contains("zpool export -f")),
        "{rep:?}"
    );
    assert!(zfs::export(&names[1], false).unwrap().forced.is_empty());
    assert!(pools().is_empty(), "{:?}", pools());
}

// ------------------------------------------------ through the engine

use connector::config::Config;
use connector::engine::types::{DeviceSource, MountOptions, MountRequest, VolumeName};
use connector::engine::Engine;
use connector::manifest::Manifest;

/// An engine with private paths under `scratch`.
fn engine(scratch: &Path) -> Engine {
    Engine::open(Config {
        volumes_root: scratch.join("volumes"),
        state_path: scratch.join("state/state.redb"),
        run_dir: scratch.join("run"),
    })
    .unwrap()
}

fn engine_mount(e: &Engine, volume: &str, dev: &Path) -> Manifest {
    let req = MountRequest {
        volume: VolumeName::parse(volume).unwrap(),
        sources: vec![DeviceSource::Device {
            path: dev.to_path_buf(),
        }],
        options: MountOptions::default(),
    };
    match e.mount(&req) {
        Ok(m) => m.into_inner(),
        Err(err) => panic!("mounting {volume}: {err:?}"),
    }
}

/// A fresh pool `name` on its own image and loop device, created under a
/// deep altroot so nothing of it is mounted anywhere else while it is set
/// up; `build` adds datasets and files (given the altroot), then the pool is
/// exported. Returns the loop device.
fn make_pool(scratch: &Path, name: &str, c: &mut Cleanup, build: impl FnOnce(&Path)) -> PathBuf {
    let img = scratch.join(format!("{name}.img"));
    fs::File::create(&img)
        .unwrap()
        .set_len(IMG_MIB << 20)
        .unwrap();
    let dev = run("losetup", &["-f", "--show", "-P", img.to_str().unwrap()])
        .trim()
        .to_string();
    c.loops.push(dev.clone());
    let alt = scratch.join(format!("setup-{name}/a/b/c/d"));
    fs::create_dir_all(&alt).unwrap();
    run(
        "zpool",
        &[
            "create",
            "-o",
            "cachefile=none",
            "-R",
            alt.to_str().unwrap(),
            name,
            &dev,
        ],
    );
    c.pools.push(name.to_string());
    build(&alt);
    run("zpool", &["export", name]);
    PathBuf::from(dev)
}

/// ZFS mounts in this namespace: (source, mount point, options).
fn zfs_mounts() -> Vec<(String, PathBuf, String)> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"zfs"))
                .then(|| (f[0].to_string(), PathBuf::from(f[1]), f[3].to_string()))
        })
        .collect()
}

/// The reviewer's hostile pool, mounted through the engine: a dataset whose
/// mountpoint climbs out with `..`, one with an absolute mountpoint like
/// `/etc/…`, a parent dataset holding a symlink `data -> /tmp/<hostdir>`
/// with a child dataset mounted at `data`, a canmount=off and a legacy
/// dataset, a setuid-root binary and a device node. Nothing is mounted
/// outside the volume, the host directory is untouched, every ZFS mount is
/// `nosuid,nodev` (the setuid bit does not take effect, the device node
/// cannot be opened), the rest of the pool is mounted, the refused datasets
/// are listed with their reasons, and unmount leaves nothing behind.
#[test]
#[ignore = "needs the lab kernel"]
fn zfs_hostile_pool_is_confined() {
    let scratch = require_lab();
    require_zfs();
    let mut c = Cleanup {
        pools: Vec::new(),
        loops: Vec::new(),
    };
    let hostdir = PathBuf::from(format!("/tmp/gm-zfs-hostdir-{}", std::process::id()));
    fs::create_dir_all(&hostdir).unwrap();
    fs::write(hostdir.join("host.txt"), "host\n").unwrap();
    let up = "/../../../../../../etc/gm-zfs-up";
    let dev = make_pool(&scratch, "evil", &mut c, |alt| {
        let root = alt.join("evil");
        fs::write(root.join("root.txt"), "evil root\n").unwrap();
        fs::copy("/usr/bin/id", root.join("suid-id")).unwrap();
        run("chmod", &["4755", root.join("suid-id").to_str().unwrap()]);
        run(
            "mknod",
            &[root.join("null").to_str().unwrap(), "c", "1", "3"],
        );
        run("zfs", &["create", "-o", "canmount=noauto", "evil/up"]);
        run("zfs", &["set", &format!("mountpoint={up}"), "evil/up"]);
        run(
            "zfs",
            &["create", "-o", "mountpoint=/etc/gm-zfs-abs", "evil/abs"],
        );
        fs::write(alt.join("etc/gm-zfs-abs/abs.txt"), "abs\n").unwrap();
        run("zfs", &["create", "-o", "mountpoint=/p", "evil/p"]);
        fs::write(alt.join("p/p.txt"), "p\n").unwrap();
        run("zfs", &["create", "evil/p/data"]);
        fs::write(alt.join("p/data/child.txt"), "child\n").unwrap();
        // The child is unmounted and its directory in the parent replaced
        // by a symlink to the host directory.
        run("zfs", &["unmount", "evil/p/data"]);
        fs::remove_dir(alt.join("p/data")).unwrap();
        std::os::unix::fs::symlink(&hostdir, alt.join("p/data")).unwrap();
        run(
            "zfs",
            &[
                "create",
                "-o",
                "canmount=off",
                "-o",
                "mountpoint=/off",
                "evil/off",
            ],
        );
        run("zfs", &["create", "-o", "mountpoint=legacy", "evil/legacy"]);
        // Only now: `up` may be mounted automatically on import, as its own
        // host would (canmount=on).
        run("zfs", &["set", "canmount=on", "evil/up"]);
    });
    let e = engine(&scratch);
    let m = engine_mount(&e, "hostile", &dev);
    eprintln!("manifest: {}", serde_json::to_string_pretty(&m).unwrap());
    let vol = m.path.clone();
    let zm = zfs_mounts();
    eprintln!("zfs mounts: {zm:#?}");
    let pool = zfs::unique_pool_name("evil", "hostile");
    let ours: Vec<&(String, PathBuf, String)> = zm
        .iter()
        .filter(|(src, _, _)| src == &pool || src.starts_with(&format!("{pool}/")))
        .collect();
    // Nothing outside the volume, all nosuid,nodev.
    for (src, mp, opts) in &ours {
        assert!(
            mp.starts_with(&vol),
            "{src} mounted outside the volume at {}",
            mp.display()
        );
        let o: Vec<&str> = opts.split(',').collect();
        assert!(
            o.contains(&"nosuid") && o.contains(&"nodev"),
            "{src} at {}: {opts}",
            mp.display()
        );
    }
    let mounted: Vec<&str> = ours.iter().map(|(s, _, _)| s.as_str()).collect();
    for ds in ["", "/abs", "/p"] {
        let name = format!("{pool}{ds}");
        assert!(
            mounted.contains(&name.as_str()),
            "{name} not mounted: {mounted:?}"
        );
    }
    for ds in ["/up", "/p/data", "/off", "/legacy"] {
        let name = format!("{pool}{ds}");
        assert!(
            !mounted.contains(&name.as_str()),
            "{name} mounted: {ours:?}"
        );
    }
    // The refused ones are listed, with the reason.
    let why = |ds: &str| -> String {
        let name = format!("{pool}{ds}");
        m.skipped
            .iter()
            .find(|s| s.source == name)
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} not listed in skipped: {:?}", m.skipped))
    };
    assert!(why("/up").contains("outside the volume"), "{}", why("/up"));
    assert!(why("/p/data").contains("symlink"), "{}", why("/p/data"));
    assert!(why("/off").contains("canmount=off"));
    assert!(why("/legacy").contains("legacy"));
    // The host is untouched.
    assert!(!Path::new("/etc/gm-zfs-up").exists());
    assert!(!Path::new("/etc/gm-zfs-abs").exists());
    let host_entries: Vec<String> = fs::read_dir(&hostdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(host_entries, vec!["host.txt".to_string()]);
    // The content is there, inside the volume.
    // The root dataset's default mountpoint follows its (new) name.
    let root = vol.join(&pool);
    assert_eq!(
        fs::read_to_string(root.join("root.txt")).unwrap(),
        "evil root\n"
    );
    assert_eq!(
        fs::read_to_string(vol.join("etc/gm-zfs-abs/abs.txt")).unwrap(),
        "abs\n"
    );
    assert_eq!(fs::read_to_string(vol.join("p/p.txt")).unwrap(), "p\n");
    // nodev: the device node cannot be opened; nosuid: the setuid-root
    // binary runs with the caller's uid.
    let dev_open = fs::OpenOptions::new().write(true).open(root.join("null"));
    assert!(
        dev_open.is_err(),
        "a device node on the clone opened: nodev missing"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(root.join("suid-id"))
        .arg("-u")
        .output()
        .unwrap();
    let euid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(euid, "65534", "setuid took effect: {out:?}");

    let rep = e
        .unmount(&VolumeName::parse("hostile").unwrap(), false)
        .unwrap();
    eprintln!("unmount: {rep:?}");
    assert!(!pools().contains(&pool), "{:?}", pools());
    assert!(zfs_mounts().iter().all(|(_, mp, _)| !mp.starts_with(&vol)));
    assert!(!vol.exists(), "the volume directory is removed");
    assert!(hostdir.join("host.txt").exists());
    fs::remove_dir_all(&hostdir).unwrap();
}

/// Two volumes whose pool names collided before (`<base>-<volume>`: pool
/// `a-b` in volume `c` and pool `a` in volume `b-c` were both `a-b-c`): now
/// distinct names, both imported side by side; each unmount exports only
/// its own pool; and the undo rule itself: a pool under the name with
/// another GUID (another volume's) is left alone.
#[test]
#[ignore = "needs the lab kernel"]
fn zfs_colliding_names_export_only_their_own() {
    let scratch = require_lab();
    require_zfs();
    let mut c = Cleanup {
        pools: Vec::new(),
        loops: Vec::new(),
    };
    let mk = |alt: &Path, pool: &str| {
        fs::write(alt.join(pool).join("who.txt"), pool).unwrap();
    };
    let dev_ab = make_pool(&scratch, "a-b", &mut c, |alt| mk(alt, "a-b"));
    let dev_a = make_pool(&scratch, "a", &mut c, |alt| mk(alt, "a"));
    let n1 = zfs::unique_pool_name("a-b", "c");
    let n2 = zfs::unique_pool_name("a", "b-c");
    assert_ne!(n1, n2);
    c.pools.extend([n1.clone(), n2.clone()]);
    let e = engine(&scratch);
    let m1 = engine_mount(&e, "c", &dev_ab);
    let m2 = engine_mount(&e, "b-c", &dev_a);
    assert_eq!(
        fs::read_to_string(m1.path.join(&n1).join("who.txt")).unwrap(),
        "a-b"
    );
    assert_eq!(
        fs::read_to_string(m2.path.join(&n2).join("who.txt")).unwrap(),
        "a"
    );
    let mut both = vec![n1.clone(), n2.clone()];
    both.sort();
    assert_eq!(pools(), both);

    // The undo rule: volume c's record names n1 with n1's GUID; a pool
    // under a name with another GUID is another volume's — left alone,
    // even when the step is pending and the devices are compared.
    let g2: u64 = run("zpool", &["get", "-H", "-p", "-o", "value", "guid", &n2])
        .trim()
        .parse()
        .unwrap();
    let r = zfs::export_if_ours(&n2, &[g2 ^ 1], None, false).unwrap();
    assert!(
        matches!(r, zfs::ExportOutcome::NotOurs { found_guid } if found_guid == g2),
        "{r:?}"
    );
    let r =
        zfs::export_if_ours(&n2, &[g2 ^ 1], Some(std::slice::from_ref(&dev_ab)), false).unwrap();
    assert!(matches!(r, zfs::ExportOutcome::NotOurs { .. }), "{r:?}");
    assert_eq!(pools(), both, "a pool that is not ours was exported");

    e.unmount(&VolumeName::parse("c").unwrap(), false).unwrap();
    assert_eq!(pools(), vec![n2.clone()]);
    assert_eq!(
        fs::read_to_string(m2.path.join(&n2).join("who.txt")).unwrap(),
        "a"
    );
    e.unmount(&VolumeName::parse("b-c").unwrap(), false)
        .unwrap();
    assert!(pools().is_empty(), "{:?}", pools());
    assert!(zfs_mounts().is_empty(), "{:?}", zfs_mounts());
}

/// Issue 12.6 through the engine: the gold pool imported and mounted on the
/// host, two clones of it (taken while it is live) mounted as two volumes
/// beside it. Each clone gets a new GUID on its own device before its import
/// (the manifest says why), contents equal the gold's, writes stay in their
/// clone, the gold keeps its GUID and its labels, and after both unmounts
/// the host's pool list and `/etc/zfs/zpool.cache` are as before.
#[test]
#[ignore = "needs the lab kernel"]
fn zfs_engine_clones_next_to_mounted_gold() {
    let scratch = require_lab();
    require_zfs();
    let (xfs, mut c) = reflink_and_cleanup(&scratch);
    let (gold_img, gold_mnt, gold_dev) = make_gold(&xfs, &scratch, &mut c);
    let gold_guid = run("zpool", &["get", "-H", "-p", "-o", "value", "guid", GOLD])
        .trim()
        .to_string();
    let cachefile = Path::new("/etc/zfs/zpool.cache");
    let cache_before = fs::read(cachefile).ok();
    let pools_before = pools();
    let gold_label = probe_pool(Path::new(&gold_dev));
    let disks = [
        make_clone(&xfs, &gold_img, "e1", &mut c),
        make_clone(&xfs, &gold_img, "e2", &mut c),
    ];
    let e = engine(&scratch);
    let mut manifests = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let vol = format!("zg{i}");
        c.pools.push(zfs::unique_pool_name(GOLD, &vol));
        let t0 = std::time::Instant::now();
        let m = engine_mount(&e, &vol, d);
        eprintln!(
            "engine mount {vol} next to the gold: {:.2}s, notes {:?}",
            t0.elapsed().as_secs_f64(),
            m.notes
        );
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("is open on this host as pool") && n.contains(GOLD)),
            "the manifest says why the GUID changed: {:?}",
            m.notes
        );
        manifests.push(m);
    }
    assert_eq!(pools().len(), 3, "{:?}", pools());
    let roots: Vec<PathBuf> = manifests
        .iter()
        .map(|m| m.path.join(gold_mnt.strip_prefix("/").unwrap()))
        .collect();
    for (i, r) in roots.iter().enumerate() {
        for rel in ["root.txt", "data/pattern.bin", "data/nested/deep.txt"] {
            assert_eq!(
                fs::read(r.join(rel)).unwrap(),
                fs::read(gold_mnt.join(rel)).unwrap(),
                "clone {i}: {rel}"
            );
        }
        fs::write(r.join("data/nested/deep.txt"), format!("clone {i}\n")).unwrap();
    }
    run("zpool", &["sync"]);
    for (i, r) in roots.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(r.join("data/nested/deep.txt")).unwrap(),
            format!("clone {i}\n")
        );
    }
    assert_eq!(
        fs::read_to_string(gold_mnt.join("data/nested/deep.txt")).unwrap(),
        "deep in the gold\n"
    );
    for i in 0..2 {
        e.unmount(&VolumeName::parse(&format!("zg{i}")).unwrap(), false)
            .unwrap();
    }
    assert_eq!(pools(), pools_before, "only the gold is left");
    assert_eq!(
        run("zpool", &["get", "-H", "-p", "-o", "value", "guid", GOLD]).trim(),
        gold_guid
    );
    assert_eq!(probe_pool(Path::new(&gold_dev)).1, gold_label.1);
    assert_eq!(
        run("zpool", &["list", "-H", "-o", "health", GOLD]).trim(),
        "ONLINE"
    );
    assert_eq!(
        fs::read(cachefile).ok(),
        cache_before,
        "{} untouched",
        cachefile.display()
    );
    for m in &manifests {
        assert!(
            mounts_under(&m.path).is_empty(),
            "{:?}",
            mounts_under(&m.path)
        );
    }
}
