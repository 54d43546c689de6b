//! A clone's content is untrusted: nothing in it can make goldmount mount,
//! create or read anything outside the volume, run a setuid program or open
//! a device node, hang it or exhaust its memory; broken or contradictory
//! metadata is reported, not obeyed; and a filesystem the kernel refuses
//! fails the mount unless its fstab entry says `nofail`.
//!
//! Fixtures are made without mounting: `mkfs.ext4 -d` copies a prepared
//! directory (symlinks, FIFOs, device nodes, setuid bits) into the clone's
//! filesystems, partition tables are written byte by byte.
//!
//! Written against the engine's contract; they fail on the engine before
//! the rewrite, which joins fstab mount points and symlinks as strings,
//! mounts without nosuid/nodev and reads /etc/fstab without caps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::hostile::{self, uuid};
use common::{
    gold_disk, loops_backed_by, mount_lines_under, mounts, mounts_under, tool, Env, Run, MIB,
};

/// `UUID=… MOUNTPOINT ext4 OPTIONS 0 2`.
fn line(n: u32, mountpoint: &str, options: &str) -> String {
    format!("UUID={} {mountpoint} ext4 {options} 0 2\n", uuid(n))
}

/// A partitioned clone: an ext4 root (UUID `uuid(1)`) made from `root`
/// with `fstab` as its /etc/fstab (unless `fstab` is None: the tree has its
/// own), and one 16 MiB ext4 per entry of `data` (UUID `uuid(2)`,
/// `uuid(3)`…), each holding a file `whoami` with its label. `bad` data
/// filesystems carry an incompat feature bit the kernel does not know. The
/// root is partition `root_at + 1`, the data filesystems fill the others
/// in order.
struct CloneDisk<'a> {
    root: &'a Path,
    fstab: Option<&'a [u8]>,
    data: &'a [(&'a str, bool)],
    root_at: usize,
}

impl CloneDisk<'_> {
    fn build(&self, env: &Env, name: &str) -> PathBuf {
        let dir = env.path().join(format!("{name}.parts"));
        fs::create_dir_all(&dir).unwrap();
        if let Some(text) = self.fstab {
            fs::write(self.root.join("etc/fstab"), text).unwrap();
        }
        let root_img = dir.join("root.fs");
        hostile::ext4(&root_img, 32, "root", &uuid(1), Some(self.root), &[]);
        let mut images = Vec::new();
        for (i, (label, bad)) in self.data.iter().enumerate() {
            let t = hostile::tree(&dir, &format!("{label}.tree"));
            fs::write(t.join("whoami"), label).unwrap();
            let img = dir.join(format!("{label}.fs"));
            let n = u32::try_from(i).unwrap() + 2;
            hostile::ext4(
                &img,
                16,
                label,
                &uuid(n),
                Some(&t),
                &["-O", "^metadata_csum"],
            );
            if *bad {
                hostile::ext4_set_incompat(&img, 0x8000_0000);
            }
            images.push(img);
        }
        images.insert(self.root_at, root_img);
        let mut parts = Vec::new();
        let mut at = 1;
        for img in &images {
            parts.push((at, img.as_path()));
            at += fs::metadata(img).unwrap().len() / MIB;
        }
        hostile::mbr_disk(&env.path().join(name), at + 1, &parts)
    }
}

/// Every file and directory under `dir`, except the goldmount volumes
/// root and run dir (what a test may see change outside the volume).
fn listing(env: &Env) -> BTreeSet<PathBuf> {
    fn walk(d: &Path, skip: &[PathBuf], out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if skip.contains(&p) || p.to_string_lossy().contains("state.redb") {
                continue;
            }
            out.insert(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, skip, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(env.path(), &[env.root(), env.run_dir()], &mut out);
    out
}

/// The mount paths the manifest lists.
fn mount_paths(m: &serde_json::Value) -> Vec<PathBuf> {
    m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| PathBuf::from(x["mount_path"].as_str().unwrap()))
        .collect()
}

/// Unmounts `volume` and checks nothing of it is left.
fn unmount_clean(env: &Env, volume: &str, disk: &Path) {
    env.gm_ok(&["unmount", "--volume", volume]);
    assert_eq!(mounts_under(env.path()), 0, "mounts left after unmount");
    assert_eq!(loops_backed_by(disk), 0, "loop devices left after unmount");
}

/// Asserts the kernel mounted nothing outside `vol` under the test dir, and
/// that every mount the manifest lists is under `vol` and really there.
fn assert_confined(env: &Env, vol: &Path, m: &serde_json::Value) {
    // Filesystems the fstab does not (usably) name are the volume's too,
    // beside its tree under goldmount's own names.
    let unplaced = PathBuf::from(format!("{}@unplaced", vol.display()));
    let outside: Vec<String> = mount_lines_under(env.path())
        .into_iter()
        .filter(|l| !l.target.starts_with(vol) && !l.target.starts_with(&unplaced))
        .map(|l| l.target.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "mounted outside the volume {}: {outside:?}",
        vol.display()
    );
    let real: Vec<PathBuf> = mount_lines_under(vol)
        .into_iter()
        .chain(mount_lines_under(&unplaced))
        .map(|l| l.target)
        .collect();
    for p in mount_paths(m) {
        assert!(
            p.starts_with(vol) || p.starts_with(&unplaced),
            "manifest mount_path {} is outside the volume",
            p.display()
        );
        assert!(
            real.contains(&p),
            "manifest mount_path {} is not a mount point",
            p.display()
        );
    }
}

#[test]
fn fstab_mount_points_with_dotdot_stay_inside_the_volume() {
    let env = Env::new();
    let victim = env.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let escape = format!("/../../../../../../../..{}", victim.display());
    let mut fstab = line(1, "/", "defaults");
    fstab += &line(2, "/srv", "defaults");
    fstab += &line(3, &escape, "defaults");
    fstab += &line(4, "/..", "defaults");
    let root = hostile::tree(env.path(), "root.tree");
    fs::create_dir(root.join("srv")).unwrap();
    let disk = CloneDisk {
        root: &root,
        fstab: Some(fstab.as_bytes()),
        data: &[("srv", false), ("escape", false), ("parent", false)],
        root_at: 0,
    }
    .build(&env, "dotdot.img");
    let before = listing(&env);
    let r = env.mount_run(&disk, "dotdot", &[]);
    let vol = env.root().join("dotdot");
    assert!(
        !mounts().iter().any(|l| l.target == victim),
        "the clone's fstab mounted a filesystem on {} (exit {:?}): {}",
        victim.display(),
        r.code(),
        r.stderr
    );
    let m = r.ok().json();
    assert_confined(&env, &vol, &m);
    assert_eq!(listing(&env), before, "entries appeared outside the volume");
    assert_eq!(
        fs::read_to_string(vol.join("srv/whoami")).unwrap(),
        "srv",
        "the rest of the tree mounts: {m}"
    );
    // The filesystems of the refused lines still get a path, beside the
    // tree under goldmount's own names.
    let unplaced = env.root().join("dotdot@unplaced");
    let beside: Vec<String> = fs::read_dir(&unplaced)
        .unwrap()
        .map(|e| {
            let d = e.unwrap().path();
            fs::read_to_string(d.join("whoami")).unwrap()
        })
        .collect();
    assert_eq!(beside.len(), 2, "{m}");
    assert!(
        beside.contains(&"escape".to_string()) && beside.contains(&"parent".to_string()),
        "{beside:?} {m}"
    );
    assert!(m["notes"].to_string().contains("@unplaced"), "{m}");
    for mp in [escape.as_str(), "/.."] {
        let u = m["unresolved"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["mountpoint"] == mp)
            .unwrap_or_else(|| panic!("no unresolved entry for {mp}: {m}"));
        assert!(
            u["reason"].as_str().unwrap().contains("outside the volume"),
            "{mp}: {u}"
        );
    }
    unmount_clean(&env, "dotdot", &disk);
    assert!(!unplaced.exists(), "the unplaced directory is left");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
}

/// A clone whose root has `data` as a symlink `target` and an fstab line
/// mounting a filesystem on `/data`: the host directory the link names gets
/// no mount and no entries, and nothing is created outside the volume. The
/// link is followed as on the original host, inside the clone: when its
/// target exists in the clone (`in_clone`), the filesystem is mounted there,
/// inside the volume; otherwise the mount point is refused and listed with
/// the reason, and the rest of the tree mounts.
fn symlinked_mount_point_stays_inside(link: &dyn Fn(&Path) -> String, in_clone: bool) {
    let env = Env::new();
    let hostdir = env.path().join("hostdir");
    fs::create_dir(&hostdir).unwrap();
    fs::write(hostdir.join("host-file"), "host\n").unwrap();
    let root = hostile::tree(env.path(), "root.tree");
    std::os::unix::fs::symlink(link(&hostdir), root.join("data")).unwrap();
    if in_clone {
        fs::create_dir_all(root.join(hostdir.strip_prefix("/").unwrap())).unwrap();
    }
    let fstab = line(1, "/", "defaults") + &line(2, "/data", "defaults");
    let disk = CloneDisk {
        root: &root,
        fstab: Some(fstab.as_bytes()),
        data: &[("data", false)],
        root_at: 0,
    }
    .build(&env, "link.img");
    let before = listing(&env);
    let r = env.mount_run(&disk, "link", &[]);
    let vol = env.root().join("link");
    assert!(
        !mounts().iter().any(|l| l.target.starts_with(&hostdir)),
        "the clone's symlink made goldmount mount on the host's {} (exit {:?}): {}",
        hostdir.display(),
        r.code(),
        r.stderr
    );
    assert_eq!(listing(&env), before, "entries appeared outside the volume");
    let m = r.ok().json();
    assert_confined(&env, &vol, &m);
    let data = m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["original_mountpoint"] == "/data");
    if in_clone {
        let data = data.unwrap_or_else(|| panic!("/data is not mounted: {m}"));
        let at = PathBuf::from(data["mount_path"].as_str().unwrap());
        assert_eq!(at, vol.join(hostdir.strip_prefix("/").unwrap()), "{m}");
        assert_eq!(fs::read_to_string(at.join("whoami")).unwrap(), "data");
        assert!(m["notes"].to_string().contains("symbolic link"), "{m}");
    } else {
        assert!(data.is_none(), "{m}");
        let refused = m["unresolved"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["mountpoint"] == "/data")
            .unwrap_or_else(|| panic!("/data is neither mounted nor listed: {m}"));
        assert!(
            refused["reason"].as_str().unwrap().contains("symlink"),
            "{m}"
        );
        assert_eq!(m["mounts"].as_array().unwrap().len(), 1, "{m}");
    }
    unmount_clean(&env, "link", &disk);
    assert_eq!(listing(&env), before, "entries left outside the volume");
}

#[test]
fn an_absolute_symlink_in_the_clone_does_not_lead_out() {
    symlinked_mount_point_stays_inside(&|host| host.display().to_string(), false);
}

#[test]
fn a_relative_symlink_in_the_clone_does_not_lead_out() {
    symlinked_mount_point_stays_inside(
        &|host| format!("{}{}", "../".repeat(24), host.display()),
        false,
    );
}

#[test]
fn a_symlinked_mount_point_is_followed_inside_the_clone() {
    symlinked_mount_point_stays_inside(&|host| host.display().to_string(), true);
    symlinked_mount_point_stays_inside(
        &|host| format!("{}{}", "../".repeat(24), host.display()),
        true,
    );
}

#[test]
fn clone_mounts_are_nosuid_and_nodev() {
    let env = Env::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = hostile::tree(env.path(), "root.tree");
    fs::create_dir(root.join("bin")).unwrap();
    fs::set_permissions(root.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
    let id = root.join("bin/suid-id");
    fs::copy("/usr/bin/id", &id).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o4755)).unwrap();
    // A world-readable node of a loop device of this test.
    let tiny = env.path().join("tiny.img");
    common::sparse_file(&tiny, MIB);
    let dev = tool("losetup", &["-f", "--show", tiny.to_str().unwrap()]);
    let rdev = fs::metadata(dev.trim()).unwrap().rdev();
    let (major, minor) = (libc_major(rdev), libc_minor(rdev));
    tool(
        "mknod",
        &[
            "-m",
            "0666",
            root.join("blk").to_str().unwrap(),
            "b",
            &major.to_string(),
            &minor.to_string(),
        ],
    );
    let fstab = line(1, "/", "defaults") + &line(2, "/srv", "defaults");
    fs::create_dir(root.join("srv")).unwrap();
    let disk = CloneDisk {
        root: &root,
        fstab: Some(fstab.as_bytes()),
        data: &[("srv", false)],
        root_at: 0,
    }
    .build(&env, "suid.img");
    let m = env.mount_json(&disk, "suid", &[]);
    let vol = env.root().join("suid");
    let mut failures = Vec::new();
    let lines = mount_lines_under(&vol);
    if lines.len() != 2 {
        failures.push(format!(
            "expected 2 mounts under the volume, found {lines:?}"
        ));
    }
    for l in &lines {
        let o: Vec<&str> = l.mount_options.split(',').collect();
        if !(o.contains(&"nosuid") && o.contains(&"nodev")) {
            failures.push(format!(
                "{} is mounted with {} (no nosuid/nodev)",
                l.target.display(),
                l.mount_options
            ));
        }
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(vol.join("bin/suid-id"))
        .arg("-u")
        .output()
        .unwrap();
    let euid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if euid != "65534" {
        failures.push(format!(
            "the clone's setuid-root id run as nobody printed {euid:?} (stderr {:?})",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    match fs::File::open(vol.join("blk")) {
        Err(e) if e.raw_os_error() == Some(13) => {}
        other => failures.push(format!(
            "the clone's 0666 node of {} opened with {other:?}, expected EACCES",
            dev.trim()
        )),
    }
    assert!(failures.is_empty(), "{failures:#?}\nmanifest: {m}");
    unmount_clean(&env, "suid", &disk);
}

fn libc_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn libc_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

/// Makes `/etc/fstab` in a tree's etc/ dir.
type MakeFstab<'a> = Box<dyn Fn(&Path) + 'a>;

/// Mounts a whole-device ext4 clone whose /etc/fstab is made by `make`
/// (given the tree's etc/ dir) with a 20 s limit; returns the run.
fn mount_with_fstab(env: &Env, make: &dyn Fn(&Path)) -> (Run, PathBuf) {
    let root = hostile::tree(env.path(), "root.tree");
    make(&root.join("etc"));
    let img = env.path().join("fstab.img");
    hostile::ext4(&img, 32, "root", &uuid(1), Some(&root), &[]);
    let r = env.run_with(
        &[
            "mount",
            "--device",
            img.to_str().unwrap(),
            "--volume",
            "v",
            "--json",
        ],
        &[],
        Duration::from_secs(20),
    );
    (r, img)
}

#[test]
fn a_hostile_etc_fstab_falls_back_to_the_flat_layout() {
    let outer = Env::new();
    let host_file = outer.path().join("host-fstab");
    fs::write(&host_file, line(1, "/", "defaults")).unwrap();
    let big = {
        let mut s = line(1, "/", "defaults");
        while s.len() <= (3 * MIB / 2) as usize {
            s += "# padding padding padding padding padding padding padding padding\n";
        }
        s
    };
    let variants: Vec<(&str, MakeFstab)> = vec![
        (
            "a symlink to /dev/zero",
            Box::new(|etc: &Path| {
                std::os::unix::fs::symlink("/dev/zero", etc.join("fstab")).unwrap()
            }),
        ),
        (
            "a FIFO",
            Box::new(|etc: &Path| {
                tool("mkfifo", &[etc.join("fstab").to_str().unwrap()]);
            }),
        ),
        (
            "a symlink to a host file",
            Box::new(|etc: &Path| {
                std::os::unix::fs::symlink(&host_file, etc.join("fstab")).unwrap()
            }),
        ),
        (
            "a regular file of 1.5 MiB",
            Box::new(|etc: &Path| fs::write(etc.join("fstab"), &big).unwrap()),
        ),
    ];
    let mut failures = Vec::new();
    for (what, make) in &variants {
        let env = Env::new();
        let (r, img) = mount_with_fstab(&env, make.as_ref());
        if !r.status.success() {
            failures.push(format!(
                "/etc/fstab as {what}: exit {:?}, signal {:?}, {:.1} s: {}",
                r.code(),
                r.signal(),
                r.took.as_secs_f64(),
                r.stderr.trim()
            ));
            continue;
        }
        let m = r.json();
        if m["layout"] != "flat" {
            failures.push(format!("/etc/fstab as {what}: layout {}", m["layout"]));
        }
        if !m["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("/etc/fstab"))
        {
            failures.push(format!(
                "/etc/fstab as {what}: no note names /etc/fstab: {}",
                m["notes"]
            ));
        }
        unmount_clean(&env, "v", &img);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn fstab_defects_are_noted_not_fatal() {
    let env = Env::new();
    let root = hostile::tree(env.path(), "utf8.tree");
    fs::create_dir(root.join("srv")).unwrap();
    let mut fstab = b"# clone fstab\n".to_vec();
    fstab.extend(line(1, "/", "defaults").as_bytes());
    fstab.extend(b"/dev/sdz9 /opt ext4 defaults \xff\xfe 0 0\n");
    fstab.extend(line(2, "/srv", "defaults").as_bytes());
    let disk = CloneDisk {
        root: &root,
        fstab: Some(&fstab),
        data: &[("srv", false)],
        root_at: 0,
    }
    .build(&env, "utf8.img");
    let m = env.mount_json(&disk, "utf8", &[]);
    assert_eq!(
        m["layout"], "fstab",
        "one bad byte on line 3 must not drop the fstab: {m}"
    );
    assert!(m["notes"].to_string().contains("line 3"), "{m}");
    assert_eq!(
        fs::read_to_string(env.root().join("utf8/srv/whoami")).unwrap(),
        "srv"
    );
    unmount_clean(&env, "utf8", &disk);

    let root = hostile::tree(env.path(), "two.tree");
    let fstab = line(1, "/", "defaults") + &line(2, "/", "defaults");
    let disk = CloneDisk {
        root: &root,
        fstab: Some(fstab.as_bytes()),
        data: &[("second", false)],
        root_at: 0,
    }
    .build(&env, "two.img");
    let m = env.mount_json(&disk, "two", &[]);
    assert!(
        m["notes"].to_string().contains("more than one"),
        "two / entries must be noted: {m}"
    );
    unmount_clean(&env, "two", &disk);
}

#[test]
fn overlapping_partitions_are_never_mounted() {
    let env = Env::new();
    let x = env.path().join("x.fs");
    hostile::xfs(&x, 300, "shared", &uuid(9));
    let e = env.path().join("e.fs");
    hostile::ext4(&e, 32, "other", &uuid(8), None, &[]);
    let sectors = |mib: u64| mib * MIB / 512;
    // p1 and p2 both cover the one XFS; p3 is a separate ext4.
    let disk = env.path().join("overlap.img");
    common::sparse_file(&disk, 400 * MIB);
    common::write_into(&disk, MIB, &x);
    common::write_into(&disk, 340 * MIB, &e);
    hostile::write_mbr(
        &disk,
        &[
            (sectors(1), sectors(300), hostile::LINUX),
            (sectors(1), sectors(310), hostile::LINUX),
            (sectors(340), sectors(32), hostile::LINUX),
        ],
    );
    let r = env.mount_run(&disk, "overlap", &[]);
    let xfs_mounts: Vec<_> = mount_lines_under(env.path())
        .into_iter()
        .filter(|l| l.fstype == "xfs")
        .collect();
    assert!(
        xfs_mounts.is_empty(),
        "an XFS covered by two overlapping partitions was mounted: {xfs_mounts:?} (exit {:?}): {}",
        r.code(),
        r.stderr
    );
    let m = r.ok().json();
    let skipped = m["skipped"].as_array().unwrap();
    for p in [1, 2] {
        assert!(
            skipped.iter().any(|s| {
                let t = s.to_string();
                t.contains(&format!("partition {p}"))
                    && s["reason"].as_str().unwrap().contains("overlaps")
            }),
            "partition {p} is not skipped for overlapping: {m}"
        );
    }
    assert_eq!(m["mounts"].as_array().unwrap().len(), 1, "{m}");
    unmount_clean(&env, "overlap", &disk);

    // Nothing else on the disk: the mount fails and leaves nothing.
    hostile::write_mbr(
        &disk,
        &[
            (sectors(1), sectors(300), hostile::LINUX),
            (sectors(1), sectors(310), hostile::LINUX),
        ],
    );
    let r = env.mount_run(&disk, "overlap", &[]);
    assert!(
        matches!(r.code(), Some(1 | 2)),
        "only overlapping partitions: expected exit 1 or 2, got {:?}: {}",
        r.code(),
        r.stderr
    );
    assert!(r.stderr.contains("overlaps"), "{}", r.stderr);
    assert_eq!(mounts_under(env.path()), 0);
    assert_eq!(loops_backed_by(&disk), 0);
    assert!(!env.root().join("overlap").exists());
}

#[test]
fn a_truncated_disk_fails_with_the_probe_s_explanation() {
    let env = Env::new();
    let disk = gold_disk(env.path());
    fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(40 * MIB)
        .unwrap();
    let probe = env.run(&["probe", disk.to_str().unwrap()]);
    let phrase = "do not fit the disk";
    assert!(
        probe.stdout.contains(phrase),
        "goldmount probe no longer says {phrase:?} of a truncated disk: {}",
        probe.stdout
    );
    let r = env.mount_run(&disk, "cut", &[]);
    assert!(
        !r.status.success(),
        "a truncated disk mounted: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains(phrase),
        "the mount error must carry the probe's explanation ({phrase:?}): {}",
        r.stderr
    );
    assert_eq!(mounts_under(env.path()), 0);
    assert_eq!(loops_backed_by(&disk), 0);
}

/// The nofail fixture: p1 an ext4 the kernel refuses (unknown incompat
/// bit), p2 the root whose fstab mounts p1 on /srv/bad with `options` and
/// a good ext4 on /srv/good.
fn refused_fs_disk(env: &Env, options: &str) -> PathBuf {
    let root = hostile::tree(env.path(), &format!("root-{}.tree", options.len()));
    fs::create_dir_all(root.join("srv/bad")).unwrap();
    fs::create_dir_all(root.join("srv/good")).unwrap();
    let fstab = line(1, "/", "defaults")
        + &line(2, "/srv/bad", options)
        + &line(3, "/srv/good", "defaults");
    CloneDisk {
        root: &root,
        fstab: Some(fstab.as_bytes()),
        data: &[("bad", true), ("good", false)],
        // The refused filesystem is partition 1, before the root.
        root_at: 1,
    }
    .build(env, &format!("refused-{}.img", options.len()))
}

#[test]
fn a_nofail_entry_the_kernel_refuses_is_skipped() {
    let env = Env::new();
    let disk = refused_fs_disk(&env, "defaults,nofail");
    let m = env.mount_json(&disk, "nofail", &[]);
    let bad = uuid(2);
    assert!(
        m["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.to_string().contains("/srv/bad")
                || s.to_string().contains(&bad)
                || s.to_string().contains("partition 1")),
        "the refused nofail filesystem is not in skipped: {m}"
    );
    assert_eq!(
        fs::read_to_string(env.root().join("nofail/srv/good/whoami")).unwrap(),
        "good"
    );
    assert!(
        !mount_paths(&m).iter().any(|p| p.ends_with("srv/bad")),
        "{m}"
    );
    unmount_clean(&env, "nofail", &disk);

    // The same without nofail: the mount fails naming the entry, leaves nothing.
    let disk = refused_fs_disk(&env, "defaults");
    let r = env.mount_run(&disk, "strict", &[]);
    assert!(
        !r.status.success(),
        "a refused filesystem without nofail mounted: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains("/srv/bad") || r.stderr.contains(&bad),
        "the error must name the fstab entry: {}",
        r.stderr
    );
    assert_eq!(mounts_under(env.path()), 0);
    assert_eq!(loops_backed_by(&disk), 0);
    assert!(!env.listed().contains(&"strict".to_string()));
}

#[test]
fn logs_on_a_pipe_carry_no_terminal_escapes() {
    let env = Env::new();
    let disk = refused_fs_disk(&env, "defaults,nofail");
    let r = env.run_with(
        &[
            "mount",
            "--device",
            disk.to_str().unwrap(),
            "--volume",
            "logs",
        ],
        &[("GOLDMOUNT_LOG", "info")],
        Duration::from_secs(60),
    );
    // tracing's level names, with or without colour codes around them.
    assert!(
        ["INFO", "WARN"].iter().any(|l| r.stderr.contains(l)),
        "GOLDMOUNT_LOG=info logged nothing for a mount with a refused filesystem (the test \
         would prove nothing): {:?}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("\x1b["),
        "ANSI escapes in logs written to a pipe: {:?}",
        r.stderr
    );
    if r.status.success() {
        unmount_clean(&env, "logs", &disk);
    }
}

#[test]
fn fixtures_are_what_they_claim() {
    // The hostile fixtures themselves: without this, a test above could
    // pass because mkfs.ext4 -d dropped a FIFO, a node or a setuid bit.
    let env = Env::new();
    let root = hostile::tree(env.path(), "check.tree");
    tool("mkfifo", &[root.join("etc/fifo").to_str().unwrap()]);
    std::os::unix::fs::symlink("/dev/zero", root.join("etc/fstab")).unwrap();
    let id = root.join("suid-id");
    fs::copy("/usr/bin/id", &id).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o4755)).unwrap();
    let img = env.path().join("check.fs");
    hostile::ext4(
        &img,
        16,
        "check",
        &uuid(5),
        Some(&root),
        &["-O", "^metadata_csum"],
    );
    let ls = tool("debugfs", &["-R", "ls -l /etc", img.to_str().unwrap()]);
    assert!(ls.contains(" 10644 ") && ls.contains(" 120777 "), "{ls}");
    let ls = tool("debugfs", &["-R", "ls -l /", img.to_str().unwrap()]);
    assert!(ls.contains(" 104755 "), "{ls}");
    hostile::ext4_set_incompat(&img, 0x8000_0000);
    let probe = env.run(&["probe", img.to_str().unwrap()]).ok();
    assert!(probe.stdout.contains("ext4"), "{}", probe.stdout);
    let mnt = env.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let o = std::process::Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the kernel mounted an ext4 with an unknown incompat bit"
    );
    let meta = fs::symlink_metadata(root.join("etc/fifo")).unwrap();
    assert!(meta.file_type().is_fifo());
}

/// The superblock options of the mount at `target` (after the ` - `).
fn super_options(target: &Path) -> String {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.to_str().unwrap();
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(t))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|r| r.split(' ').nth(2))
        .unwrap_or_else(|| panic!("nothing mounted at {t}:\n{text}"))
        .to_string()
}

#[test]
fn a_clone_asking_the_kernel_to_panic_on_errors_is_mounted_with_remount_ro() {
    let env = Env::new();
    let img = env.dir.path().join("panic.img");
    fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let i = img.to_str().unwrap();
    tool("mkfs.ext4", &["-q", "-F", "-L", "panic", i]);
    // The superblock's default error behaviour: panic the host.
    tool("tune2fs", &["-e", "panic", i]);
    assert!(tool("dumpe2fs", &["-h", i]).contains("Panic"));
    for (volume, extra) in [("rw", &[][..]), ("ro", &["--read-only"][..])] {
        let m = env.mount_json(&img, volume, extra);
        let at = PathBuf::from(m["mounts"][0]["mount_path"].as_str().unwrap());
        let sup = super_options(&at);
        assert!(
            sup.split(',').any(|o| o == "errors=remount-ro"),
            "{volume}: the kernel keeps the clone's errors=panic: {sup}"
        );
        env.gm_ok(&["unmount", "--volume", volume]);
    }
}
