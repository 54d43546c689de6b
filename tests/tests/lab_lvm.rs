//! Lab scenarios for issue 5 section 1 (the `lvm` crate) with real
//! device-mapper, udev and lvm2 2.03.16 inside the lab guest. The PVs are loop
//! devices over image files (clones are file copies): iSCSI adds nothing to
//! the LVM points tested here. Run with `cargo xtask lab lab_lvm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use goldmount_tests::lab::*;
use lvm::{read_pv, Lvm, LvmError};

/// A loop device over `file`, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn new(file: &Path) -> Loop {
        let dev = run("losetup", &["-f", "--show", file.to_str().unwrap()]);
        run("udevadm", &["settle"]);
        Loop(PathBuf::from(dev.trim()))
    }
    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Loop {
    /// Takes down what is stacked on the loop device first: the host's udev
    /// rules may have autoactivated a VG on it behind the test's back (a
    /// clone's loop device appearing makes `pvscan -aay` activate the gold's
    /// VG), and `losetup -d` of a held device only sets autoclear — the VG
    /// would outlive the scenario and break the next one's `vgcreate`.
    fn drop(&mut self) {
        let name = self.0.file_name().unwrap().to_string_lossy().into_owned();
        if let Ok(holders) = fs::read_dir(format!("/sys/block/{name}/holders")) {
            for h in holders.flatten() {
                if let Ok(dm) = fs::read_to_string(h.path().join("dm/name")) {
                    eprintln!("loop {name}: removing dm {} stacked on it", dm.trim());
                    let _ = try_run("dmsetup", &["remove", "--retry", dm.trim()], CMD_TIMEOUT);
                }
            }
        }
        let _ = try_run("losetup", &["-d", self.s()], CMD_TIMEOUT);
    }
}

fn lvmc(args: &[&str]) -> String {
    let mut v = vec![args[0]];
    v.extend_from_slice(&args[1..]);
    std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
    run("lvm", &v)
}

/// Gold image with VG `vg` {root, home} (ext4, a marker file in root) on one PV.
fn make_gold(scratch: &Path, vg: &str) -> (PathBuf, Loop) {
    let img = scratch.join(format!("{vg}.img"));
    fs::File::create(&img).unwrap().set_len(96 << 20).unwrap();
    let l = Loop::new(&img);
    lvmc(&["pvcreate", "-q", "--devices", l.s(), l.s()]);
    lvmc(&["vgcreate", "-q", "--devices", l.s(), vg, l.s()]);
    for lv in ["root", "home"] {
        lvmc(&[
            "lvcreate",
            "-q",
            "--devices",
            l.s(),
            "-y",
            "-L",
            "32M",
            "-n",
            lv,
            vg,
        ]);
        run(
            "mkfs.ext4",
            &["-q", "-F", &format!("/dev/mapper/{vg}-{lv}")],
        );
    }
    let mnt = scratch.join("mnt-gold");
    fs::create_dir_all(&mnt).unwrap();
    run(
        "mount",
        &[&format!("/dev/mapper/{vg}-root"), mnt.to_str().unwrap()],
    );
    fs::write(mnt.join("marker"), "gold root\n").unwrap();
    run("umount", &[mnt.to_str().unwrap()]);
    run("sync", &[]);
    (img, l)
}

/// `major:minor` of the dm devices whose slaves include `dev`.
fn dm_on(dev: &Path) -> Vec<String> {
    let d = lvm::dm::dev_of(dev).unwrap();
    lvm::dm::list_dm(Path::new("/sys/block"))
        .unwrap()
        .into_iter()
        .filter(|m| m.slaves.contains(&d))
        .map(|m| m.name)
        .collect()
}

fn host_vgs() -> BTreeSet<String> {
    let out = lvmc(&["vgs", "--noheadings", "-o", "vg_name,vg_uuid,vg_seqno"]);
    out.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn seqno(dev: &Path) -> u64 {
    read_pv(&fsdetect::FileSource::open(dev).unwrap())
        .unwrap()
        .metadata
        .unwrap()
        .seqno
}

/// The udev rule's autoactivation command (69-lvm.rules runs `pvscan --cache`
/// then `vgchange -aay --autoactivation event`), run directly so the outcome
/// does not depend on systemd-run in the guest.
/// What the host's udev does when a clone LUN appears: lvm2's records of
/// the gold are forgotten (a host that never had it), then the kernel's
/// change event for `dev` goes through the host's own rules (69-lvm.rules:
/// `pvscan --cache --checkcomplete`, then `vgchange -aay` straight from
/// udev where systemd is absent).
fn host_udev_sees(dev: &Loop) {
    forget_lvm_autoactivation_records();
    host_udev_event(&dev.0, "change");
}

/// Gold VG active on the host, guard installed; a clone appears and is NOT
/// autoactivated; import_clone renames it (vgimportclone on the clone's PV
/// only) and activates only it; host `vgs` and the gold's seqno are
/// unchanged; deactivate refuses while mounted (naming the mount) and works
/// after; removing the guard restores lvm.conf.
#[test]
#[ignore = "needs the lab kernel"]
fn lvm_guarded_clone_import_and_teardown() {
    let scratch = require_lab();
    let l = Lvm::default();
    let conf_before = fs::read_to_string("/etc/lvm/lvm.conf").ok();
    let (gold_img, gold) = make_gold(&scratch, "vg_gold");
    let st = l.install_autoactivation_guard(&[]).unwrap();
    assert!(st.installed, "{st:?}");
    assert!(st.problems.is_empty());
    let gold_seq = seqno(&gold.0);
    let vgs_before = host_vgs();

    let clone_img = scratch.join("clone1.img");
    fs::copy(&gold_img, &clone_img).unwrap();
    let clone = Loop::new(&clone_img);
    host_udev_sees(&clone);
    assert!(
        dm_on(&clone.0).is_empty(),
        "guarded clone was activated: {:?}",
        dm_on(&clone.0)
    );
    assert!(l.check_autoactivation_guard(&[]).unwrap().installed);

    let imp = l
        .import_clone(std::slice::from_ref(&clone.0), "c1")
        .unwrap();
    eprintln!("imported: {imp:?}");
    assert_eq!(imp.original_name, "vg_gold");
    assert_eq!(imp.name, "vg_gold_c1");
    assert!(imp.renamed && imp.undone_activation.is_empty());
    assert!(imp.lvs.iter().all(|lv| lv.active), "{:?}", imp.lvs);
    let root = imp.lvs.iter().find(|lv| lv.name == "root").unwrap();
    assert_eq!(root.dm_path, PathBuf::from("/dev/mapper/vg_gold_c1-root"));
    assert!(root.dm_path.exists() && root.path.exists());
    assert_eq!(dm_on(&clone.0).len(), 2);
    assert_eq!(host_vgs(), vgs_before, "host vgs changed");
    assert_eq!(seqno(&gold.0), gold_seq, "gold metadata changed");
    // The gold LVs are still the gold's.
    assert_eq!(dm_on(&gold.0).len(), 2);

    let mnt = scratch.join("mnt-c1");
    fs::create_dir_all(&mnt).unwrap();
    run(
        "mount",
        &[
            "-o",
            "ro",
            root.dm_path.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(mnt.join("marker")).unwrap(),
        "gold root\n"
    );
    let e = l
        .deactivate("vg_gold_c1", std::slice::from_ref(&clone.0))
        .unwrap_err();
    assert!(
        matches!(&e, LvmError::Busy { holder, .. } if holder.contains(mnt.to_str().unwrap())),
        "{e}"
    );
    run("umount", &[mnt.to_str().unwrap()]);
    l.deactivate("vg_gold_c1", std::slice::from_ref(&clone.0))
        .unwrap();
    assert!(dm_on(&clone.0).is_empty());
    assert_eq!(dm_on(&gold.0).len(), 2);
    assert_eq!(seqno(&gold.0), gold_seq);

    let st = l.remove_autoactivation_guard().unwrap();
    assert!(!st.use_devicesfile, "{st:?}");
    assert_eq!(fs::read_to_string("/etc/lvm/lvm.conf").ok(), conf_before);
    drop(clone);
    lvmc(&["vgchange", "-q", "--devices", gold.s(), "-an", "vg_gold"]);
}

/// A VG across two PVs (two "LUNs") imports when both are given; with one
/// given it is reported with the missing PV's UUID and nothing is activated.
/// A clone whose metadata text was zeroed gives a bad-crc error, nothing
/// activated.
#[test]
#[ignore = "needs the lab kernel"]
fn lvm_two_pv_clone_missing_pv_and_corrupt_metadata() {
    let scratch = require_lab();
    let l = Lvm::default();
    let (a_img, b_img) = (scratch.join("span-a.img"), scratch.join("span-b.img"));
    for i in [&a_img, &b_img] {
        fs::File::create(i).unwrap().set_len(64 << 20).unwrap();
    }
    let (a, b) = (Loop::new(&a_img), Loop::new(&b_img));
    let devs = format!("{},{}", a.s(), b.s());
    lvmc(&["pvcreate", "-q", "--devices", &devs, a.s(), b.s()]);
    lvmc(&[
        "vgcreate",
        "-q",
        "--devices",
        &devs,
        "vg_span",
        a.s(),
        b.s(),
    ]);
    lvmc(&[
        "lvcreate",
        "-q",
        "--devices",
        &devs,
        "-y",
        "-i",
        "2",
        "-L",
        "80M",
        "-n",
        "data",
        "vg_span",
    ]);
    lvmc(&["vgchange", "-q", "--devices", &devs, "-an", "vg_span"]);
    run("sync", &[]);
    let (ca_img, cb_img) = (scratch.join("cspan-a.img"), scratch.join("cspan-b.img"));
    fs::copy(&a_img, &ca_img).unwrap();
    fs::copy(&b_img, &cb_img).unwrap();
    let (ca, cb) = (Loop::new(&ca_img), Loop::new(&cb_img));

    let b_uuid = read_pv(&fsdetect::FileSource::open(&cb.0).unwrap())
        .unwrap()
        .uuid()
        .to_string();
    let e = l
        .import_clone(std::slice::from_ref(&ca.0), "s1")
        .unwrap_err();
    assert!(
        matches!(&e, LvmError::MissingPvs { missing, .. } if missing == &vec![b_uuid.clone()]),
        "{e}"
    );
    assert!(dm_on(&ca.0).is_empty());

    let imp = l.import_clone(&[ca.0.clone(), cb.0.clone()], "s1").unwrap();
    assert_eq!(imp.name, "vg_span_s1");
    assert!(imp.lvs[0].active && imp.lvs[0].dm_path.exists());
    assert_eq!(dm_on(&ca.0), dm_on(&cb.0));
    l.deactivate("vg_span_s1", &[ca.0.clone(), cb.0.clone()])
        .unwrap();
    assert!(dm_on(&ca.0).is_empty());

    // Corrupt: zero the text area of the (only) metadata area of a clone.
    let (gold_img, gold) = make_gold(&scratch, "vg_crpt");
    lvmc(&["vgchange", "-q", "--devices", gold.s(), "-an", "vg_crpt"]);
    let pv = read_pv(&fsdetect::FileSource::open(&gold.0).unwrap()).unwrap();
    let bad_img = scratch.join("corrupt.img");
    fs::copy(&gold_img, &bad_img).unwrap();
    let mda = pv.label.metadata_areas[0];
    let f = fs::OpenOptions::new().write(true).open(&bad_img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &f,
        &vec![0u8; (mda.size - 512) as usize],
        mda.offset + 512,
    )
    .unwrap();
    drop(f);
    let bad = Loop::new(&bad_img);
    let e = l
        .import_clone(std::slice::from_ref(&bad.0), "x1")
        .unwrap_err();
    eprintln!("corrupt clone: {e}");
    assert!(
        matches!(
            e,
            LvmError::BadCrc {
                what: "metadata text",
                ..
            }
        ),
        "{e}"
    );
    assert!(dm_on(&bad.0).is_empty());
    assert!(!Path::new("/dev/vg_crpt_x1").exists());
}

/// Guard off: the host's own udev rules autoactivate the clone under the
/// gold VG's name when its change event arrives (the trap seen in the lab). import_clone refuses while
/// that accidental LV is mounted (naming the mount), then, once unmounted,
/// removes exactly those dm devices and imports under a unique name; the
/// gold's metadata is unchanged.
#[test]
#[ignore = "needs the lab kernel"]
fn lvm_accidental_activation_is_undone_before_import() {
    let scratch = require_lab();
    let l = Lvm::default();
    assert!(!l.check_autoactivation_guard(&[]).unwrap().use_devicesfile);
    let (gold_img, gold) = make_gold(&scratch, "vg_acc");
    // The gold copy's host no longer has it active (e.g. a backup host).
    lvmc(&["vgchange", "-q", "--devices", gold.s(), "-an", "vg_acc"]);
    let gold_seq = seqno(&gold.0);
    let clone_img = scratch.join("acc-clone.img");
    fs::copy(&gold_img, &clone_img).unwrap();
    let clone = Loop::new(&clone_img);
    // Only the clone is attached now, as on a fresh host.
    drop(gold);
    // The real trap: the host's own udev rules activate the clone (lvm2's
    // records of the gold, made when it was built here, are forgotten first:
    // with them pvscan would take the clone for a duplicate and skip it).
    host_udev_sees(&clone);
    let accidental = dm_on(&clone.0);
    assert!(
        accidental.iter().any(|n| n.starts_with("vg_acc-")),
        "expected the unguarded clone to be autoactivated under the gold name, got {accidental:?}"
    );

    let mnt = scratch.join("mnt-acc");
    fs::create_dir_all(&mnt).unwrap();
    run(
        "mount",
        &["-o", "ro", "/dev/mapper/vg_acc-root", mnt.to_str().unwrap()],
    );
    let e = l
        .import_clone(std::slice::from_ref(&clone.0), "r1")
        .unwrap_err();
    assert!(
        matches!(&e, LvmError::Busy { holder, .. } if holder.contains(mnt.to_str().unwrap())),
        "{e}"
    );
    run("umount", &[mnt.to_str().unwrap()]);

    let imp = l
        .import_clone(std::slice::from_ref(&clone.0), "r1")
        .unwrap();
    eprintln!("imported: {imp:?}");
    let mut undone = imp.undone_activation.clone();
    undone.sort();
    assert_eq!(
        undone,
        vec!["vg_acc-home".to_string(), "vg_acc-root".to_string()]
    );
    assert_eq!(imp.name, "vg_acc_r1");
    assert!(imp.lvs.iter().all(|lv| lv.active));
    assert!(!Path::new("/dev/mapper/vg_acc-root").exists());
    l.deactivate("vg_acc_r1", std::slice::from_ref(&clone.0))
        .unwrap();
    let gold = Loop::new(&gold_img);
    assert_eq!(seqno(&gold.0), gold_seq);
}
