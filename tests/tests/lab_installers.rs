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
