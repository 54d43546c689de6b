//! Issue 12.1 in the lab: the disk Ubuntu's installer (subiquity/curtin)
//! writes, made with the real tools — GPT with a 1 MiB `bios_grub`
//! partition, `/boot` ext4, and the PV of VG `ubuntu-vg` holding LV
//! `ubuntu-lv` (ext4 `/`) — with the fstab exactly as curtin writes it:
//! `/` by `/dev/disk/by-id/dm-uuid-LVM-<VG UUID><LV UUID>` (dashes dropped),
//! `/boot` by `/dev/disk/by-uuid/…`, a swap file.
//!
//! Clones of it are mounted by the `goldmount` CLI next to their gold,
//! whose VG is active and whose root is mounted on the same host: the
//! clone's VG name and UUIDs collide, so vgimportclone really changes the
//! clone's VG UUID and the `dm-uuid-LVM-` line can only be resolved through
//! the gold's (pre-import) UUIDs. Variants:
//! - the root named by `dm-uuid-LVM-…` (as curtin writes it);
//! - the root named by `/dev/disk/by-id/dm-name-ubuntu--vg-ubuntu--lv`;
//! - a `--read-only` mount, where goldmount does not import volume groups
//!   (vgimportclone writes the clone's metadata): the scenario records what
//!   the manifest says and requires either the tree or a clear reason.
//!
//! Each variant runs even when an earlier one failed; the scenario fails at
//! the end with every failing variant's message.
//!
//! Run with `cargo xtask lab ubuntu_subiquity`.
//!
//! Issue 12.2: Fedora's btrfs layout as Anaconda writes it — GPT with an
//! ESP (vfat), `/boot` ext4 and a btrfs with top-level subvolumes `root`
//! and `home` (default subvolume left at the top level), the fstab in
//! `root/etc/fstab` naming `/` and `/home` by `subvol=`. Clones are mounted
//! by the CLI next to the gold whose `/` and `/home` are mounted on the same
//! host (one btrfs fsid twice), with `--btrfs-new-fsid`, and with the gold
//! unmounted. Run with `cargo xtask lab fedora_btrfs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use goldmount_tests::gmcli::*;
use goldmount_tests::lab::*;
use goldmount_tests::lvmgold::partition;

const MIB: u64 = 1 << 20;
const VG: &str = "ubuntu-vg";
const LV: &str = "ubuntu-lv";
/// The LV's device-mapper name (dashes doubled).
const DM_NAME: &str = "ubuntu--vg-ubuntu--lv";
const ROOT_MARKER: &str = "ubuntu root of the gold\n";
const BOOT_MARKER: &str = "ubuntu /boot of the gold\n";

/// What the installer made, as the fstab names it.
struct Ids {
    /// `vgs -o vg_uuid`, dashes dropped.
    vg_uuid: String,
    /// `lvs -o lv_uuid`, dashes dropped.
    lv_uuid: String,
    /// The `/boot` ext4's UUID.
    boot_uuid: String,
}

impl Ids {
    /// `/dev/disk/by-id/dm-uuid-LVM-…` of the root LV.
    fn dm_uuid_link(&self) -> String {
        format!(
            "/dev/disk/by-id/dm-uuid-LVM-{}{}",
            self.vg_uuid, self.lv_uuid
        )
    }
}

/// The fstab as curtin writes it, with `root_spec` on the `/` line.
fn curtin_fstab(root_spec: &str, boot_uuid: &str) -> String {
    format!(
        "# /etc/fstab: static file system information.\n\
         #\n\
         # Use 'blkid' to print the universally unique identifier for a\n\
         # device; this may be used with UUID= as a more robust way to name devices\n\
         # that works even if disks are added and removed. See fstab(5).\n\
         #\n\
         # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
         # / was on /dev/{VG}/{LV} during curtin installation\n\
         {root_spec} / ext4 defaults 0 1\n\
         # /boot was on /dev/sda2 during curtin installation\n\
         /dev/disk/by-uuid/{boot_uuid} /boot ext4 defaults 0 1\n\
         /swap.img\tnone\tswap\tsw\t0\t0\n"
    )
}

fn undash(s: &str) -> String {
    s.trim().replace('-', "")
}

/// Attaches `img` with partition scanning and waits for partition `n`.
fn attach(img: &Path, parts: u32) -> String {
    let dev = run("losetup", &["-f", "-P", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    let _ = try_run("udevadm", &["settle", "-t", "10"], CMD_TIMEOUT);
    for n in 1..=parts {
        let p = partition(Path::new(&dev), n);
        wait_until(&p.display().to_string(), Duration::from_secs(30), || {
            p.exists().then_some(())
        });
    }
    dev
}

fn part(dev: &str, n: u32) -> String {
    partition(Path::new(dev), n).to_str().unwrap().to_string()
}

fn lv_dev() -> String {
    format!("/dev/mapper/{DM_NAME}")
}

/// Activates `ubuntu-vg` on exactly `pv`, mounts its root LV at `at`, runs
/// `f` there, unmounts and deactivates.
fn with_root_lv(pv: &str, at: &Path, f: impl FnOnce(&Path)) {
    lvm(&["vgchange", "-q", "--devices", pv, "-ay", VG]);
    fs::create_dir_all(at).unwrap();
    run("mount", &[&lv_dev(), at.to_str().unwrap()]);
    f(at);
    run("umount", &[at.to_str().unwrap()]);
    lvm(&["vgchange", "-q", "--devices", pv, "-an", VG]);
}

/// The gold disk as subiquity lays it out on a BIOS machine, as an image
/// file (detached, VG inactive).
fn build_gold(dir: &Path) -> (PathBuf, Ids) {
    let img = dir.join("ubuntu-gold.img");
    fs::File::create(&img).unwrap().set_len(256 * MIB).unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+1M",
            "-t1:ef02",
            "-n2:0:+64M",
            "-t2:8300",
            "-n3:0:0",
            "-t3:8300",
            img.to_str().unwrap(),
        ],
    );
    let dev = attach(&img, 3);
    let (p2, p3) = (part(&dev, 2), part(&dev, 3));
    run("mkfs.ext4", &["-q", "-F", &p2]);
    let boot_uuid = run("blkid", &["-p", "-s", "UUID", "-o", "value", &p2])
        .trim()
        .to_string();
    lvm(&["pvcreate", "-q", "--devices", &p3, &p3]);
    lvm(&["vgcreate", "-q", "--devices", &p3, VG, &p3]);
    lvm(&[
        "lvcreate",
        "-q",
        "--devices",
        &p3,
        "-y",
        "-L",
        "128M",
        "-n",
        LV,
        VG,
    ]);
    run("mkfs.ext4", &["-q", "-F", &lv_dev()]);
    let ids = Ids {
        vg_uuid: undash(&lvm(&[
            "vgs",
            "--devices",
            &p3,
            "--noheadings",
            "-o",
            "vg_uuid",
            VG,
        ])),
        lv_uuid: undash(&lvm(&[
            "lvs",
            "--devices",
            &p3,
            "--noheadings",
            "-o",
            "lv_uuid",
            &format!("{VG}/{LV}"),
        ])),
        boot_uuid,
    };
    assert_eq!(ids.vg_uuid.len(), 32, "VG UUID {}", ids.vg_uuid);
    assert_eq!(ids.lv_uuid.len(), 32, "LV UUID {}", ids.lv_uuid);
    lvm(&["vgchange", "-q", "--devices", &p3, "-an", VG]);
    let build = dir.join("build-ubuntu");
    with_root_lv(&p3, &build, |r| {
        for d in ["etc", "boot", "home"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("etc/hostname"), "ubuntu-gold\n").unwrap();
        fs::write(r.join("marker"), ROOT_MARKER).unwrap();
        fs::write(
            r.join("etc/fstab"),
            curtin_fstab(&ids.dm_uuid_link(), &ids.boot_uuid),
        )
        .unwrap();
        run("mount", &[&p2, r.join("boot").to_str().unwrap()]);
        fs::write(r.join("boot/marker"), BOOT_MARKER).unwrap();
        run("umount", &[r.join("boot").to_str().unwrap()]);
    });
    run("losetup", &["-d", &dev]);
    run("sync", &[]);
    (img, ids)
}

/// Rewrites the `/` line of the fstab inside clone image `img` (done while
/// no other copy of the VG is active).
fn set_root_spec(img: &Path, dir: &Path, spec: &str, ids: &Ids) {
    let dev = attach(img, 3);
    with_root_lv(&part(&dev, 3), &dir.join("edit-root"), |r| {
        fs::write(r.join("etc/fstab"), curtin_fstab(spec, &ids.boot_uuid)).unwrap();
    });
    run("losetup", &["-d", &dev]);
}

/// `(name, uuid without dashes)` of every VG lvm2 sees, ignoring any
/// devices file.
fn all_vgs() -> Vec<(String, String)> {
    lvm(&[
        "vgs",
        "--noheadings",
        "--devicesfile",
        "",
        "-o",
        "vg_name,vg_uuid",
    ])
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.to_string(), undash(w.next()?)))
    })
    .collect()
}

/// The manifest's mount for original mountpoint `mp`.
fn mount_at<'a>(m: &'a serde_json::Value, mp: &str) -> Option<&'a serde_json::Value> {
    m["mounts"]
        .as_array()?
        .iter()
        .find(|x| x["original_mountpoint"].as_str() == Some(mp))
}

fn strs(m: &serde_json::Value, key: &str) -> Vec<String> {
    m[key]
        .as_array()
        .map(|a| a.iter().map(|v| v.to_string()).collect())
        .unwrap_or_default()
}

/// After an unmount: nothing of `volume` left on the host.
fn assert_released(volume: &str, root: &Path, img: &Path, gold_vg_uuid: &str) {
    let left = mounts_under(&root.join(volume));
    assert!(left.is_empty(), "mounts of {volume} left: {left:?}");
    let dms: Vec<String> = dm_names()
        .into_iter()
        .filter(|n| n.contains(&format!("_{volume}")))
        .collect();
    assert!(dms.is_empty(), "dm devices of {volume} left: {dms:?}");
    let loops = loops_of(img);
    assert!(
        loops.is_empty(),
        "loop devices of {} left: {loops:?}",
        img.display()
    );
    let vgs = all_vgs();
    assert!(
        vgs.iter().all(|(n, u)| n == VG && u == gold_vg_uuid),
        "a VG other than the gold's is still visible: {vgs:?}"
    );
    let list = gm_list();
    assert!(
        !list.to_string().contains(&format!("\"{volume}\"")),
        "{volume} still listed: {list}"
    );
}

/// The live gold on this host: its loop device, root mount and what must
/// not change.
struct Gold {
    dev: String,
    mnt: PathBuf,
    vg_uuid: String,
    dms: Vec<String>,
}

impl Gold {
    fn assert_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.mnt.join("marker")).unwrap(),
            ROOT_MARKER
        );
        assert!(
            !self.mnt.join("clone-only").exists(),
            "a clone's write reached the gold"
        );
        assert!(
            mounts_under(&self.mnt).contains(&self.mnt.to_string_lossy().to_string()),
            "the gold's root is no longer mounted"
        );
        assert_eq!(dm_on_disk(Path::new(&self.dev)), self.dms);
        let uuid = undash(&lvm(&[
            "vgs",
            "--devices",
            &part(&self.dev, 3),
            "--noheadings",
            "-o",
            "vg_uuid",
            VG,
        ]));
        assert_eq!(uuid, self.vg_uuid, "the gold's VG UUID changed");
    }
}

/// Mounts clone `img` read-write as `volume`, checks the tree and the
/// import, writes to it, unmounts and checks the release.
fn read_write_variant(
    volume: &str,
    img: &Path,
    root: &Path,
    gold: &Gold,
    ids: &Ids,
    vols: &Volumes,
) {
    vols.add(volume);
    let t = Instant::now();
    let m = gm_mount_with(volume, &["--device", img.to_str().unwrap()]);
    eprintln!("[{volume}] mount took {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(m["layout"], "fstab", "[{volume}] {m}");
    let top = root.join(volume);
    let r = mount_at(&m, "/").unwrap_or_else(|| panic!("[{volume}] / not mounted: {m}"));
    assert_eq!(r["mount_path"].as_str(), top.to_str(), "{m}");
    let b = mount_at(&m, "/boot").unwrap_or_else(|| panic!("[{volume}] /boot not mounted: {m}"));
    assert_eq!(b["mount_path"].as_str(), top.join("boot").to_str(), "{m}");
    assert_eq!(fs::read_to_string(top.join("marker")).unwrap(), ROOT_MARKER);
    assert_eq!(
        fs::read_to_string(top.join("boot/marker")).unwrap(),
        BOOT_MARKER
    );
    // Written to the gold after the clone was taken: the clone must not
    // show it (it is not the gold's LV mounted by mistake).
    assert!(
        !top.join("gold-after-clone").exists(),
        "[{volume}] shows the gold's root"
    );
    let unresolved = m["unresolved"].as_array().unwrap();
    eprintln!("[{volume}] unresolved: {unresolved:?}");
    assert!(
        unresolved
            .iter()
            .all(|u| u["mountpoint"] == "none"
                || u["spec"].as_str().is_some_and(|s| s.contains("swap"))),
        "[{volume}] unresolved fstab lines other than swap: {unresolved:?}"
    );
    let notes = strs(&m, "notes");
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("volume group {VG} imported as"))),
        "[{volume}] no note of the VG rename: {notes:?}"
    );
    // vgimportclone really changed the clone's VG UUID: the only VGs lvm2
    // sees are the gold's and one renamed VG with a UUID of its own.
    let vgs = all_vgs();
    eprintln!("[{volume}] VGs while mounted: {vgs:?}");
    let clone_vgs: Vec<&(String, String)> = vgs.iter().filter(|(n, _)| n != VG).collect();
    assert_eq!(clone_vgs.len(), 1, "[{volume}] {vgs:?}");
    assert_ne!(
        clone_vgs[0].1, ids.vg_uuid,
        "[{volume}] clone kept the gold's VG UUID"
    );
    assert!(
        vgs.iter().any(|(n, u)| n == VG && *u == ids.vg_uuid),
        "[{volume}] the gold's VG is gone: {vgs:?}"
    );
    // A write in the clone stays there.
    fs::write(top.join("clone-only"), volume).unwrap();
    fs::write(top.join("boot/clone-only"), volume).unwrap();
    gold.assert_untouched();
    let t = Instant::now();
    gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
    eprintln!("[{volume}] unmount took {:.1}s", t.elapsed().as_secs_f64());
    assert_released(volume, root, img, &ids.vg_uuid);
    gold.assert_untouched();
}

/// `sha256sum` of a file.
fn digest(p: &Path) -> String {
    run("sha256sum", &[p.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `--read-only`: the tree if goldmount can bring the LVM root up without
/// writing to the clone, otherwise a manifest that says why; never a write
/// to the clone image.
fn read_only_variant(
    volume: &str,
    img: &Path,
    root: &Path,
    gold: &Gold,
    ids: &Ids,
    vols: &Volumes,
) {
    let before = digest(img);
    vols.add(volume);
    let t = Instant::now();
    let m = gm_mount_with(volume, &["--device", img.to_str().unwrap(), "--read-only"]);
    eprintln!(
        "[{volume}] read-only mount took {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(m["read_only"], true, "{m}");
    let top = root.join(volume);
    let boot_marker = if m["layout"] == "fstab" {
        eprintln!("[{volume}] RESULT: the read-only clone came up with its fstab tree");
        assert_eq!(fs::read_to_string(top.join("marker")).unwrap(), ROOT_MARKER);
        assert!(mount_at(&m, "/boot").is_some(), "{m}");
        top.join("boot/marker")
    } else {
        // Flat: the root LV was not activated (what goldmount does today:
        // no vgimportclone on a read-only mount, and no other way to bring
        // up a VG whose name and UUIDs the live gold holds; the fstab on
        // the LV is then never read). The manifest must say why, on the PV
        // it left alone. Once read-only LVM activation exists, only the
        // branch above should remain.
        let skipped = m["skipped"].as_array().unwrap();
        let why = skipped
            .iter()
            .find(|s| s["what"] == "LVM2_member")
            .and_then(|s| s["reason"].as_str())
            .unwrap_or_else(|| panic!("[{volume}] flat, and no word on the LVM PV: {m}"));
        eprintln!(
            "[{volume}] RESULT: flat; LVM PV skipped: {why}; notes: {:?}",
            strs(&m, "notes")
        );
        assert!(
            why.contains("read-only") && why.contains("volume group"),
            "[{volume}] the reason does not say that the read-only mount left the volume group alone: {why}"
        );
        let boot = m["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["uuid"].as_str() == Some(ids.boot_uuid.as_str()))
            .unwrap_or_else(|| panic!("[{volume}] /boot's ext4 not mounted: {m}"));
        PathBuf::from(boot["mount_path"].as_str().unwrap()).join("marker")
    };
    assert_eq!(fs::read_to_string(&boot_marker).unwrap(), BOOT_MARKER);
    assert!(
        fs::write(boot_marker.with_file_name("clone-only"), volume).is_err(),
        "[{volume}] a read-only mount took a write"
    );
    gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
    assert_released(volume, root, img, &ids.vg_uuid);
    assert_eq!(
        digest(img),
        before,
        "[{volume}] the read-only mount changed the clone image"
    );
    gold.assert_untouched();
}

/// Runs one variant; its panic becomes an error message so the others run.
fn variant(name: &str, failures: &mut Vec<String>, f: impl FnOnce()) {
    let t = Instant::now();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => eprintln!(
            "===== variant {name}: PASS in {:.1}s",
            t.elapsed().as_secs_f64()
        ),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!(
                "===== variant {name}: FAIL in {:.1}s: {msg}",
                t.elapsed().as_secs_f64()
            );
            failures.push(format!("{name}: {msg}"));
        }
    }
}

#[test]
#[ignore = "needs the lab kernel"]
fn ubuntu_subiquity_lvm_clone_mounts_its_tree_next_to_its_gold() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let vols = Volumes::new();
    let t = Instant::now();
    let (gold_img, ids) = build_gold(&scratch);
    eprintln!(
        "gold built in {:.1}s: {} VG {} LV {} /boot {}",
        t.elapsed().as_secs_f64(),
        ids.dm_uuid_link(),
        ids.vg_uuid,
        ids.lv_uuid,
        ids.boot_uuid
    );
    let c_uuid = clone_of(&gold_img, "u1");
    let c_name = clone_of(&gold_img, "u2");
    let c_ro = clone_of(&gold_img, "u3");
    set_root_spec(
        &c_name,
        &scratch,
        &format!("/dev/disk/by-id/dm-name-{DM_NAME}"),
        &ids,
    );

    // The gold active and its root mounted on this host; udev made the
    // very link curtin's fstab names.
    let gdev = attach(&gold_img, 3);
    lvm(&["vgchange", "-q", "--devices", &part(&gdev, 3), "-ay", VG]);
    let link = PathBuf::from(ids.dm_uuid_link());
    wait_until(&link.display().to_string(), Duration::from_secs(30), || {
        let _ = try_run("udevadm", &["settle", "-t", "5"], CMD_TIMEOUT);
        link.exists().then_some(())
    });
    let gmnt = scratch.join("gold-root");
    fs::create_dir_all(&gmnt).unwrap();
    run("mount", &[&lv_dev(), gmnt.to_str().unwrap()]);
    fs::write(gmnt.join("gold-after-clone"), "gold\n").unwrap();
    let gold = Gold {
        dms: dm_on_disk(Path::new(&gdev)),
        dev: gdev.clone(),
        mnt: gmnt.clone(),
        vg_uuid: ids.vg_uuid.clone(),
    };
    assert_eq!(gold.dms.len(), 1, "the gold's LV: {:?}", gold.dms);

    let mut failures = Vec::new();
    variant("dm-uuid-LVM (curtin's fstab)", &mut failures, || {
        read_write_variant("u1", &c_uuid, &root, &gold, &ids, &vols)
    });
    variant("dm-name", &mut failures, || {
        read_write_variant("u2", &c_name, &root, &gold, &ids, &vols)
    });
    variant("--read-only", &mut failures, || {
        read_only_variant("u3", &c_ro, &root, &gold, &ids, &vols)
    });
    drop(vols);

    gold.assert_untouched();
    run("umount", &[gmnt.to_str().unwrap()]);
    lvm(&["vgchange", "-q", "--devices", &part(&gdev, 3), "-an", VG]);
    run("losetup", &["-d", &gdev]);
    assert!(
        failures.is_empty(),
        "failed variants:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Issue 12.2: Fedora's btrfs layout (Anaconda, Fedora 33+).
// ---------------------------------------------------------------------------

const FED_ROOT_MARKER: &str = "fedora root subvolume of the gold\n";
const FED_HOME_MARKER: &str = "fedora home subvolume of the gold\n";
const FED_BOOT_MARKER: &str = "fedora /boot of the gold\n";
const FED_ESP_MARKER: &str = "fedora ESP of the gold\n";
/// At the btrfs top level (subvolid 5), beside the subvolumes: never
/// visible in the tree, whose `/` is subvolume `root`.
const FED_TOP_MARKER: &str = "btrfs top level of the gold\n";

/// The UUIDs Anaconda's fstab names.
struct FedoraIds {
    btrfs: String,
    boot: String,
    /// The vfat volume id, `XXXX-XXXX`.
    esp: String,
}

/// The fstab exactly as Anaconda writes it on Fedora 39+.
fn anaconda_fstab(ids: &FedoraIds) -> String {
    let (b, boot, esp) = (&ids.btrfs, &ids.boot, &ids.esp);
    format!(
        "\n#\n# /etc/fstab\n# Created by anaconda on Tue Oct 15 09:12:31 2024\n#\n\
         # Accessible filesystems, by reference, are maintained under '/dev/disk/'.\n\
         # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.\n#\n\
         # After editing this file, run 'systemctl daemon-reload' to update systemd\n\
         # units generated from this file.\n#\n\
         UUID={b} /                       btrfs   subvol=root,compress=zstd:1 0 0\n\
         UUID={boot} /boot                   ext4    defaults        1 2\n\
         UUID={esp}          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n\
         UUID={b} /home                   btrfs   subvol=home,compress=zstd:1 0 0\n"
    )
}

fn blkid_uuid(dev: &str) -> String {
    run("blkid", &["-p", "-s", "UUID", "-o", "value", dev])
        .trim()
        .to_string()
}

/// `sha256sum` of partition `n` of attached disk `dev`.
fn part_digest(dev: &str, n: u32) -> String {
    digest(Path::new(&part(dev, n)))
}

/// The gold disk as Anaconda lays it out on a UEFI machine, as an image
/// file (detached): p1 ESP vfat, p2 `/boot` ext4, p3 btrfs labelled
/// `fedora` with top-level subvolumes `root` and `home` (the default
/// subvolume left at the top level). Returns the digests of p1 and p2,
/// which no step of the scenario mounts on the gold side.
fn build_fedora_gold(dir: &Path) -> (PathBuf, FedoraIds, [String; 2]) {
    let img = dir.join("fedora-gold.img");
    fs::File::create(&img).unwrap().set_len(450 * MIB).unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+64M",
            "-t1:ef00",
            "-c1:EFI System Partition",
            "-n2:0:+64M",
            "-t2:8300",
            "-n3:0:0",
            "-t3:8300",
            img.to_str().unwrap(),
        ],
    );
    let dev = attach(&img, 3);
    let (p1, p2, p3) = (part(&dev, 1), part(&dev, 2), part(&dev, 3));
    run("mkfs.vfat", &["-F", "32", &p1]);
    run("mkfs.ext4", &["-q", "-F", &p2]);
    run("mkfs.btrfs", &["-q", "-f", "-L", "fedora", &p3]);
    let ids = FedoraIds {
        btrfs: blkid_uuid(&p3),
        boot: blkid_uuid(&p2),
        esp: blkid_uuid(&p1),
    };
    assert_eq!(ids.esp.len(), 9, "vfat volume id {}", ids.esp);
    assert_eq!(ids.btrfs.len(), 36, "btrfs UUID {}", ids.btrfs);
    let top = dir.join("build-fedora");
    fs::create_dir_all(&top).unwrap();
    run("mount", &["-o", "subvolid=5", &p3, top.to_str().unwrap()]);
    for sv in ["root", "home"] {
        run(
            "btrfs",
            &["-q", "subvolume", "create", top.join(sv).to_str().unwrap()],
        );
    }
    fs::write(top.join("top-level-marker"), FED_TOP_MARKER).unwrap();
    let r = top.join("root");
    for d in ["etc", "usr/bin", "boot", "home", "root", "var", "tmp"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    fs::write(r.join("etc/hostname"), "fedora-gold\n").unwrap();
    fs::write(r.join("etc/fstab"), anaconda_fstab(&ids)).unwrap();
    fs::write(r.join("marker"), FED_ROOT_MARKER).unwrap();
    fs::create_dir_all(top.join("home/alice")).unwrap();
    fs::write(top.join("home/marker"), FED_HOME_MARKER).unwrap();
    run("mount", &[&p2, r.join("boot").to_str().unwrap()]);
    fs::write(r.join("boot/marker"), FED_BOOT_MARKER).unwrap();
    fs::create_dir_all(r.join("boot/efi")).unwrap();
    run(
        "mount",
        &[
            "-o",
            "umask=0077,shortname=winnt",
            &p1,
            r.join("boot/efi").to_str().unwrap(),
        ],
    );
    fs::create_dir_all(r.join("boot/efi/EFI/fedora")).unwrap();
    fs::write(r.join("boot/efi/marker"), FED_ESP_MARKER).unwrap();
    run("umount", &[r.join("boot/efi").to_str().unwrap()]);
    run("umount", &[r.join("boot").to_str().unwrap()]);
    run("umount", &[top.to_str().unwrap()]);
    run("sync", &[]);
    let digests = [part_digest(&dev, 1), part_digest(&dev, 2)];
    run("losetup", &["-d", &dev]);
    (img, ids, digests)
}

/// The gold attached on this host, its root and home subvolumes mounted as
/// a running Fedora has them.
struct FedoraGold {
    dev: String,
    mnt: PathBuf,
    /// Digests of the ESP and `/boot` partitions at build time.
    digests: [String; 2],
}

impl FedoraGold {
    fn mounted(&self) -> bool {
        mounts_under(&self.mnt).contains(&self.mnt.to_string_lossy().to_string())
    }

    /// Nothing of a clone reached the gold.
    fn assert_untouched(&self) {
        if self.mounted() {
            assert_eq!(
                fs::read_to_string(self.mnt.join("marker")).unwrap(),
                FED_ROOT_MARKER
            );
            assert_eq!(
                fs::read_to_string(self.mnt.join("home/marker")).unwrap(),
                FED_HOME_MARKER
            );
            for p in ["clone-only", "home/clone-only"] {
                assert!(
                    !self.mnt.join(p).exists(),
                    "a clone's write reached the gold's {p}"
                );
            }
        }
        assert_eq!(
            [part_digest(&self.dev, 1), part_digest(&self.dev, 2)],
            self.digests,
            "the gold's ESP or /boot changed"
        );
    }
}

/// The manifest's mount for original mountpoint `mp`, or a panic naming
/// the volume.
fn fed_mount<'a>(volume: &str, m: &'a serde_json::Value, mp: &str) -> &'a serde_json::Value {
    mount_at(m, mp).unwrap_or_else(|| panic!("[{volume}] {mp} not mounted: {m}"))
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The published tree of a Fedora clone: `/` from subvolume root, `/home`
/// from subvolume home, `/boot` ext4, `/boot/efi` vfat with umask=0077 —
/// the clone's own data, not the gold's.
fn assert_fedora_tree(volume: &str, m: &serde_json::Value, top: &Path, ids: &FedoraIds) {
    assert_eq!(m["layout"], "fstab", "[{volume}] {m}");
    let r = fed_mount(volume, m, "/");
    let h = fed_mount(volume, m, "/home");
    let b = fed_mount(volume, m, "/boot");
    let e = fed_mount(volume, m, "/boot/efi");
    assert_eq!(m["mounts"].as_array().unwrap().len(), 4, "[{volume}] {m}");
    for (x, path, fs_type) in [
        (r, top.to_path_buf(), "btrfs"),
        (h, top.join("home"), "btrfs"),
        (b, top.join("boot"), "ext4"),
        (e, top.join("boot/efi"), "vfat"),
    ] {
        assert_eq!(x["mount_path"].as_str(), path.to_str(), "[{volume}] {x}");
        assert_eq!(x["fs_type"], fs_type, "[{volume}] {x}");
    }
    assert_eq!(r["subvolume"], "/root", "[{volume}] {r}");
    assert_eq!(h["subvolume"], "/home", "[{volume}] {h}");
    assert_eq!(
        r["uuid"].as_str(),
        Some(ids.btrfs.as_str()),
        "[{volume}] {r}"
    );
    for x in [r, h] {
        let o = x["options"].as_str().unwrap();
        assert!(o.contains("compress=zstd:1"), "[{volume}] {o}");
    }
    assert!(
        m["unresolved"].as_array().unwrap().is_empty(),
        "[{volume}] unresolved fstab lines: {m}"
    );
    let notes = strs(m, "notes");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("found in btrfs subvolume root")),
        "[{volume}] no note of where the fstab was found: {notes:?}"
    );
    let read = |p: &str| {
        fs::read_to_string(top.join(p))
            .unwrap_or_else(|err| panic!("[{volume}] {}: {err}", top.join(p).display()))
    };
    assert_eq!(read("marker"), FED_ROOT_MARKER);
    assert_eq!(read("home/marker"), FED_HOME_MARKER);
    assert_eq!(read("boot/marker"), FED_BOOT_MARKER);
    assert_eq!(read("boot/efi/marker"), FED_ESP_MARKER);
    assert_eq!(read("etc/hostname"), "fedora-gold\n");
    // `/` is subvolume root, not the top level: neither the top level's
    // marker nor the subvolume directories root/ and home/ of the top
    // level (root/marker, home/marker) are there; /root is Fedora's
    // root's home, an empty directory.
    for p in [
        "top-level-marker",
        "home/top-level-marker",
        "root/marker",
        "root/etc",
    ] {
        assert!(
            !top.join(p).exists(),
            "[{volume}] {p} visible: / or /home is not its subvolume"
        );
    }
    // Written to the gold after the clone was taken.
    for p in ["gold-after-clone", "home/gold-after-clone"] {
        assert!(!top.join(p).exists(), "[{volume}] shows the gold's {p}");
    }
    // The ESP: umask=0077 kept from the fstab and applied.
    let eo = e["options"].as_str().unwrap();
    assert!(eo.contains("umask=0077"), "[{volume}] ESP options {eo}");
    assert!(
        e["fstab_options_kept"].to_string().contains("umask=0077"),
        "[{volume}] ESP {e}"
    );
    let efi_mode = mode_of(&top.join("boot/efi"));
    let file_mode = mode_of(&top.join("boot/efi/marker"));
    eprintln!("[{volume}] /boot/efi mode {efi_mode:o}, marker mode {file_mode:o}, options {eo}");
    assert_eq!(efi_mode, 0o700, "[{volume}] /boot/efi mode {efi_mode:o}");
    assert_eq!(
        file_mode & 0o077,
        0,
        "[{volume}] ESP file mode {file_mode:o}"
    );
}

/// Writes into every filesystem of the clone's tree.
fn write_clone_only(volume: &str, top: &Path) {
    for p in [
        "clone-only",
        "home/clone-only",
        "boot/clone-only",
        "boot/efi/clone-only",
    ] {
        fs::write(top.join(p), volume).unwrap_or_else(|e| panic!("[{volume}] write {p}: {e}"));
    }
}

/// After an unmount: nothing of `volume` left on the host.
fn assert_fedora_released(volume: &str, root: &Path, img: &Path) {
    let left = mounts_under(&root.join(volume));
    assert!(left.is_empty(), "mounts of {volume} left: {left:?}");
    let loops = loops_of(img);
    assert!(
        loops.is_empty(),
        "loop devices of {} left: {loops:?}",
        img.display()
    );
    let list = gm_list();
    assert!(
        !list.to_string().contains(&format!("\"{volume}\"")),
        "{volume} still listed: {list}"
    );
    assert!(
        !root.join(volume).exists(),
        "{volume}: volume directory left"
    );
}

/// `sha256sum` of partition `n` of image file `img` (start and length from
/// `partx`).
fn image_part_digest(img: &Path, n: u32) -> String {
    let i = img.to_str().unwrap();
    let out = run(
        "partx",
        &["-g", "-n", &n.to_string(), "-o", "START,SECTORS", i],
    );
    let mut w = out.split_whitespace();
    let (start, sectors) = (w.next().unwrap(), w.next().unwrap());
    run(
        "sh",
        &[
            "-c",
            &format!("dd if='{i}' bs=512 skip={start} count={sectors} status=none | sha256sum"),
        ],
    )
    .split_whitespace()
    .next()
    .unwrap()
    .to_string()
}

/// `fsid` and `metadata_uuid` of the btrfs on `dev` (dump-super).
fn btrfs_fsids(dev: &str) -> (String, String) {
    let out = run("btrfs", &["inspect-internal", "dump-super", dev]);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(k)).then(|| w.next().unwrap_or_default().to_string())
            })
            .unwrap_or_else(|| panic!("no {k} in dump-super of {dev}: {out}"))
    };
    (field("fsid"), field("metadata_uuid"))
}

/// Whether this kernel gives a second btrfs with a mounted fsid a temporary
/// one (>= 6.7: `/sys/fs/btrfs/<fsid>/temp_fsid` exists for every mounted
/// btrfs).
fn kernel_has_temp_fsid(mounted_fsid: &str) -> bool {
    Path::new("/sys/fs/btrfs")
        .join(mounted_fsid)
        .join("temp_fsid")
        .exists()
}

/// Mounts clone `img` read-write as `volume` next to the mounted gold with
/// goldmount's defaults: on a kernel with temp-fsid the tree comes up with
/// a note; without it goldmount must refuse clearly (pointing at
/// btrfs_new_fsid) and leave nothing behind, the clone's btrfs unchanged
/// (its ESP and /boot may have been mounted read-write before the btrfs was
/// refused; what that changed is recorded).
fn fedora_next_to_gold(
    volume: &str,
    img: &Path,
    root: &Path,
    gold: &FedoraGold,
    ids: &FedoraIds,
    vols: &Volumes,
) {
    vols.add(volume);
    let before: Vec<String> = (1..=3).map(|n| image_part_digest(img, n)).collect();
    let t = Instant::now();
    let res = gm(&[
        "mount",
        "--volume",
        volume,
        "--json",
        "--timeout",
        "60",
        "--device",
        img.to_str().unwrap(),
    ]);
    eprintln!("[{volume}] mount took {:.1}s", t.elapsed().as_secs_f64());
    let top = root.join(volume);
    if kernel_has_temp_fsid(&ids.btrfs) {
        let m: serde_json::Value =
            serde_json::from_str(&res.unwrap_or_else(|e| panic!("[{volume}] {e}"))).unwrap();
        eprintln!("manifest {volume}: {m}");
        assert_fedora_tree(volume, &m, &top, ids);
        let notes = strs(&m, "notes");
        assert!(
            notes.iter().any(|n| n.contains("temporary fsid")),
            "[{volume}] no temp-fsid note: {notes:?}"
        );
        eprintln!("[{volume}] RESULT: the kernel gave the clone a temporary fsid; tree mounted");
        write_clone_only(volume, &top);
        gold.assert_untouched();
        gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
    } else {
        let err = match res {
            Ok(out) => panic!(
                "[{volume}] this kernel has no temp-fsid, yet the clone mounted next to its gold: {out}"
            ),
            Err(e) => e,
        };
        eprintln!("[{volume}] RESULT: refused next to the mounted gold: {err}");
        assert!(
            err.contains("btrfs_new_fsid") && err.contains("already mounted"),
            "[{volume}] the error does not say the fsid is mounted and what to do: {err}"
        );
        let after: Vec<String> = (1..=3).map(|n| image_part_digest(img, n)).collect();
        eprintln!(
            "[{volume}] RESULT: after the refused mount the clone's partitions changed: ESP {}, /boot {}, btrfs {}",
            before[0] != after[0],
            before[1] != after[1],
            before[2] != after[2]
        );
        assert_eq!(
            after[2], before[2],
            "[{volume}] the refused mount changed the clone's btrfs partition (no btrfstune without btrfs_new_fsid)"
        );
    }
    assert_fedora_released(volume, root, img);
    gold.assert_untouched();
}

/// `--btrfs-new-fsid` next to the mounted gold. On a kernel without
/// temp-fsid goldmount runs `btrfstune -m` on the clone (already for the
/// fstab search's staging mount) and the Fedora tree comes up; the
/// scenario checks the
/// clone really got its own fsid with the gold's as metadata_uuid, and
/// records what the same clone, mounted again (its fsid no longer
/// collides, but its fstab names the old one), comes up as.
fn fedora_new_fsid(
    volume: &str,
    img: &Path,
    root: &Path,
    gold: &FedoraGold,
    ids: &FedoraIds,
    vols: &Volumes,
) {
    vols.add(volume);
    let top = root.join(volume);
    let t = Instant::now();
    let m = gm_mount_with(
        volume,
        &["--device", img.to_str().unwrap(), "--btrfs-new-fsid"],
    );
    eprintln!("[{volume}] mount took {:.1}s", t.elapsed().as_secs_f64());
    let notes = strs(&m, "notes");
    if kernel_has_temp_fsid(&ids.btrfs) {
        assert_fedora_tree(volume, &m, &top, ids);
        eprintln!("[{volume}] RESULT: temp-fsid kernel: btrfstune not needed; tree mounted");
        write_clone_only(volume, &top);
    } else {
        assert!(
            notes.iter().any(|n| n.contains("btrfs fsid changed")),
            "[{volume}] no note of the fsid change: {notes:?}"
        );
        let b = m["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["fs_type"] == "btrfs")
            .unwrap_or_else(|| panic!("[{volume}] the btrfs was not mounted: {m}"));
        let src = b["source"].as_str().unwrap().to_string();
        let (fsid, meta) = btrfs_fsids(&src);
        eprintln!("[{volume}] clone btrfs after btrfstune -m: fsid {fsid} metadata_uuid {meta}");
        assert_ne!(fsid, ids.btrfs, "[{volume}] the clone kept the gold's fsid");
        assert_eq!(
            meta, ids.btrfs,
            "[{volume}] metadata_uuid is not the gold's fsid"
        );
        // The fstab search gets the new fsid too (it would be refused like
        // the plain mount otherwise), so the tree comes up.
        assert_eq!(m["layout"], "fstab", "[{volume}] not the fstab tree: {m}");
        eprintln!("[{volume}] RESULT: btrfstune -m, then the fstab tree");
        assert_fedora_tree(volume, &m, &top, ids);
        write_clone_only(volume, &top);
        gold.assert_untouched();
        gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
        assert_fedora_released(volume, root, img);
        // Mounted again with its own fsid now (nothing collides); its
        // fstab still names the gold's fsid, which the clone no longer
        // reports (blkid and goldmount read the superblock's fsid, not its
        // metadata_uuid). Recorded, with the first mount's writes.
        let t = Instant::now();
        let m = gm_mount_with(volume, &["--device", img.to_str().unwrap()]);
        eprintln!("[{volume}] remount took {:.1}s", t.elapsed().as_secs_f64());
        let b = m["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["fs_type"] == "btrfs")
            .unwrap_or_else(|| panic!("[{volume}] the btrfs was not remounted: {m}"));
        let at = PathBuf::from(b["mount_path"].as_str().unwrap());
        let root_dir = if m["layout"] == "fstab" {
            assert_fedora_tree(volume, &m, &top, ids);
            at
        } else {
            // The manifest must say why the fstab found in subvolume root
            // was not used.
            assert!(
                strs(&m, "notes")
                    .iter()
                    .any(|n| n.contains("does not resolve")),
                "[{volume}] flat without a word on the fstab: {m}"
            );
            at.join("root")
        };
        eprintln!(
            "[{volume}] RESULT: remounted with its new fsid: layout {}, notes {:?}",
            m["layout"],
            strs(&m, "notes")
        );
        assert_eq!(
            fs::read_to_string(root_dir.join("clone-only")).unwrap(),
            volume,
            "[{volume}] the first mount's write is not in the remounted clone"
        );
    }
    gold.assert_untouched();
    gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
    assert_fedora_released(volume, root, img);
    gold.assert_untouched();
}

/// The gold attached but not mounted: the clone's tree with defaults, a
/// write that stays in the clone (the gold image is byte-identical after).
fn fedora_gold_unmounted(
    volume: &str,
    img: &Path,
    root: &Path,
    gold: &FedoraGold,
    gold_img: &Path,
    ids: &FedoraIds,
    vols: &Volumes,
) {
    assert!(!gold.mounted());
    let gold_before = digest(gold_img);
    vols.add(volume);
    let top = root.join(volume);
    let t = Instant::now();
    let m = gm_mount_with(volume, &["--device", img.to_str().unwrap()]);
    eprintln!("[{volume}] mount took {:.1}s", t.elapsed().as_secs_f64());
    assert_fedora_tree(volume, &m, &top, ids);
    write_clone_only(volume, &top);
    run("sync", &[]);
    let t = Instant::now();
    gm(&["unmount", "--volume", volume]).unwrap_or_else(|e| panic!("unmount {volume}: {e}"));
    eprintln!("[{volume}] unmount took {:.1}s", t.elapsed().as_secs_f64());
    assert_fedora_released(volume, root, img);
    assert_eq!(
        digest(gold_img),
        gold_before,
        "[{volume}] the gold image changed"
    );
    gold.assert_untouched();
}

#[test]
#[ignore = "needs the lab kernel"]
fn fedora_btrfs_clone_mounts_subvolume_tree() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let vols = Volumes::new();
    let t = Instant::now();
    let (gold_img, ids, digests) = build_fedora_gold(&scratch);
    eprintln!(
        "gold built in {:.1}s: btrfs {} /boot {} ESP {}; kernel {}",
        t.elapsed().as_secs_f64(),
        ids.btrfs,
        ids.boot,
        ids.esp,
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    let c_next = clone_of(&gold_img, "f1");
    let c_fsid = clone_of(&gold_img, "f2");
    let c_alone = clone_of(&gold_img, "f3");

    // The gold running on this host: / and /home mounted from its
    // subvolumes, a file written after the clones were taken.
    let gdev = attach(&gold_img, 3);
    let gmnt = scratch.join("fedora-gold-root");
    fs::create_dir_all(&gmnt).unwrap();
    let gp3 = part(&gdev, 3);
    run(
        "mount",
        &[
            "-o",
            "subvol=root,compress=zstd:1",
            &gp3,
            gmnt.to_str().unwrap(),
        ],
    );
    run(
        "mount",
        &[
            "-o",
            "subvol=home,compress=zstd:1",
            &gp3,
            gmnt.join("home").to_str().unwrap(),
        ],
    );
    fs::write(gmnt.join("gold-after-clone"), "gold\n").unwrap();
    fs::write(gmnt.join("home/gold-after-clone"), "gold\n").unwrap();
    let gold = FedoraGold {
        dev: gdev.clone(),
        mnt: gmnt.clone(),
        digests,
    };
    eprintln!("kernel temp-fsid: {}", kernel_has_temp_fsid(&ids.btrfs));

    let mut failures = Vec::new();
    variant("next to the mounted gold", &mut failures, || {
        fedora_next_to_gold("f1", &c_next, &root, &gold, &ids, &vols)
    });
    variant(
        "--btrfs-new-fsid next to the mounted gold",
        &mut failures,
        || fedora_new_fsid("f2", &c_fsid, &root, &gold, &ids, &vols),
    );
    gold.assert_untouched();
    run("umount", &[gmnt.join("home").to_str().unwrap()]);
    run("umount", &[gmnt.to_str().unwrap()]);
    variant("gold unmounted", &mut failures, || {
        fedora_gold_unmounted("f3", &c_alone, &root, &gold, &gold_img, &ids, &vols)
    });
    drop(vols);

    // The gold still mounts as itself, with its own data only.
    run(
        "mount",
        &["-o", "subvol=root", &gp3, gmnt.to_str().unwrap()],
    );
    run(
        "mount",
        &[
            "-o",
            "subvol=home",
            &gp3,
            gmnt.join("home").to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(gmnt.join("gold-after-clone")).unwrap(),
        "gold\n"
    );
    gold.assert_untouched();
    run("umount", &[gmnt.join("home").to_str().unwrap()]);
    run("umount", &[gmnt.to_str().unwrap()]);
    run("losetup", &["-d", &gdev]);
    assert!(
        failures.is_empty(),
        "failed variants:\n{}",
        failures.join("\n")
    );
}
