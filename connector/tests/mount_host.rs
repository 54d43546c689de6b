//! `goldmount mount/unmount/list` on this machine's kernel: loop devices, no
//! device-mapper and no kernel partition parsing, so partitions go through
//! offset loop devices. Real mkfs-made disks; real mounts; real teardown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

use common::{gold_disk, loops_backed_by, mounts_under, tool, write_into, Env, MIB};

#[test]
fn fstab_tree_of_a_gold_and_two_clones_then_clean_teardown() {
    let env = Env::new();
    let gold = gold_disk(env.dir.path());
    let clones: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let c = env.dir.path().join(format!("clone{i}.img"));
            tool(
                "cp",
                &[
                    "--sparse=always",
                    gold.to_str().unwrap(),
                    c.to_str().unwrap(),
                ],
            );
            c
        })
        .collect();

    let m = env.mount_json(&gold, "gold", &[]);
    assert_eq!(m["layout"], "fstab");
    let vol = env.root().join("gold");
    assert_eq!(
        fs::read_to_string(vol.join("etc/hostname")).unwrap(),
        "gold-host\n"
    );
    assert_eq!(
        fs::read_to_string(vol.join("boot/vmlinuz")).unwrap(),
        "kernel image of the gold host\n"
    );
    assert_eq!(
        fs::read_to_string(vol.join("srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );
    let mounts = m["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 3);
    assert_eq!(mounts[0]["original_mountpoint"], "/");
    assert!(mounts.iter().all(|x| x["via_offset_loop"] == true), "{m}");
    let unresolved = m["unresolved"].as_array().unwrap();
    assert_eq!(unresolved.len(), 1, "{m}");
    assert!(unresolved[0]["reason"]
        .as_str()
        .unwrap()
        .contains("/dev/sdq1"));
    assert!(m["notes"].to_string().contains("offset loop devices"));

    // Two clones next to their gold: same XFS UUID, so they need nouuid.
    for (i, c) in clones.iter().enumerate() {
        let m = env.mount_json(c, &format!("clone{}", i + 1), &[]);
        let root = &m["mounts"][0];
        assert_eq!(root["fs_type"], "xfs");
        assert!(root["options"].as_str().unwrap().contains("nouuid"), "{m}");
    }
    // A write in one clone reaches neither the gold nor the other clone.
    fs::write(
        env.root().join("clone1/srv/data/records.csv"),
        b"changed in clone1\n",
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(env.root().join("gold/srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );
    assert_eq!(
        fs::read_to_string(env.root().join("clone2/srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );

    // Idempotent: the same request returns the same manifest.
    let again = env.mount_json(&gold, "gold", &[]);
    assert_eq!(again, env.mount_json(&gold, "gold", &[]));
    // A different device under the same name is refused.
    let o = env.gm(&[
        "mount",
        "--device",
        clones[0].to_str().unwrap(),
        "--volume",
        "gold",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already mounted"));

    let list = env.gm_ok(&["list", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    for v in ["gold", "clone1", "clone2"] {
        env.gm_ok(&["unmount", "--volume", v]);
    }
    assert_eq!(mounts_under(env.dir.path()), 0);
    for img in std::iter::once(&gold).chain(clones.iter()) {
        assert_eq!(
            loops_backed_by(img),
            0,
            "loop devices left for {}",
            img.display()
        );
    }
    assert!(!env.root().join("gold").exists());
    assert!(env.gm_ok(&["list"]).contains("no volumes"));
    // Unmounting again is a no-op, not an error.
    assert!(env
        .gm_ok(&["unmount", "--volume", "gold"])
        .contains("not mounted"));
}

#[test]
fn busy_volume_is_refused_with_the_holder_and_force_detaches() {
    let env = Env::new();
    let img = env.dir.path().join("flat.img");
    fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "scratch", img.to_str().unwrap()],
    );
    let m = env.mount_json(&img, "flat", &[]);
    assert_eq!(m["layout"], "flat");
    let target = env.root().join("flat/scratch");
    assert_eq!(m["mounts"][0]["mount_path"], target.to_str().unwrap());
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(&target)
        .spawn()
        .unwrap();
    let o = env.gm(&["unmount", "--volume", "flat"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", holder.id())) && err.contains("sleep"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"));
    assert_eq!(mounts_under(&env.root()), 1, "refusal must change nothing");
    // Forced: detached lazily, but the holder still writes through it, so
    // the volume keeps its record and its claim on the clone (a second
    // writer could otherwise mount the clone under it) and says so.
    let o = env.gm(&["unmount", "--volume", "flat", "--force"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("detached lazily but is still in use") && err.contains("claim"),
        "{err}"
    );
    assert_eq!(mounts_under(&env.root()), 0, "the busy mount is detached");
    assert_eq!(env.listed(), vec!["flat".to_string()], "the record stays");
    let second = env.mount_run(&img, "flat2", &[]);
    assert_eq!(
        second.code(),
        Some(3),
        "the clone is still claimed: {}",
        second.stderr
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.gm_ok(&["unmount", "--volume", "flat"]);
    assert!(env.listed().is_empty());
    assert_eq!(loops_backed_by(&img), 0);
}

#[test]
fn read_only_mount_writes_nothing() {
    let env = Env::new();
    let img = env.dir.path().join("ro.img");
    fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "ro", img.to_str().unwrap()],
    );
    let before = fs::read(&img).unwrap();
    let m = env.mount_json(&img, "ro", &["--read-only"]);
    assert!(m["mounts"][0]["options"]
        .as_str()
        .unwrap()
        .contains("ro,nosuid,nodev,noload"));
    assert!(fs::write(env.root().join("ro/ro/x"), b"x").is_err());
    env.gm_ok(&["unmount", "--volume", "ro"]);
    assert!(
        fs::read(&img).unwrap() == before,
        "a read-only mount changed the image"
    );
}

#[test]
fn ambivalent_and_unmountable_partitions_are_skipped_with_reasons() {
    let env = Env::new();
    let disk = env.dir.path().join("mixed.img");
    fs::File::create(&disk).unwrap().set_len(500 * MIB).unwrap();
    tool(
        "sgdisk",
        &[
            "-n1:2048:+64M",
            "-n2:0:+320M",
            "-n3:0:+32M",
            disk.to_str().unwrap(),
        ],
    );
    // p1: ext4 with a stale xfs superblock at its start -> ambivalent.
    let x = env.dir.path().join("x.fs");
    fs::File::create(&x).unwrap().set_len(320 * MIB).unwrap();
    tool("mkfs.xfs", &["-q", "-f", x.to_str().unwrap()]);
    let e = env.dir.path().join("e.fs");
    fs::File::create(&e).unwrap().set_len(64 * MIB).unwrap();
    tool("mkfs.ext4", &["-q", "-F", e.to_str().unwrap()]);
    let sb = fs::read(&x).unwrap()[..512].to_vec();
    fs::OpenOptions::new()
        .write(true)
        .open(&e)
        .unwrap()
        .write_all_at(&sb, 0)
        .unwrap();
    write_into(&disk, MIB, &e);
    // p2: a good xfs; p3: swap.
    write_into(&disk, 65 * MIB, &x);
    let s = env.dir.path().join("s.fs");
    fs::File::create(&s).unwrap().set_len(32 * MIB).unwrap();
    tool("mkswap", &["-q", s.to_str().unwrap()]);
    write_into(&disk, 385 * MIB, &s);

    let m = env.mount_json(&disk, "mixed", &[]);
    assert_eq!(m["mounts"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["mounts"][0]["partition"], 2);
    let skipped = m["skipped"].to_string();
    assert!(
        skipped.contains("ambivalent") && skipped.contains("partition 1"),
        "{skipped}"
    );
    assert!(skipped.contains("swap"), "{skipped}");
    env.gm_ok(&["unmount", "--volume", "mixed"]);
    assert_eq!(loops_backed_by(&disk), 0);
}

#[test]
fn nothing_mountable_is_an_error_and_leaves_nothing_behind() {
    let env = Env::new();
    let img = env.dir.path().join("empty.img");
    fs::File::create(&img).unwrap().set_len(16 * MIB).unwrap();
    let o = env.gm(&[
        "mount",
        "--device",
        img.to_str().unwrap(),
        "--volume",
        "empty",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing mountable"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(loops_backed_by(&img), 0);
    assert!(env.gm_ok(&["list"]).contains("no volumes"));
    let o = env.gm(&["mount", "--device", "/nonexistent", "--volume", "x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent not found"));
    let o = env.gm(&[
        "mount",
        "--device",
        img.to_str().unwrap(),
        "--volume",
        "../evil",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid volume name"));
}

#[test]
fn an_interrupted_mount_is_rolled_back_on_the_next_run() {
    use connector::state::{Action, Phase, StateStore, Step, VolumeRecord};
    let env = Env::new();
    let img = env.dir.path().join("crash.img");
    fs::File::create(&img).unwrap().set_len(16 * MIB).unwrap();
    // Simulate a crash right after `losetup` ran but before its result was recorded.
    let dev = tool(
        "losetup",
        &[
            "--find",
            "--show",
            "--offset",
            "1048576",
            "--sizelimit",
            "4194304",
            img.to_str().unwrap(),
        ],
    );
    let store = StateStore::open(&env.dir.path().join("state.redb")).unwrap();
    let mut rec = VolumeRecord::new("crashed", vec![img.clone()], false);
    rec.phase = Phase::Mounting;
    rec.steps.push(Step {
        action: Action::AttachLoop {
            backing: img.clone(),
            offset: 1048576,
            size: 4194304,
            read_only: false,
            tag: "goldmount:0123456789abcdef:1".into(),
            device: None,
            identity: None,
        },
        done: false,
    });
    store.put(&rec).unwrap();
    assert_eq!(loops_backed_by(&img), 1, "{dev}");
    // Any mount/unmount first rolls back interrupted volumes whose lock is
    // free — and the loop device over the same file that someone else made
    // (no goldmount tag) is never touched.
    env.gm_ok(&["unmount", "--volume", "other"]);
    assert_eq!(loops_backed_by(&img), 1);
    assert!(store.get("crashed").unwrap().is_none());
    tool("losetup", &["-d", dev.trim()]);
}

#[test]
fn one_volume_from_two_luns() {
    let env = Env::new();
    let a = env.dir.path().join("lun-a.img");
    let b = env.dir.path().join("lun-b.img");
    for (p, l) in [(&a, "alpha"), (&b, "beta")] {
        fs::File::create(p).unwrap().set_len(64 * MIB).unwrap();
        tool("mkfs.ext4", &["-q", "-F", "-L", l, p.to_str().unwrap()]);
    }
    let m = env.mount_json(&a, "pair", &["--device", b.to_str().unwrap()]);
    let paths: Vec<&str> = m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["mount_path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2, "{m}");
    assert!(
        paths[0].ends_with("/pair/alpha") && paths[1].ends_with("/pair/beta"),
        "{paths:?}"
    );
    assert_eq!(m["devices"].as_array().unwrap().len(), 2);
    // Either LUN alone now belongs to "pair".
    let o = env.gm(&[
        "mount",
        "--device",
        b.to_str().unwrap(),
        "--volume",
        "other",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a second claim on held data is a conflict"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("volume pair already holds"));
    env.gm_ok(&["unmount", "--volume", "pair"]);
    assert_eq!(loops_backed_by(&a) + loops_backed_by(&b), 0);
}

#[test]
fn btrfs_and_xfs_clones_mount_next_to_their_gold() {
    // This kernel (>= 6.7) mounts a btrfs whose fsid is already mounted as a
    // temp-fsid; XFS needs nouuid. Both without touching the clone's data.
    let env = Env::new();
    for (fs, mkfs, size) in [("btrfs", "mkfs.btrfs", 300u64), ("xfs", "mkfs.xfs", 320)] {
        let gold = env.dir.path().join(format!("{fs}-gold.img"));
        fs::File::create(&gold)
            .unwrap()
            .set_len(size * MIB)
            .unwrap();
        tool(mkfs, &["-q", "-f", "-L", fs, gold.to_str().unwrap()]);
        let clone = env.dir.path().join(format!("{fs}-clone.img"));
        tool(
            "cp",
            &[
                "--sparse=always",
                gold.to_str().unwrap(),
                clone.to_str().unwrap(),
            ],
        );
        let before = fs::read(&clone).unwrap();
        env.mount_json(&gold, &format!("{fs}-gold"), &[]);
        let m = env.mount_json(&clone, &format!("{fs}-clone"), &["--read-only"]);
        assert_eq!(m["mounts"].as_array().unwrap().len(), 1, "{m}");
        let opts = m["mounts"][0]["options"].as_str().unwrap().to_string();
        if fs == "xfs" {
            assert!(
                opts.contains("nouuid") && opts.contains("norecovery"),
                "{opts}"
            );
        }
        let gpath = env.root().join(format!("{fs}-gold/{fs}"));
        fs::write(gpath.join("only-in-gold"), b"x").unwrap();
        assert!(!env
            .root()
            .join(format!("{fs}-clone/{fs}/only-in-gold"))
            .exists());
        env.gm_ok(&["unmount", "--volume", &format!("{fs}-clone")]);
        env.gm_ok(&["unmount", "--volume", &format!("{fs}-gold")]);
        assert!(
            fs::read(&clone).unwrap() == before,
            "a read-only clone mount changed the {fs} clone"
        );
        // Nothing is left: btrfs shows an anonymous device number in
        // mountinfo, which undo must still recognise as its own mount.
        assert_eq!(
            mounts_under(&env.root()),
            0,
            "{fs}: mounts left after unmount"
        );
        assert_eq!(
            loops_backed_by(&gold) + loops_backed_by(&clone),
            0,
            "{fs}: loops left"
        );
        assert!(
            !env.root().join(format!("{fs}-gold")).exists(),
            "{fs}: volume dir left"
        );
    }
}

/// A LUN that never appears: `mount --wwid` gives up after `--timeout`
/// naming the WWID and what to check, mounts nothing, records nothing.
/// A bad `--multipath` value is refused before anything is waited for.
#[test]
fn a_lun_that_never_appears_is_a_clear_error() {
    let env = Env::new();
    let wwid = "naa.6001405000000000000000000000dead";
    for mp in ["auto", "require", "never"] {
        let o = env.gm(&[
            "mount",
            "--wwid",
            wwid,
            "--volume",
            "ghost",
            "--timeout",
            "1",
            "--multipath",
            mp,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{mp}: {err}");
        assert!(err.contains(wwid), "{mp}: {err}");
        assert!(err.contains("is the LUN presented"), "{mp}: {err}");
    }
    assert!(env.gm_ok(&["list"]).contains("no volumes"));
    assert!(!env.root().join("ghost").exists());
    let o = env.gm(&[
        "mount",
        "--wwid",
        wwid,
        "--volume",
        "ghost",
        "--multipath",
        "sometimes",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("auto") && err.contains("never"), "{err}");
}

#[test]
fn a_read_only_device_says_to_mount_read_only_and_then_mounts() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    let dev = tool(
        "losetup",
        &["--find", "--show", "--read-only", gold.to_str().unwrap()],
    );
    let dev = dev.trim().to_string();
    let r = env.run(&["mount", "--device", &dev, "--volume", "rodev"]);
    assert_ne!(r.code(), Some(0));
    assert!(r.stderr.contains("read-only"), "{}", r.stderr);
    assert_eq!(
        mounts_under(&env.root()),
        0,
        "a failed mount leaves nothing"
    );
    let m = env.mount_json(std::path::Path::new(&dev), "rodev", &["--read-only"]);
    assert_eq!(m["layout"], "fstab", "{m}");
    env.gm_ok(&["unmount", "--volume", "rodev"]);
    tool("losetup", &["-d", &dev]);
}

#[test]
fn a_damaged_primary_gpt_is_read_from_the_backup_and_said() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    // Zero the primary GPT header (LBA 1): the backup at the end is used.
    let f = fs::OpenOptions::new().write(true).open(&gold).unwrap();
    f.write_all_at(&[0u8; 512], 512).unwrap();
    drop(f);
    let m = env.mount_json(&gold, "backup", &[]);
    assert_eq!(m["layout"], "fstab", "{m}");
    assert!(m["notes"].to_string().contains("backup GPT"), "{m}");
    env.gm_ok(&["unmount", "--volume", "backup"]);
    assert_eq!(loops_backed_by(&gold), 0);
}

#[test]
fn a_record_that_cannot_be_undone_is_quarantined_and_blocks_nothing_else() {
    use connector::state::{Action, Phase, StateStore, Step, VolumeRecord};
    let env = Env::new();
    // An interrupted unmount whose last mount is busy (a process lives in it).
    let held = env.path().join("held");
    fs::create_dir(&held).unwrap();
    tool(
        "mount",
        &["-t", "tmpfs", "gm-quarantine", held.to_str().unwrap()],
    );
    let mut holder = Command::new("sleep")
        .arg("300")
        .current_dir(&held)
        .spawn()
        .unwrap();
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == held.to_str())
        .unwrap()
        .to_string();
    let f: Vec<&str> = line.split(' ').collect();
    let store = StateStore::open(&env.path().join("state.redb")).unwrap();
    let mut rec = VolumeRecord::new("stuck", vec![held.clone()], false);
    rec.phase = Phase::Unmounting;
    rec.steps.push(Step {
        action: Action::Mount {
            source: "gm-quarantine".into(),
            source_devno: f[2].to_string(),
            target: held.clone(),
            fstype: "tmpfs".into(),
            options: "rw".into(),
            mnt_id: Some(f[0].parse().unwrap()),
            mnt_unique: None,
        },
        done: true,
    });
    store.put(&rec).unwrap();

    // Another volume mounts; the stuck one is reported, not fatal.
    let gold = gold_disk(env.path());
    let r = env.run(&[
        "mount",
        "--device",
        gold.to_str().unwrap(),
        "--volume",
        "fine",
    ]);
    let r = r.ok();
    assert!(r.stderr.contains("stuck is quarantined"), "{}", r.stderr);
    let listed = env.gm_ok(&["list", "--json"]);
    assert!(listed.contains("\"quarantined\""), "{listed}");
    // `recover` says it could not, and changes nothing.
    assert_eq!(env.run(&["recover"]).code(), Some(1));
    assert_eq!(mounts_under(&held), 1);
    // Once the holder is gone, recovery finishes the unmount.
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.run(&["recover"]).ok();
    assert_eq!(mounts_under(&held), 0);
    assert!(store.get("stuck").unwrap().is_none());
    env.gm_ok(&["unmount", "--volume", "fine"]);
}

/// Per-mount options (mountinfo field 6) and super options (after ` - `)
/// of the mount at `target`.
fn mountinfo_options(target: &std::path::Path) -> (String, String) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.to_str().unwrap();
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(t))
        .map(|l| {
            let per_mount = l.split(' ').nth(5).unwrap().to_string();
            let sup = l.split(" - ").nth(1).unwrap().split(' ').nth(2).unwrap();
            (per_mount, sup.to_string())
        })
        .unwrap_or_else(|| panic!("nothing mounted at {t}:\n{text}"))
}

#[test]
fn an_esp_keeps_the_umask_of_its_fstab_line_and_harmful_options_are_dropped() {
    use common::golddisk::{Esp, ESP_FILE};
    use std::os::unix::fs::PermissionsExt;
    // vfat when this kernel has it; otherwise (this host's kernel has no
    // vfat) an NTFS partition through ntfs-3g, which takes the same umask.
    let has_vfat = fs::read_to_string("/proc/filesystems")
        .unwrap()
        .lines()
        .any(|l| l.trim_end().ends_with("\tvfat"));
    let kind = if has_vfat { Esp::Vfat } else { Esp::Ntfs };
    eprintln!("fstab options carried to a {kind:?} partition");
    let env = Env::new();
    let disk = common::golddisk::build_with_esp(env.dir.path(), "esp.img", kind).unwrap();
    let m = env.mount_json(&disk, "esp", &[]);
    assert_eq!(m["layout"], "fstab", "{m}");
    let vol = env.root().join("esp");
    let mounts = m["mounts"].as_array().unwrap();
    let at = |mp: &str| {
        mounts
            .iter()
            .find(|x| x["original_mountpoint"] == mp)
            .unwrap_or_else(|| panic!("no mount for {mp}: {m}"))
    };
    // The umask (and the names' view) carried, suid and systemd's option
    // dropped with their reasons.
    let esp = at(kind.mountpoint());
    assert_eq!(
        esp["fstab_options_kept"],
        serde_json::json!(kind.kept()),
        "{esp}"
    );
    let dropped = esp["fstab_options_dropped"].as_array().unwrap();
    let why = |o: &str| {
        dropped
            .iter()
            .find(|d| d["option"] == o)
            .unwrap_or_else(|| panic!("{o} not dropped: {esp}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(why("suid").contains("nosuid,nodev"));
    assert!(why("x-systemd.automount").contains("systemd"));
    assert!(esp["options"]
        .as_str()
        .unwrap()
        .starts_with("rw,nosuid,nodev"));
    // The kernel's view: nosuid,nodev kept, and the modes the umask gives
    // (without it: 0755 for vfat under root's umask, 0777 for ntfs-3g).
    let top = vol.join(kind.mountpoint().trim_start_matches('/'));
    let (per_mount, sup) = mountinfo_options(&top);
    assert!(
        per_mount.contains("nosuid") && per_mount.contains("nodev"),
        "{per_mount}"
    );
    if kind == Esp::Vfat {
        assert!(
            sup.contains("fmask=0077") && sup.contains("dmask=0077"),
            "{sup}"
        );
    }
    assert_eq!(
        fs::metadata(&top).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    let file = top.join(ESP_FILE.0);
    assert_eq!(fs::read_to_string(&file).unwrap(), ESP_FILE.1);
    let mode = fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // The data line: noatime (a per-mount flag) and errors=remount-ro kept,
    // dev dropped.
    let data = at("/srv/data");
    assert_eq!(
        data["fstab_options_kept"],
        serde_json::json!(["noatime", "errors=remount-ro"]),
        "{data}"
    );
    assert!(data["fstab_options_dropped"]
        .to_string()
        .contains("\"dev\""));
    let (per_mount, sup) = mountinfo_options(&vol.join("srv/data"));
    assert!(
        per_mount.contains("noatime") && per_mount.contains("nodev"),
        "{per_mount}"
    );
    assert!(sup.contains("errors=remount-ro"), "{sup}");
    // `defaults` lines carry nothing and say so.
    let root = at("/");
    assert_eq!(root["fstab_options_kept"], serde_json::json!([]));
    assert_eq!(root["fstab_options_dropped"][0]["option"], "defaults");
    env.gm_ok(&["unmount", "--volume", "esp"]);
    assert_eq!(mounts_under(env.dir.path()), 0);

    // Read-only: the same line still gives 0700, and the mount stays read-only.
    let m = env.mount_json(&disk, "esp-ro", &["--read-only"]);
    assert_eq!(m["layout"], "fstab", "{m}");
    let top = env
        .root()
        .join("esp-ro")
        .join(kind.mountpoint().trim_start_matches('/'));
    assert_eq!(
        fs::metadata(&top).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(mountinfo_options(&top).0.starts_with("ro,"));
    env.gm_ok(&["unmount", "--volume", "esp-ro"]);
}
